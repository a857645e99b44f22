"""Gradio event handlers: decode the event, call an action, render the result.

Handlers return ``{output name: value}``; ``layout.py`` maps names to components (outputs left
out are not updated). They never raise into Gradio: engine errors become a message on the page
and the session keeps its work. Only the HTTP API raises ``gr.Error``, which clients receive as
an error message.
"""

from __future__ import annotations

import functools
import html
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr
from gradio import utils as gr_utils

from sam.errors import SamError
from sam.image_io import load_image

from . import actions, api, export, render
from .models import MODEL_CHOICES, ModelManager, ModelUnavailable
from .state import Session

logger = logging.getLogger(__name__)

Updates = dict[str, Any]


def _safe(fn: Callable[..., Updates]) -> Callable[..., Updates]:
    """Turn any failure into a message in the page; the session stays as it was."""

    @functools.wraps(fn)
    def wrapper(self: Handlers, session: Session | None, *args: Any, **kwargs: Any) -> Updates:
        session = session if isinstance(session, Session) else Session()
        try:
            return fn(self, session, *args, **kwargs)
        except SamError as exc:
            session.notify(str(exc), error=True)
        except Exception as exc:
            logger.exception("Handler %s failed", fn.__name__)
            session.notify(
                f"Something went wrong ({type(exc).__name__}: {exc}). Your work is kept; see the "
                "server log for details.",
                error=True,
            )
        return self.view(session)

    return wrapper


class Handlers:
    """All event handlers of one app; per-user data only ever comes in through ``session``."""

    def __init__(
        self,
        manager: ModelManager,
        media_dir: Path,
        export_dir: Path,
        examples: list[Path] | None = None,
    ) -> None:
        self.manager = manager
        self.media_dir = media_dir
        self.export_dir = export_dir
        self.examples = list(examples or [])

    # -- rendering -----------------------------------------------------------------------------

    def view(self, session: Session, busy: str | None = None) -> Updates:
        """The outputs every action refreshes."""
        return {
            "state": session,
            "stage": render.stage_html(session, busy),
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
            "label_color": lab.color if lab else "#4e79a7",
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

    def model_status_html(self, session: Session) -> str:
        status = self.manager.status(session.model_source)
        source = html.escape(self.manager.resolve(session.model_source))
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
                f"<b>{html.escape(status.device)}</b></div>"
            )
        return (
            '<div class="sam-model sam-bad"><b>The model could not be loaded.</b> '
            f"<code>{source}</code>: {html.escape(status.message)}<br>"
            "<b>Fix:</b> restart with a local checkpoint, e.g. "
            "<code>python app.py --model /path/to/sam_vit_b_01ec64.pth</code> (or a folder "
            "with config.json + model.safetensors), connect to the internet once to download "
            "it, or pick another model under <i>Model</i> below.</div>"
        )

    # -- page load / model -----------------------------------------------------------------------

    @_safe
    def on_load(self, session: Session) -> Updates:
        if not self.manager.is_loading(session.model_source):
            self.manager.load(session.model_source)
        return {**self.everything(session), **self.on_tick(session)}

    def on_tick(self, session: Session | None) -> Updates:
        """Poll the model status while it loads in the background, then stop polling."""
        session = session if isinstance(session, Session) else Session()
        loading = self.manager.is_loading(session.model_source)
        return {
            "model_status": self.model_status_html(session),
            "timer": gr.Timer(active=loading),
        }

    def on_model_change(self, session: Session | None, choice: str | None) -> Iterator[Updates]:
        session = session if isinstance(session, Session) else Session()
        source = (choice or "").strip()
        source = dict((label, value) for label, value in MODEL_CHOICES).get(source, source)
        if not source:
            session.notify("Pick a model or type a hub repo id / local path.", error=True)
            yield self.view(session)
            return
        session.notify(f"Loading {source}… (the first use downloads it)")
        yield self.view(session, busy=f"Loading model {source}…")
        status = self.manager.load(source, retry=True)
        if status.ok:
            session.model_source = source
            actions.clear_prompt(session)
            session.notify(f"Using {source} on {status.device} (loaded in {status.seconds:.1f} s).")
        else:
            session.notify(f"Could not load {source}: {status.message}", error=True)
        yield self.view(session)

    # -- image -----------------------------------------------------------------------------------

    def on_upload(self, session: Session | None, path: str | None) -> Iterator[Updates]:
        """Open an image file, show it at once, then encode it (seconds on a CPU)."""
        session = session if isinstance(session, Session) else Session()
        if not path:
            yield self.view(session)
            return
        name = Path(str(path)).name
        try:
            image = load_image(str(path))
        except SamError as exc:
            session.notify(f"Could not open {name}: {exc}", error=True)
            yield self.view(session)
            return
        except Exception as exc:
            logger.exception("Loading %s failed", path)
            session.notify(f"Could not open {name}: {exc}", error=True)
            yield self.view(session)
            return
        actions.open_image(session, image, name, self.media_dir)
        yield from self._encode(session)

    def on_dropped(self, session: Session | None, evt: gr.EventData) -> Iterator[Updates]:
        """A file dropped on the stage, already uploaded by Gradio's ``upload()``."""
        path = str((getattr(evt, "_data", None) or {}).get("path") or "")
        # The path comes from the browser: only accept files inside Gradio's upload folder.
        upload_root = Path(gr_utils.get_upload_folder()).resolve()
        if not path or not Path(path).resolve().is_relative_to(upload_root):
            session = session if isinstance(session, Session) else Session()
            session.notify("That drop did not arrive as an uploaded file; use Upload.", error=True)
            yield self.view(session)
            return
        yield from self.on_upload(session, path)

    def on_example(self, session: Session | None, evt: gr.SelectData) -> Iterator[Updates]:
        index = evt.index if isinstance(evt.index, int) else 0
        if not 0 <= index < len(self.examples):
            yield self.view(session if isinstance(session, Session) else Session())
            return
        yield from self.on_upload(session, str(self.examples[index]))

    def _encode(self, session: Session) -> Iterator[Updates]:
        yield {**self.view(session, busy="Encoding image…"), **self.object_fields(session)}
        start = time.perf_counter()
        try:
            predictor = self.manager.predictor(session.model_source)
            hit = actions.encode(session, predictor)
        except ModelUnavailable:
            session.notify(
                "The image is open, but no model is loaded: see the message at the top.",
                error=True,
            )
        except SamError as exc:
            session.notify(str(exc), error=True)
        except Exception as exc:
            logger.exception("Encoding failed")
            session.notify(f"Encoding failed ({type(exc).__name__}: {exc}).", error=True)
        else:
            seconds = time.perf_counter() - start
            doc = session.doc
            assert doc.image is not None
            h, w = doc.image.size
            how = "from cache" if hit else f"encoded in {seconds:.1f} s"
            session.notify(
                f"{doc.image.name} ({w}×{h}) {how}. Click the object to segment "
                "(right-click or Shift+click: background; drag: box)."
            )
        yield self.view(session)

    # -- prompts -------------------------------------------------------------------------------

    @_safe
    def on_prompt(self, session: Session, mode: str | None, evt: gr.EventData) -> Updates:
        return self.prompt(session, getattr(evt, "_data", None) or {}, mode)

    @_safe
    def prompt(self, session: Session, data: dict[str, Any], mode: str | None = None) -> Updates:
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
        predictor = self.manager.predictor(session.model_source)
        kind = data.get("kind")
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

    @_safe
    def on_pick(self, session: Session, evt: gr.EventData) -> Updates:
        actions.select_candidate(session, int(getattr(evt, "_data", {}).get("index", 0)))
        return self.view(session)

    @_safe
    def on_accept(self, session: Session) -> Updates:
        actions.accept(session)
        return {**self.view(session), **self.object_fields(session)}

    @_safe
    def on_clear(self, session: Session) -> Updates:
        actions.clear_prompt(session)
        return self.view(session)

    @_safe
    def on_undo(self, session: Session) -> Updates:
        actions.undo(session)
        return self.everything(session)

    @_safe
    def on_redo(self, session: Session) -> Updates:
        actions.redo(session)
        return self.everything(session)

    @_safe
    def on_mode(self, session: Session, mode: str | None) -> Updates:
        session.view.negative_mode = (mode or "").lower().startswith("neg")
        return {"state": session, "stage": render.stage_html(session)}

    @_safe
    def on_view(self, session: Session, opacity: float, only_current: bool) -> Updates:
        session.view.opacity = float(opacity)
        session.view.only_current = bool(only_current)
        return {"state": session, "stage": render.stage_html(session)}

    # -- labels ----------------------------------------------------------------------------------

    @_safe
    def on_choose_label(self, session: Session, evt: gr.EventData) -> Updates:
        index = int(getattr(evt, "_data", {}).get("index", 0))
        labels = session.doc.labels
        if 0 <= index < len(labels):
            actions.choose_label(session, labels[index].name)
        return {**self.view(session), **self.label_fields(session), **self.object_fields(session)}

    @_safe
    def on_add_label(self, session: Session, name: str, color: str) -> Updates:
        actions.add_label(session, name or "", color)
        return {**self.view(session), **self.label_fields(session), **self.object_fields(session)}

    @_safe
    def on_save_label(self, session: Session, name: str, color: str) -> Updates:
        actions.update_label(session, session.active_label, name or "", color)
        return {**self.view(session), **self.label_fields(session), **self.object_fields(session)}

    @_safe
    def on_remove_label(self, session: Session) -> Updates:
        actions.remove_label(session, session.active_label)
        return {**self.view(session), **self.label_fields(session), **self.object_fields(session)}

    # -- objects -------------------------------------------------------------------------------

    @_safe
    def on_object(self, session: Session, evt: gr.EventData) -> Updates:
        data = getattr(evt, "_data", None) or {}
        return self.object_action(session, int(data.get("id", -1)), str(data.get("action", "")))

    @_safe
    def object_action(self, session: Session, obj_id: int, action: str) -> Updates:
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

    @_safe
    def on_object_label(self, session: Session, name: str | None) -> Updates:
        if session.selected_object is not None and name:
            actions.relabel_object(session, session.selected_object, name)
        return {**self.view(session), **self.object_fields(session)}

    @_safe
    def on_object_color(self, session: Session, color: str | None) -> Updates:
        if session.selected_object is not None and color:
            actions.recolor_object(session, session.selected_object, color)
        return self.view(session)

    # -- export --------------------------------------------------------------------------------

    def _export_folder(self) -> Path:
        self.export_dir.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix="export-", dir=self.export_dir))

    @_safe
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

    @_safe
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
        self, image: str | None, points: str | None, box: str | None, multimask: bool
    ) -> tuple[str, dict[str, Any]]:
        """Segment from the API; errors reach the client as a readable ``gr.Error``."""
        try:
            return api.run_predict(
                self.manager, image, points, box, multimask, self._export_folder()
            )
        except SamError as exc:
            raise gr.Error(str(exc), print_exception=False) from exc
        except Exception as exc:
            logger.exception("API predict failed")
            raise gr.Error(f"{type(exc).__name__}: {exc}", print_exception=False) from exc

    def cleanup(self) -> None:
        shutil.rmtree(self.export_dir, ignore_errors=True)
