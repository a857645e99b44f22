"""A folder of images opened as a project (``python app.py --images DIR``).

The :class:`Project` is app-level state shared by every tab: the thread-safe
:class:`~sam.dataset.store.AnnotationStore`, the embedding disk cache folder and the background
:class:`~sam.prefetch.Prefetcher`. What a tab shows stays in its :class:`Session`; the
session's :class:`ProjectLink` records what of its image the store already holds, and
:meth:`Project.sync` writes the difference after every action, so the store follows edits,
deletions, undo and redo at once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from sam.dataset.annotations import UNLABELLED_ID, Label
from sam.dataset.colors import UNLABELLED_COLOR
from sam.dataset.export import UNLABELLED
from sam.dataset.store import STATUSES, AnnotationStore, ImageRecord, ObjectRecord
from sam.disk_cache import EmbeddingDiskCache
from sam.engine import SamEngine
from sam.errors import ConflictError, StoreError
from sam.image_io import load_image
from sam.precompute import DEFAULT_CACHE_DIR
from sam.prefetch import Prefetcher, PrefetchStatus

from . import actions
from .proposals import SOURCES, distinct_colors
from .state import (
    AnnotatedObject,
    Doc,
    Mask,
    ProjectLink,
    Prompt,
    Proposal,
    Proposals,
    Session,
    StoredObject,
    default_labels,
)

logger = logging.getLogger(__name__)

FILTERS = ("all", *STATUSES)
THUMBS_DIR = ".sam-annotator/thumbs"
THUMB_SIDE = 96


@dataclass(frozen=True)
class Neighbours:
    """Previous and next image ids in the gallery's order (None at either end)."""

    previous: int | None
    next: int | None


class Project:
    """One image folder and its annotation database, shared by all sessions of the app."""

    def __init__(
        self,
        folder: str | Path,
        db: str | Path | None = None,
        labels_file: str | Path | None = None,
    ) -> None:
        self.store = AnnotationStore.for_folder(folder, db)
        self.folder = Path(folder).resolve()
        if labels_file is not None:
            try:
                self.store.load_labels_file(labels_file)
            except OSError as exc:
                raise StoreError(f"Cannot read the labels file {labels_file}: {exc}") from exc
        if not self.store.labels():  # a new project starts with the app's usual labels
            for label in default_labels():
                self.store.ensure_label(label.name, label.color)
        self.embeddings_dir = self.folder / DEFAULT_CACHE_DIR
        self.thumbs_dir = self.folder / THUMBS_DIR
        self._prefetcher: Prefetcher | None = None
        self._prefetch_model: SamEngine | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        # Gallery thumbnails are made once, in the background: a big folder must not delay
        # the page, and the gallery shows a thumbnail as soon as it exists.
        threading.Thread(target=self._make_thumbnails, name="sam-thumbs", daemon=True).start()
        done, total = self.store.progress()
        logger.info("Project %s: %d images, %d done, db %s", self.folder, total, done,
                    self.store.path)  # fmt: skip

    @property
    def name(self) -> str:
        return self.folder.name

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            if self._prefetcher is not None:
                self._prefetcher.close()
                self._prefetcher = None
        self.store.close()

    # -- gallery ---------------------------------------------------------------------------

    def images(self, status_filter: str = "all") -> list[ImageRecord]:
        return self.store.images(None if status_filter == "all" else status_filter)

    def first_image(self) -> int | None:
        """Where to resume: the first image not done yet, else the first image."""
        records = self.store.images()
        todo = [r for r in records if r.status != "done"]
        return (todo or records)[0].id if records else None

    def next_not_done(self, image_id: int) -> int | None:
        """The first image not done after ``image_id`` in path order, else the first before
        it; None when every other image is done."""
        records = self.store.images()
        at = next((i for i, r in enumerate(records) if r.id == image_id), -1) + 1
        after_then_before = records[at:] + records[:at]
        return next(
            (r.id for r in after_then_before if r.status != "done" and r.id != image_id), None
        )

    def neighbours(self, image_id: int | None, status_filter: str = "all") -> Neighbours:
        """Previous/next image among those the filter shows, in path order.

        The current image may have left the filter (e.g. it became "in progress" under the
        "not started" filter), so neighbours are found by position in the full order.
        """
        records = self.store.images()
        shown = {r.id for r in self.images(status_filter)}
        order = [r.id for r in records]
        if image_id not in order:
            first = next((i for i in order if i in shown), None)
            return Neighbours(None, first)
        at = order.index(image_id)
        before = [i for i in order[:at] if i in shown]
        after = [i for i in order[at + 1 :] if i in shown]
        return Neighbours(before[-1] if before else None, after[0] if after else None)

    def path_of(self, image_id: int) -> Path:
        return self.folder / self.store.image(image_id).path

    def thumbnail(self, image_id: int) -> Path | None:
        """The gallery thumbnail of an image, once the background thread has made it."""
        path = self.thumbs_dir / f"{image_id}.jpg"
        return path if path.is_file() else None

    def _make_thumbnails(self) -> None:
        try:
            self.thumbs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a read-only folder: the gallery shows names alone
            logger.warning("No gallery thumbnails in %s: %s", self.thumbs_dir, exc)
            return
        for record in self.store.images():
            target = self.thumbs_dir / f"{record.id}.jpg"
            if self._closed.is_set():
                return
            if target.is_file():
                continue
            try:
                with Image.open(self.folder / record.path) as img:
                    img.draft("RGB", (THUMB_SIDE * 2, THUMB_SIDE * 2))  # JPEG: decode at 1/8
                    thumb = ImageOps.exif_transpose(img).convert("RGB")
                thumb.thumbnail((THUMB_SIDE, THUMB_SIDE))
                tmp = target.with_suffix(".tmp")
                thumb.save(tmp, format="JPEG", quality=80)
                tmp.replace(target)
            except (OSError, ValueError) as exc:  # the gallery shows the name alone
                logger.debug("No thumbnail for %s: %s", record.path, exc)

    # -- opening and syncing ---------------------------------------------------------------

    def open(self, session: Session, image_id: int, media_dir: Path) -> None:
        """Show a project image with its stored objects. Its undo history is the one this tab
        left it with (``Session.shelve``), brought up to date with the store, else empty."""
        record = self.store.image(image_id)
        image = load_image(self.folder / record.path)
        height, width = image.shape[:2]
        if (record.width, record.height) != (width, height):
            self.store.set_image_size(image_id, width, height)
        ref = actions.image_ref(image, record.path, media_dir)
        session.shelve()
        if session.unshelve(image_id, ref):
            # What other tabs wrote meanwhile comes in; then the history restarts.
            self.sync(session)
            return
        link = ProjectLink(image_id=image_id, path=record.path, allocate=self._allocate_label)
        link.labels = tuple(self.store.labels())
        session.start_over(Doc(image=ref, labels=link.labels))
        session.link = link
        skipped = self._load_objects(session)
        note = f"{record.path}: {len(session.doc.objects)} object(s)"
        if skipped:
            note += f"; {skipped} stored object(s) do not match the image size and are not shown"
        note += "."
        if review := self._show_stored_proposals(session):
            note += (
                f" {review} auto-labelling proposal(s) await review: click masks to accept or "
                "reject them, then Add accepted as objects (Enter)."
            )
        session.notify(note, error=bool(skipped))

    def _show_stored_proposals(self, session: Session) -> int:
        """Put the image's stored proposals awaiting review on show, those of one source at a
        time (a proposal set has one; the others come the next time the image opens);
        returns how many."""
        link, doc = session.link, session.doc
        assert link is not None and doc.image is not None
        size = doc.image.size
        records = [
            r for r in self.store.objects(link.image_id, reviewed=False)
            if r.source in SOURCES and tuple(r.rle["size"]) == size
        ]  # fmt: skip
        records = [r for r in records if r.source == records[0].source] if records else []
        if not records:
            return 0
        names = {lab.id: lab.name for lab in self.store.labels()}
        colors = distinct_colors(len(records))
        items = tuple(
            Proposal(
                mask=Mask.from_array(r.mask()),
                score=r.score or 0.0,
                mask_score=r.score or 0.0,
                color=colors[i],
                prompt=_stored_prompt(r.prompts),
                phrase=names.get(r.label_id) if r.label_id is not None else None,
            )
            for i, r in enumerate(records)
        )
        session.replace_doc(replace(doc, proposals=Proposals(items, records[0].source)))
        link.review_rows = tuple(r.id for r in records)
        return len(items)

    def _allocate_label(self, name: str, color: str) -> Label:
        return self.store.ensure_label(name, color)

    def _load_objects(self, session: Session) -> int:
        """Make the session's objects those the store holds for its image (keeping the
        session's own object where the row did not change); returns how many rows do not
        fit the image and are left out."""
        link, doc = session.link, session.doc
        assert link is not None and doc.image is not None  # callers hold an open project image
        known = {entry.row: (obj_id, entry) for obj_id, entry in link.stored.items()}
        known_ids = {lab.id for lab in doc.labels}
        labels, objects, stored = doc.labels, [], {}
        next_id, skipped = doc.next_id, 0
        for rec in self.store.objects(link.image_id):
            if tuple(rec.rle["size"]) != doc.image.size:
                skipped += 1  # the file changed size since it was annotated
                continue
            obj_id, entry = known.get(rec.id, (None, None))
            # A row without a label (NULL), or whose label is gone, shows as "unlabelled".
            label_id = rec.label_id if rec.label_id in known_ids else UNLABELLED_ID
            if entry is not None and entry.version == rec.version:
                obj = entry.obj  # the row is as this tab last wrote or read it
                if obj.label_id != label_id:  # but its label is gone
                    obj = replace(obj, label_id=label_id)
            else:
                if obj_id is None:
                    obj_id, next_id = next_id, next_id + 1
                obj = _from_record(rec, obj_id, label_id)
            if label_id == UNLABELLED_ID and all(lab.id != UNLABELLED_ID for lab in labels):
                labels = (*labels, Label(UNLABELLED_ID, UNLABELLED, UNLABELLED_COLOR))
            objects.append(obj)
            stored[obj.id] = StoredObject(rec.id, obj, rec.version)
        editing = doc.editing if any(o.id == doc.editing for o in objects) else None
        session.replace_doc(
            replace(doc, labels=labels, objects=tuple(objects), next_id=next_id, editing=editing)
        )
        link.stored = stored
        return skipped

    def sync(self, session: Session) -> bool:
        """Write what changed in the session's image since the last sync, and bring in what
        other tabs or processes wrote meanwhile; True if anything changed.

        The store is the truth. Objects are matched by session id: new ones are added,
        replaced ones updated, missing ones deleted, each write conditional on the row being
        as this tab last saw it. A write that meets another tab's change is not applied; then,
        or when another tab changed the image's objects or the project's labels, the tab
        reloads them from the store (its undo history restarts) and says what happened. A
        stale row never blocks later writes.
        """
        link, doc = session.link, session.doc
        if link is None or doc.image is None:
            return False
        changed = self._write_labels(session)
        doc = session.doc
        if link.review_rows and doc.proposals is None:
            # The stored proposals were accepted (objects now, written below) or discarded.
            for row in link.review_rows:
                self.store.delete_object(row)
            link.review_rows, changed = (), True
        before = self.store.object_versions(link.image_id)
        conflicts: list[int] = []  # session ids whose write met another tab's change
        kept: set[int] = set()  # rows this tab deleted but another tab had changed
        added: list[int] = []
        live = {obj.id for obj in doc.objects}
        for obj in doc.objects:
            entry = link.stored.get(obj.id)
            if entry is not None and entry.obj is obj:
                continue
            changed = True
            label_id = obj.label_id or None  # UNLABELLED_ID (0): no label (NULL)
            if entry is None:
                row = self.store.add_object(
                    link.image_id, obj.mask.to_array(), label_id, obj.score,
                    _prompts(obj.prompt), obj.source, obj.color,
                )  # fmt: skip
                link.stored[obj.id] = StoredObject(row, obj, 0.0)
                added.append(obj.id)
                continue
            try:
                version = self.store.update_object(
                    entry.row,
                    mask=None if entry.obj.mask is obj.mask else obj.mask.to_array(),
                    label_id=label_id,
                    clear_label=label_id is None,
                    hidden=obj.hidden,
                    score=obj.score,
                    prompts=_prompts(obj.prompt),
                    color=obj.color,
                    if_version=entry.version,
                )
            except ConflictError:
                conflicts.append(obj.id)
                continue
            link.stored[obj.id] = StoredObject(entry.row, obj, version)
            before[entry.row] = version
        for obj_id in [i for i in link.stored if i not in live]:
            entry = link.stored.pop(obj_id)
            changed = True
            try:
                self.store.delete_object(entry.row, if_version=entry.version)
                before.pop(entry.row, None)
            except ConflictError:
                conflicts.append(obj_id)
                kept.add(entry.row)
        if added:
            after = self.store.object_versions(link.image_id)
            for obj_id in added:
                entry = link.stored[obj_id]
                entry.version = before[entry.row] = after.get(entry.row, 0.0)
        self._delete_removed_labels(session)
        notes = self._foreign_changes(link, before, kept)
        notes += [f"your change to #{i} was not saved" for i in conflicts]
        notes += self._read_labels(session)
        if notes:
            self._load_objects(session)
            session.notify(
                "; ".join(notes).capitalize()
                + ". Showing the project as saved; undo history restarts here.",
                error=bool(conflicts),
            )
            changed = True
        return changed

    @staticmethod
    def _foreign_changes(
        link: ProjectLink, versions: dict[int, float], kept: set[int]
    ) -> list[str]:
        """What other tabs did to the image's objects, from the rows' versions (taken before
        this tab's writes, updated with the versions those writes made)."""
        rows = {entry.row: (obj_id, entry) for obj_id, entry in link.stored.items()}
        notes = []
        for row, (obj_id, entry) in rows.items():
            if row not in versions:
                notes.append(f"#{obj_id} was deleted in another tab")
            elif versions[row] != entry.version:
                notes.append(f"#{obj_id} was changed in another tab")
        notes += ["an object you deleted was changed in another tab, so it is kept"] * bool(kept)
        new = [row for row in versions if row not in rows and row not in kept]
        if new:
            notes.append(f"{len(new)} object(s) were added in another tab")
        return notes

    def _write_labels(self, session: Session) -> bool:
        """Write this tab's label changes (against the labels it last saw); labels deleted
        meanwhile by another tab are brought back. Renames that clash are left to the store's
        version (reported when the labels are read back)."""
        link, doc = session.link, session.doc
        assert link is not None
        mine = [lab for lab in doc.labels if lab.id != UNLABELLED_ID]
        if tuple(mine) == link.labels:
            return False
        base = {lab.id: lab for lab in link.labels}
        theirs = {lab.id: lab for lab in self.store.labels()}
        for lab in mine:
            before = base.get(lab.id)
            if lab.id not in theirs:
                # Brought back by an undo/redo here: restore it. Deleted by another tab: let
                # that stand unless an object here uses it.
                if before != lab or any(o.label_id == lab.id for o in doc.objects):
                    self.store.restore_label(lab.id, lab.name, lab.color)
            elif before is not None and before != lab:
                try:
                    self.store.update_label(
                        lab.id,
                        name=lab.name if lab.name != before.name else None,
                        color=lab.color if lab.color != before.color else None,
                    )
                except StoreError as exc:
                    logger.info("Label change not written: %s", exc)
        return True

    def _delete_removed_labels(self, session: Session) -> None:
        """Labels this tab removed (or an undo took away), once no object uses them. Runs
        after the objects are written: an undo removes a label with the objects using it."""
        link = session.link
        assert link is not None
        kept = {lab.id for lab in session.doc.labels}
        for lab in link.labels:
            if lab.id not in kept and not self.store.label_usage(lab.id):
                self.store.delete_label(lab.id)

    def _read_labels(self, session: Session) -> list[str]:
        """Make the tab's labels the project's (the store's); returns notes on what another
        tab changed. Objects keep their labels' ids, so they follow renamed labels."""
        link, doc = session.link, session.doc
        assert link is not None
        stored = tuple(self.store.labels())
        mine = {lab.id: lab for lab in doc.labels if lab.id != UNLABELLED_ID}
        notes = []
        for lab in stored:
            old = mine.get(lab.id)
            if old is None:
                notes.append(f"label “{lab.name}” was added in another tab")
            elif old.name != lab.name:
                notes.append(f"label “{old.name}” is now “{lab.name}”")
            elif old.color != lab.color:
                notes.append(f"label “{lab.name}” was recoloured")
        ids = {lab.id for lab in stored}
        notes += [f"label “{lab.name}” was removed" for i, lab in mine.items() if i not in ids]
        link.labels = stored
        if notes:
            unlabelled = tuple(lab for lab in doc.labels if lab.id == UNLABELLED_ID)
            session.replace_doc(replace(doc, labels=stored + unlabelled))
        return notes

    def check_label_removable(self, label_id: int) -> None:
        """Raise :class:`StoreError` when objects on any image of the project use the label."""
        used = self.store.label_usage(label_id)
        if used:
            name = next((lab.name for lab in self.store.labels() if lab.id == label_id), "")
            raise StoreError(
                f"“{name}” is used by {used} object(s) in this project: relabel or delete "
                "them first."
            )

    def set_status(self, session: Session, status: str) -> None:
        if session.link is None:
            raise StoreError("Open an image of the project first.")
        self.store.set_status(session.link.image_id, status)

    def status_of(self, session: Session) -> str | None:
        return None if session.link is None else self.store.image(session.link.image_id).status

    # -- import ----------------------------------------------------------------------------

    def add_to_image(self, path: str, masks: list[tuple[np.ndarray, str | None]]) -> int:
        """Store imported masks as objects of a project image that no tab has open."""
        image_id = self.store.image_id(path)
        added = 0
        for mask, name in masks:
            if mask.any():
                label_id = self.store.ensure_label(name or UNLABELLED).id
                self.store.add_object(image_id, mask, label_id, 1.0, None, "import")
                added += 1
        return added

    def match_path(self, file_name: str) -> str | None:
        """The project image a COCO ``file_name`` refers to: same relative path, else the
        only image with that base name."""
        paths = [r.path for r in self.store.images()]
        wanted = Path(file_name).as_posix()
        if wanted in paths:
            return wanted
        same = [p for p in paths if Path(p).name == Path(file_name).name]
        return same[0] if len(same) == 1 else None

    # -- background encoding -------------------------------------------------------------------

    def prefetch(
        self, model: SamEngine, disk_cache: EmbeddingDiskCache | None, ids: list[int]
    ) -> None:
        """Encode these images in the background (most wanted first); newest request wins."""
        with self._lock:
            if self._prefetcher is None or self._prefetch_model is not model:
                if self._prefetcher is not None:
                    self._prefetcher.close()
                self._prefetcher = Prefetcher(model, disk_cache)
                self._prefetch_model = model
            self._prefetcher.request([self.path_of(i) for i in ids])

    def prefetch_status(self) -> PrefetchStatus | None:
        with self._lock:
            return None if self._prefetcher is None else self._prefetcher.status()

    def wait_prefetched(self, timeout: float | None = None) -> bool:
        """Block until background encoding is idle (for tests and scripted use)."""
        with self._lock:
            prefetcher = self._prefetcher
        return True if prefetcher is None else prefetcher.wait_idle(timeout)


def _prompts(prompt: Prompt) -> dict[str, Any] | None:
    if prompt.empty:
        return None
    return {"points": [list(p) for p in prompt.points], "box": list(prompt.box or []) or None}


def _stored_prompt(prompts: dict[str, Any] | None) -> Prompt:
    """The prompt a store row records (``{"points": [[x, y, label]], "box": ...}``)."""
    prompts = prompts or {}
    box = prompts.get("box")
    return Prompt(
        points=tuple((int(x), int(y), int(lab)) for x, y, lab in prompts.get("points") or ()),
        box=tuple(int(v) for v in box) if box else None,  # type: ignore[arg-type]
    )


def _from_record(rec: ObjectRecord, obj_id: int, label_id: int) -> AnnotatedObject:
    return AnnotatedObject(
        id=obj_id,
        label_id=label_id,
        mask=Mask.from_array(rec.mask()),
        score=1.0 if rec.score is None else float(rec.score),
        prompt=_stored_prompt(rec.prompts),
        hidden=rec.hidden,
        source=rec.source,
        color=rec.color,
    )
