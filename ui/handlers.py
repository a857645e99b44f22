"""Gradio event handlers: decode the event, call an action, render the result.

Handlers return ``{output name: value}``; ``layout.py`` maps names to components (outputs left
out are not updated). They never raise into Gradio: engine errors become a message on the page
and the session keeps its work. Only the HTTP API raises ``gr.Error``, which clients receive as
an error message.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import utils as gr_utils

from sam.dataset import imports
from sam.dataset.colors import LABEL_PALETTE
from sam.errors import PromptError, SamError
from sam.image_io import load_image

from . import actions, api, export, outputs, proposals, render
from .events import Payload, Updates, event, unexpected_failure
from .html import text
from .models import MODEL_CHOICES, ModelManager, ModelUnavailable
from .project import FILTERS, Project
from .proposal_handlers import ProposalHandlers
from .proposals import TextDetectors
from .redact import without_paths
from .state import Session

logger = logging.getLogger(__name__)


class Handlers(ProposalHandlers):
    """All event handlers of one app; per-user data only ever comes in through ``session``."""

    def __init__(
        self,
        manager: ModelManager,
        media_dir: Path,
        export_dir: Path,
        examples: list[Path] | None = None,
        project: Project | None = None,
        text_detectors: TextDetectors | None = None,
    ) -> None:
        self.manager = manager
        self.text_detectors = text_detectors or TextDetectors(device=manager.device)
        self.proposal_jobs: set[int] = set()  # sessions running Segment everything / Find
        self.media_dir = media_dir
        self.export_dir = export_dir
        self.examples = list(examples or [])
        self.project = project

    # -- rendering -----------------------------------------------------------------------------

    def view(self, session: Session, busy: str | None = None, job: str = "") -> Updates:
        """The outputs every action refreshes (``job`` names a long task's busy veil)."""
        return {
            **self.proposal_view(session),
            "state": session,
            "stage": render.stage_html(session, busy, job),
            "cands": render.candidates_html(session),
            "objects": render.objects_html(session),
            "labels": render.labels_html(session),
            "message": render.message_html(session),
            "model_status": self.model_status_html(session),
        }

    def label_fields(self, session: Session) -> Updates:
        lab = session.doc.label(session.active_label)
        return {
            "label_name": lab.name if lab else "",
            "label_color": lab.color if lab else LABEL_PALETTE[0],
        }

    def object_fields(self, session: Session) -> Updates:
        doc = session.doc
        obj = doc.object(session.selected_object) if session.selected_object else None
        names = [lab.name for lab in doc.labels]
        if obj is None:
            return {
                "obj_panel": gr.update(visible=False),
                "obj_label": gr.update(choices=names, value=None),
            }
        return {
            "obj_panel": gr.update(visible=True),
            "obj_title": f"**Object #{obj.id}** — {obj.mask.area:,} px, IoU {obj.score:.3f}",
            "obj_label": gr.update(choices=names, value=obj.label),
            "obj_color": doc.color_of(obj),
        }

    def everything(self, session: Session) -> Updates:
        return {**self.view(session), **self.label_fields(session), **self.object_fields(session)}

    def project_view(self, session: Session) -> Updates:
        """Gallery, progress and the Mark-done button (nothing without a project)."""
        if self.project is None:
            return {}
        records = self.project.images()
        counts = {status: 0 for status in FILTERS[1:]}
        for rec in records:
            counts[rec.status] += 1
        shown = [r for r in records if session.gallery_filter in ("all", r.status)]
        current = session.link.image_id if session.link else None
        status = next((r.status for r in records if r.id == current), None)
        return {
            "gallery": render.gallery_html(shown, current, len(records), self.project.thumbnail),
            "progress": render.progress_html(counts, status),
            "done_btn": gr.update(value="↺ Reopen (D)" if status == "done" else "✓ Mark done (D)"),
        }

    def persist(self, session: Session) -> Updates:
        """Write the session's changes to the project store; refresh the gallery if any."""
        if self.project is None or not self.project.sync(session):
            return {}
        return self.project_view(session)

    def model_status_html(self, session: Session) -> str:
        status = self.manager.status(session.model_source)
        source = text(self.manager.name(session.model_source))
        if self.manager.is_loading(session.model_source):
            return (
                f'<div class="sam-model">Loading model <b>{source}</b>… (the first run '
                "downloads it; you can open an image meanwhile)</div>"
            )
        if status is None:
            return f'<div class="sam-model">Model <b>{source}</b> not loaded yet.</div>'
        if status.ok:
            return (
                f'<div class="sam-model sam-ok">Model <b>{source}</b> on '
                f"<b>{text(status.device)}</b></div>"
            )
        return (
            '<div class="sam-model sam-bad"><b>The model could not be loaded.</b> '
            f"<code>{source}</code>: {text(status.message)}<br>"
            "<b>Fix:</b> restart with a local checkpoint, e.g. "
            "<code>python app.py --model /path/to/sam_vit_b_01ec64.pth</code> (or a folder "
            "with config.json + model.safetensors), connect to the internet once to download "
            "it, or pick another model under <i>Model</i> below.</div>"
        )

    # -- page load / model -----------------------------------------------------------------------

    @event
    def on_load(self, session: Session) -> Updates:
        if not self.manager.is_loading(session.model_source):
            self.manager.load(session.model_source)
        return {
            **self.everything(session),
            **self.project_view(session),
            **self.tick_view(session),
            **self.find_note(),
        }

    @event
    def on_resume(self, session: Session) -> Iterator[Updates]:
        """After the page loads, a project tab opens the first image not done yet."""
        if self.project is None or session.link is not None:
            return
        start = self.project.first_image()
        if start is None:
            session.notify(f"The folder {self.project.name} has no images.", error=True)
            yield self.view(session)
            return
        yield from self.open_project_image(session, start)

    @event(persist=False)
    def on_tick(self, session: Session) -> Updates:
        """Poll the model loading and the background encoding; stop polling when both rest."""
        return self.tick_view(session)

    def tick_view(self, session: Session) -> Updates:
        """The model's status and the background encoding's progress."""
        loading = self.manager.is_loading(session.model_source)
        prefetch = self.project.prefetch_status() if self.project else None
        return {
            "model_status": self.model_status_html(session),
            "prefetch": render.prefetch_html(prefetch),
            "timer": gr.Timer(active=loading or (prefetch is not None and not prefetch.idle)),
        }

    @event
    def on_model_change(self, session: Session, choice: str | None) -> Iterator[Updates]:
        typed = (choice or "").strip()
        typed = dict((label, value) for label, value in MODEL_CHOICES).get(typed, typed)
        if not typed:
            session.notify("Pick a model or type a hub repo id / local path.", error=True)
            yield self.view(session)
            return
        # Typed paths load only from allowed places (ui/models.py); a refusal is one message,
        # whatever was typed (no echo of server paths).
        source = self.manager.page_source(typed)
        name = self.manager.name(source)
        session.notify(f"Loading {name}… (the first use downloads it)")
        yield self.view(session, busy=f"Loading model {name}…")
        status = self.manager.load(source, retry=True)
        if status.ok:
            session.model_source = source
            actions.clear_prompt(session)
            session.notify(f"Using {name} on {status.device} (loaded in {status.seconds:.1f} s).")
        else:
            session.notify(f"Could not load {name}: {status.message}", error=True)
        yield self.view(session)

    # -- image -----------------------------------------------------------------------------------

    @event
    def on_upload(self, session: Session, path: str | None) -> Iterator[Updates]:
        """Open an image file, show it at once, then encode it (seconds on a CPU)."""
        yield from self._open_file(session, path)

    @event
    def on_dropped(self, session: Session, payload: Payload) -> Iterator[Updates]:
        """A file dropped on the stage, already uploaded by Gradio's ``upload()``."""
        path = str(payload.get("path") or "")
        # The path comes from the browser: only accept files inside Gradio's upload folder.
        upload_root = Path(gr_utils.get_upload_folder()).resolve()
        if not path or not Path(path).resolve().is_relative_to(upload_root):
            session.notify("That drop did not arrive as an uploaded file; use Upload.", error=True)
            yield self.view(session)
            return
        yield from self._open_file(session, path)

    @event
    def on_example(self, session: Session, evt: gr.SelectData) -> Iterator[Updates]:
        index = evt.index if isinstance(evt.index, int) else 0
        if not 0 <= index < len(self.examples):
            yield self.view(session)
            return
        yield from self._open_file(session, str(self.examples[index]))

    def _open_file(self, session: Session, path: str | None) -> Iterator[Updates]:
        if not path:
            yield self.view(session)
            return
        if self.project is not None:
            session.notify(
                f"This app annotates the folder {self.project.name}: copy the image there "
                "and restart to annotate it.",
                error=True,
            )
            yield self.view(session)
            return
        name = Path(str(path)).name
        try:
            image = load_image(str(path))
        except SamError as exc:
            session.notify(f"Could not open {name}: {exc}", error=True)
            yield self.view(session)
            return
        except Exception:
            failure = unexpected_failure(f"Loading {path}")
            session.notify(f"Could not open {name}. {failure}", error=True)
            yield self.view(session)
            return
        actions.open_image(session, image, name, self.media_dir)
        yield from self._encode(session)

    def _encode(self, session: Session) -> Iterator[Updates]:
        yield {**self.view(session, busy="Encoding image…"), **self.object_fields(session)}
        start = time.perf_counter()
        try:
            predictor = self.manager.predictor(session.model_source)
            source = actions.encode(session, predictor)
        except ModelUnavailable:
            session.notify(
                "The image is open, but no model is loaded: see the message at the top.",
                error=True,
            )
        except SamError as exc:
            session.notify(str(exc), error=True)
        except Exception:
            session.notify(f"Encoding failed. {unexpected_failure('Encoding')}", error=True)
        else:
            seconds = time.perf_counter() - start
            doc = session.doc
            assert doc.image is not None
            h, w = doc.image.size
            logger.info("Embedding of %s from %s in %.2f s", doc.image.name, source, seconds)
            how = {"memory": "from cache", "disk": "from the disk cache"}.get(
                source, f"encoded in {seconds:.1f} s"
            )
            found = f", {len(doc.objects)} object(s)" if session.link and doc.objects else ""
            session.notify(
                f"{doc.image.name} ({w}×{h}{found}) {how}. Click the object to segment "
                "(right-click or Shift+click: background; drag: box)."
            )
            if self.project is not None and session.link is not None:
                near = self.project.neighbours(session.link.image_id, session.gallery_filter)
                wanted = [i for i in (near.next, near.previous) if i is not None]
                self.project.prefetch(predictor.model, predictor.disk_cache, wanted)
        yield self.view(session)

    # -- prompts -------------------------------------------------------------------------------

    @event
    def on_prompt(self, session: Session, mode: str | None, payload: Payload) -> Updates:
        return self._prompt(session, payload, mode)

    @event
    def prompt(self, session: Session, data: Payload, mode: str | None = None) -> Updates:
        """A click or box (for tests and embedding: ``data`` as :meth:`_prompt` takes it)."""
        return self._prompt(session, data, mode)

    def _prompt(self, session: Session, data: Payload, mode: str | None = None) -> Updates:
        """A click or box from ``static/stage.js``: ``{kind: point, x, y, negative}`` or
        ``{kind: box, box: [x0, y0, x1, y1]}``, in original image pixels."""
        doc = session.doc
        if doc.image is None:
            session.notify("Open an image first.", error=True)
            return self.view(session)
        if data.get("key") and data["key"] != doc.image.key:
            # The page showed another image when the click happened (e.g. right after Undo).
            session.notify("The image changed under that click; click again.", error=True)
            return self.view(session)
        kind = data.get("kind")
        if doc.proposals is not None:  # reviewing proposals: a click toggles one
            if kind == "point":
                proposals.toggle_at(session, int(data["x"]), int(data["y"]))
            else:
                session.notify(
                    "While proposals are shown, click a mask to accept or reject it; Discard "
                    "proposals (Esc) to draw boxes and points again.",
                    error=True,
                )
            return self.view(session)
        predictor = self.manager.predictor(session.model_source)
        if kind == "point":
            negative = bool(data.get("negative")) or (mode or "").lower().startswith("neg")
            actions.add_point(
                session, int(data["x"]), int(data["y"]), positive=not negative, predictor=predictor
            )
        elif kind == "box":
            x0, y0, x1, y1 = (float(v) for v in data["box"])
            actions.set_box(session, (x0, y0, x1, y1), predictor)
        else:
            session.notify(f"Unknown prompt {data!r}.", error=True)
        return self.view(session)

    @event
    def on_pick(self, session: Session, payload: Payload) -> Updates:
        actions.select_candidate(session, int(payload.get("index", 0)))
        return self.view(session)

    @event
    def on_accept(self, session: Session, proposal_label: str | None = None) -> Updates:
        """Enter / Accept: the current mask, or the accepted proposals while reviewing."""
        if session.doc.proposals is not None:
            proposals.add_accepted(session, proposal_label)
        else:
            actions.accept(session)
        return {**self.view(session), **self.object_fields(session)}

    @event
    def on_clear(self, session: Session) -> Updates:
        """Esc / Clear: the prompt, or the proposals on show (Undo brings them back)."""
        if session.doc.proposals is not None:
            proposals.discard(session)
        else:
            actions.clear_prompt(session)
        return self.view(session)

    @event
    def on_undo(self, session: Session) -> Updates:
        actions.undo(session)
        return self.everything(session)

    @event
    def on_redo(self, session: Session) -> Updates:
        actions.redo(session)
        return self.everything(session)

    @event
    def on_mode(self, session: Session, mode: str | None) -> Updates:
        session.view.negative_mode = (mode or "").lower().startswith("neg")
        return {"state": session, "stage": render.stage_html(session)}

    @event
    def on_view(self, session: Session, opacity: float, only_current: bool) -> Updates:
        session.view.opacity = float(opacity)
        session.view.only_current = bool(only_current)
        return {"state": session, "stage": render.stage_html(session)}

    # -- labels ----------------------------------------------------------------------------------

    @event
    def on_choose_label(self, session: Session, payload: Payload) -> Updates:
        index = int(payload.get("index", 0))
        labels = session.doc.labels
        if 0 <= index < len(labels):
            actions.choose_label(session, labels[index].name)
        return {**self.view(session), **self.label_fields(session), **self.object_fields(session)}

    @event
    def on_add_label(self, session: Session, name: str, color: str) -> Updates:
        actions.add_label(session, name or "", color)
        return {**self.view(session), **self.label_fields(session), **self.object_fields(session)}

    @event
    def on_save_label(self, session: Session, name: str, color: str) -> Updates:
        actions.update_label(session, session.active_label, name or "", color)
        return {**self.view(session), **self.label_fields(session), **self.object_fields(session)}

    @event
    def on_remove_label(self, session: Session) -> Updates:
        if self.project is not None and session.link is not None:
            self.project.check_label_removable(session.active_label)
        actions.remove_label(session, session.active_label)
        return {**self.view(session), **self.label_fields(session), **self.object_fields(session)}

    # -- objects -------------------------------------------------------------------------------

    @event
    def on_object(self, session: Session, payload: Payload) -> Updates:
        """A row's click or button in the object list: ``{id, action}``."""
        obj_id, action = int(payload.get("id", -1)), str(payload.get("action", ""))
        return self._object_action(session, obj_id, action)

    @event
    def object_action(self, session: Session, obj_id: int, action: str) -> Updates:
        """``action`` (select, hide, edit, delete) on object ``obj_id``."""
        return self._object_action(session, obj_id, action)

    def _object_action(self, session: Session, obj_id: int, action: str) -> Updates:
        if action == "select":
            same = session.selected_object == obj_id
            actions.select_object(session, None if same else obj_id)
        elif action == "hide":
            actions.toggle_hidden(session, obj_id)
        elif action == "edit":
            actions.edit_object(session, obj_id)
        elif action == "delete":
            actions.delete_object(session, obj_id)
        return {**self.view(session), **self.object_fields(session)}

    @event
    def on_object_label(self, session: Session, name: str | None) -> Updates:
        if session.selected_object is not None and name:
            actions.relabel_object(session, session.selected_object, name)
        return {**self.view(session), **self.object_fields(session)}

    @event
    def on_object_color(self, session: Session, color: str | None) -> Updates:
        if session.selected_object is not None and color:
            actions.recolor_object(session, session.selected_object, color)
        return self.view(session)

    # -- project -------------------------------------------------------------------------------

    def open_project_image(self, session: Session, image_id: int) -> Iterator[Updates]:
        """Show a project image with its stored objects at once, then encode it (a prefetched
        image comes from memory or disk and runs no encoder)."""
        assert self.project is not None
        try:
            self.persist(session)
            self.project.open(session, image_id, self.media_dir)
        except SamError as exc:
            session.notify(str(exc), error=True)
            yield {**self.view(session), **self.project_view(session)}
            return
        for updates in self._encode(session):
            yield {**updates, **self.label_fields(session), **self.project_view(session)}
        yield self.tick_view(session)

    @event
    def on_gallery(self, session: Session, payload: Payload) -> Iterator[Updates]:
        yield from self.open_project_image(session, int(payload.get("id", -1)))

    def _step(self, session: Session, forward: bool) -> Iterator[Updates]:
        """Next (or previous) image in the gallery's order, within the status filter."""
        if self.project is None:
            yield self.view(session)
            return
        current = session.link.image_id if session.link else None
        near = self.project.neighbours(current, session.gallery_filter)
        target = near.next if forward else near.previous
        if target is None:
            session.notify(f"This is the {'last' if forward else 'first'} image of the list.")
            yield self.view(session)
            return
        yield from self.open_project_image(session, target)

    @event
    def on_next(self, session: Session) -> Iterator[Updates]:
        yield from self._step(session, forward=True)

    @event
    def on_prev(self, session: Session) -> Iterator[Updates]:
        yield from self._step(session, forward=False)

    @event
    def on_filter(self, session: Session, choice: str | None) -> Updates:
        session.gallery_filter = choice if choice in FILTERS else "all"
        return self.project_view(session)

    @event
    def on_done(self, session: Session) -> Updates:
        """Mark the current image done, or reopen it when it already is."""
        assert self.project is not None
        done = self.project.status_of(session) == "done"
        self.project.set_status(session, "in_progress" if done else "done")
        session.notify("Reopened the image." if done else "Marked done. Next image: . or PageDown.")
        return {**self.view(session), **self.project_view(session)}

    @event
    def on_import(self, session: Session, path: str | None) -> Updates:
        """Masks from a PNG (binary or instance map) or a COCO JSON become objects.

        The current image's masks go through the session (undoable, then stored); in a
        project, a COCO file's other images are written to the store directly.
        """
        if not path:
            return self.view(session)
        name = Path(path).name
        if name.lower().endswith(".json"):
            by_file = imports.masks_from_coco(path)
            current = self._current_file(session)
            mine = next((masks for f, masks in by_file.items() if self._same_file(f, current)), [])
            added = actions.add_objects(session, mine, "import") if mine else 0
            others = 0
            if self.project is not None:
                for file_name, masks in by_file.items():
                    target = self.project.match_path(file_name)
                    if target is not None and not self._same_file(target, current):
                        others += self.project.add_to_image(target, masks)
            if not added and not others:
                raise PromptError(f"{name} has no masks for the images open here.")
            note = f"Imported {added} object(s) from {name}"
            session.notify(note + (f", and {others} into other images." if others else "."))
        else:
            added = actions.add_objects(session, imports.masks_from_png(path), "import")
            session.notify(
                f"Imported {added} object(s) from {name}; ✎ re-edits one with clicks."
                if added
                else f"{name} contains no mask (all pixels are 0)."
            )
        return {**self.everything(session), **self.project_view(session)}

    def _current_file(self, session: Session) -> str | None:
        if session.link is not None:
            return session.link.path
        return session.doc.image.name if session.doc.image else None

    def _same_file(self, file_name: str, current: str | None) -> bool:
        """Whether a COCO ``file_name`` is the open image (by path in a project, else name)."""
        if current is None:
            return False
        if self.project is not None:
            return self.project.match_path(file_name) == current
        return Path(file_name).name == Path(current).name

    @event
    def on_export_project(self, session: Session, fmt: str | None) -> Updates:
        """The whole project as a COCO, YOLO or PNG dataset in one zip."""
        if self.project is None:
            raise PromptError("Project export needs a folder: start with --images DIR.")
        fmt = (fmt or "coco").lower()
        path, report = export.write_dataset_zip(self.project.store, fmt, self._export_folder())
        done, total = self.project.store.progress()
        note = f"Exported the project as {fmt.upper()} ({done} of {total} done): {path.name}"
        # Skipped images are named, and the message shows as a warning until they are fixed.
        skipped = report.summary()
        session.notify(f"{note}; {skipped}." if skipped else note, error=bool(skipped))
        return {**self.view(session), "export_files": gr.update(value=[str(path)], visible=True)}

    # -- export --------------------------------------------------------------------------------

    def _export_folder(self) -> Path:
        """A fresh folder for one export; older ones are pruned (``ui/outputs.py``)."""
        return outputs.fresh_folder(self.export_dir / "page")

    @event
    def on_export_zip(self, session: Session) -> Updates:
        doc = session.doc
        if doc.image is None:
            session.notify("Nothing to export: open an image first.", error=True)
            return self.view(session)
        folder = self._export_folder()
        path = export.write_zip(
            doc, folder / f"{export.stem(doc)}_annotations.zip", session.selected_object
        )
        session.notify(f"Exported {len(doc.objects)} object(s) to {path.name}.")
        return {**self.view(session), "export_files": gr.update(value=[str(path)], visible=True)}

    @event
    def on_export_mask(self, session: Session) -> Updates:
        doc = session.doc
        if export.current_mask(doc, session.selected_object) is None:
            session.notify(
                "No mask to export: draw one, or select an object in the list.", error=True
            )
            return self.view(session)
        folder = self._export_folder()
        path = export.write_mask_png(
            doc, folder / f"{export.stem(doc)}_mask.png", session.selected_object
        )
        session.notify(f"Exported {path.name} (0/255, {doc.image.size[1]}×{doc.image.size[0]}).")  # type: ignore[union-attr]
        return {**self.view(session), "export_files": gr.update(value=[str(path)], visible=True)}

    # -- HTTP API --------------------------------------------------------------------------------

    def api_predict(
        self, image: str | dict | None, points: str | None, box: str | None, multimask: bool
    ) -> tuple[str, dict[str, Any]]:
        """Segment from the API; errors reach the client as a readable ``gr.Error`` that names
        files by their base names only (the upload's temp path is the server's business).

        ``image`` is a path, or Gradio's file payload (``{"path": ...}``): the endpoint skips
        Gradio's preprocessing (see ``ui/layout.py``).
        """
        if isinstance(image, dict):
            image = image.get("path")
        try:
            folder = outputs.fresh_folder(self.export_dir / "api")
            return api.run_predict(self.manager, image, points, box, multimask, folder)
        except SamError as exc:
            raise gr.Error(without_paths(str(exc)), print_exception=False) from exc
        except Exception as exc:
            raise gr.Error(unexpected_failure("API predict"), print_exception=False) from exc

    def cleanup(self) -> None:
        shutil.rmtree(self.export_dir, ignore_errors=True)
