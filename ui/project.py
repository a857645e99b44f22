"""A folder of images opened as a project (``python app.py --images DIR``).

The :class:`Project` is app-level state shared by every tab: the thread-safe
:class:`~sam.store.AnnotationStore`, the embedding disk cache folder and the background
:class:`~sam.prefetch.Prefetcher`. What a tab shows stays in its :class:`Session`; the
session's :class:`ProjectLink` records what of its image the store already holds, and
:meth:`Project.sync` writes the difference after every action, so the store follows edits,
deletions, undo and redo at once.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

from sam.disk_cache import EmbeddingDiskCache
from sam.errors import StoreError
from sam.image_io import load_image
from sam.model import Sam
from sam.precompute import DEFAULT_CACHE_DIR
from sam.prefetch import Prefetcher, PrefetchStatus
from sam.store import STATUSES, AnnotationStore, ImageRecord, ObjectRecord

from . import actions
from .state import AnnotatedObject, Doc, Label, Mask, ProjectLink, Prompt, Session, default_labels

logger = logging.getLogger(__name__)

FILTERS = ("all", *STATUSES)
UNLABELLED = "unlabelled"
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
        self._prefetch_model: Sam | None = None
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
        """Show a project image with its stored objects; its history starts empty."""
        record = self.store.image(image_id)
        image = load_image(self.folder / record.path)
        height, width = image.shape[:2]
        if (record.width, record.height) != (width, height):
            self.store.set_image_size(image_id, width, height)
        ref = actions.image_ref(image, record.path, media_dir)
        stored_labels = self.store.labels()
        labels = tuple(Label(lab.name, lab.color) for lab in stored_labels)
        names = {lab.id: lab.name for lab in stored_labels}
        objects: list[AnnotatedObject] = []
        link = ProjectLink(image_id=image_id, path=record.path)
        skipped = 0
        for rec in self.store.objects(image_id):
            if tuple(rec.rle["size"]) != (height, width):
                skipped += 1  # the file changed size since it was annotated
                continue
            obj = _from_record(rec, len(objects) + 1, names.get(rec.label_id, UNLABELLED))
            objects.append(obj)
            link.stored[obj.id] = (rec.id, obj)
        has_unlabelled = any(lab.name == UNLABELLED for lab in labels)
        if not has_unlabelled and any(o.label == UNLABELLED for o in objects):
            labels = (*labels, Label(UNLABELLED, "#9ca3af"))
        link.labels = labels
        session.start_over(
            Doc(image=ref, labels=labels, objects=tuple(objects), next_id=len(objects) + 1)
        )
        session.link = link
        note = f"{record.path}: {len(objects)} object(s)"
        if skipped:
            note += f"; {skipped} stored object(s) do not match the image size and are not shown"
        session.notify(note + ".", error=bool(skipped))

    def sync(self, session: Session) -> bool:
        """Write what changed in the session's image since the last sync; True if anything did.

        Objects are matched by session id: new ones are added, replaced ones updated, missing
        ones deleted. Labels renamed or recoloured in place are updated, new ones created.
        """
        link, doc = session.link, session.doc
        if link is None or doc.image is None:
            return False
        changed, removed = self._sync_labels(link, doc.labels)
        label_ids = {lab.name: lab.id for lab in self.store.labels()}
        live = {obj.id for obj in doc.objects}
        for obj in doc.objects:
            entry = link.stored.get(obj.id)
            if entry is not None and entry[1] is obj:
                continue
            label_id = label_ids.get(obj.label)
            if label_id is None:
                label_id = label_ids[obj.label] = self.store.ensure_label(
                    obj.label, doc.color_of(obj)
                ).id
            if entry is None:
                store_id = self.store.add_object(
                    link.image_id, obj.mask.to_array(), label_id, obj.score,
                    _prompts(obj.prompt), obj.source, obj.color,
                )  # fmt: skip
            else:
                store_id, old = entry
                self.store.update_object(
                    store_id,
                    mask=None if old.mask is obj.mask else obj.mask.to_array(),
                    label_id=label_id,
                    hidden=obj.hidden,
                    score=obj.score,
                    prompts=_prompts(obj.prompt),
                    color=obj.color,
                )
            link.stored[obj.id] = (store_id, obj)
            changed = True
        for obj_id in [i for i in link.stored if i not in live]:
            store_id, _ = link.stored.pop(obj_id)
            self.store.delete_object(store_id)
            changed = True
        # Labels go last: an undo can remove a label together with the objects that used it.
        for stored in self.store.labels():
            if stored.name in removed:
                self.store.delete_label(stored.id)
        return changed

    def _sync_labels(self, link: ProjectLink, labels: tuple[Label, ...]) -> tuple[bool, set[str]]:
        """Create, rename and recolour labels; returns (changed, names to delete after the
        objects are written)."""
        old = link.labels
        if old == labels:
            return False, set()
        removed: set[str] = set()
        if len(old) == len(labels):  # renamed or recoloured in place (also by undo/redo)
            for before, after in zip(old, labels, strict=True):
                if before != after:
                    stored = self.store.ensure_label(before.name, before.color)
                    rename = after.name if after.name != before.name else None
                    self.store.update_label(stored.id, name=rename, color=after.color)
        else:
            known = {lab.name for lab in old}
            for lab in labels:
                if lab.name not in known:
                    self.store.ensure_label(lab.name, lab.color)
            removed = known - {lab.name for lab in labels}  # removed in the page (or undone)
        link.labels = labels
        return True, removed

    def check_label_removable(self, name: str) -> None:
        """Raise :class:`StoreError` when objects on any image of the project use the label."""
        for stored in self.store.labels():
            if stored.name == name and self.store.label_usage(stored.id):
                raise StoreError(
                    f"“{name}” is used by {self.store.label_usage(stored.id)} object(s) in this "
                    "project: relabel or delete them first."
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

    def prefetch(self, model: Sam, disk_cache: EmbeddingDiskCache | None, ids: list[int]) -> None:
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


def _from_record(rec: ObjectRecord, obj_id: int, label: str) -> AnnotatedObject:
    prompts = rec.prompts or {}
    box = prompts.get("box")
    prompt = Prompt(
        points=tuple((int(x), int(y), int(lab)) for x, y, lab in prompts.get("points") or ()),
        box=tuple(int(v) for v in box) if box else None,  # type: ignore[arg-type]
    )
    return AnnotatedObject(
        id=obj_id,
        label=label,
        mask=Mask.from_array(rec.mask()),
        score=1.0 if rec.score is None else float(rec.score),
        prompt=prompt,
        hidden=rec.hidden,
        source=rec.source,
        color=rec.color,
    )
