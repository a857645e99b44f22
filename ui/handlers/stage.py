"""The stage: opening an image (upload, drop, example), prompts, candidates, undo."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import gradio as gr
from gradio import utils as gr_utils

from sam.errors import SamError
from sam.image_io import load_image

from .. import actions, browser_decode, brush, proposals, render
from ..events import Payload, Updates, event, unexpected_failure
from ..state import Session
from .base import HandlerBase


class StageHandlers(HandlerBase):
    """Opening an image and the clicks on the stage."""

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

    @event
    def on_prompt(self, session: Session, mode: str | None, payload: Payload) -> Updates:
        return self._prompt(session, payload, mode)

    @event
    def prompt(self, session: Session, data: Payload, mode: str | None = None) -> Updates:
        """A click or box (for tests and embedding: ``data`` as :meth:`_prompt` takes it)."""
        return self._prompt(session, data, mode)

    def _prompt(self, session: Session, data: Payload, mode: str | None = None) -> Updates:
        """A click, box or stroke from ``static/stage.js``: ``{kind: point, x, y, negative}``,
        ``{kind: box, box: [x0, y0, x1, y1]}`` or ``{kind: stroke, mode, points, radius}``
        (``ui/brush.py``), in original image pixels."""
        doc = session.doc
        if doc.image is None:
            session.notify("Open an image first.", error=True)
            return self.view(session)
        if data.get("key") and data["key"] != doc.image.key:
            # The page showed another image when the click happened (e.g. right after Undo).
            session.notify("The image changed under that click; click again.", error=True)
            return self.view(session)
        kind = data.get("kind")
        if kind == "stroke":  # the brush or eraser: no model involved
            actions.touch_up(session, brush.parse_stroke(data, doc.image.size))
            return {**self.view(session), **self.object_fields(session)}
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

    @event(persist=False)
    def on_decoder(self, session: Session, payload: Payload) -> Updates:
        """The page asks for the browser decoder's files of the image it shows (``{key,
        state}``, ``state`` the ``data-decoder-state`` it shows): written once (the model's
        decoder.onnx on a thread of its own, seconds), then named in the stage's
        ``data-decoder``/``data-embedding``. The stage is re-rendered only when that changes;
        the page asks again while the decoder is exported."""
        doc = session.doc
        # Gradio wants at least one output: the state, which is unchanged.
        if doc.image is None or payload.get("key") != doc.image.key:
            return {"state": session}
        registry = browser_decode.for_folder(self.media_dir)
        known = registry.files(doc.image.key, session.model_source)
        if known is None:
            predictor = self.manager.predictor(session.model_source)
            predictor.set_image(doc.image.array, digest=doc.image.key)
            known = registry.prepare(predictor, doc.image.key, session.model_source)
        if known is None and registry.state(session.model_source) == payload.get("state"):
            return {"state": session}
        return {"state": session, "stage": render.stage_html(session)}

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
