"""What every area of handlers shares: the app's state and the outputs it refreshes.

:class:`HandlerBase` holds the app-level objects (model manager, project, folders) and builds
the page's outputs from a session (``view``, ``everything``, ...); it is the
:class:`ui.events.Page` every handler's wrapper uses. Per-user data only ever comes in through
``session``.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from sam.dataset.colors import LABEL_PALETTE
from sam.errors import SamError

from .. import actions, proposals, render
from ..events import Updates, unexpected_failure
from ..html import text
from ..models import ModelManager, ModelUnavailable
from ..project import FILTERS, Project
from ..proposals import TextDetectors
from ..state import Session

logger = logging.getLogger(__name__)


class HandlerBase:
    """The app's state and the outputs of the page; the areas' handlers build on it."""

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
            **self.model_view(session),
        }

    def label_fields(self, session: Session) -> Updates:
        lab = session.doc.label_by_id(session.active_label_id)
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
            "obj_label": gr.update(choices=names, value=doc.label_name(obj)),
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
            "done_btn": gr.update(
                value="↺ Reopen (Shift+D)" if status == "done" else "✓ Done (Shift+D)"
            ),
        }

    def persist(self, session: Session) -> Updates:
        """Write the session's changes to the project store; refresh the gallery if any."""
        if self.project is None or not self.project.sync(session):
            return {}
        return self.project_view(session)

    def model_view(self, session: Session) -> Updates:
        """The model's status line; when the model failed to load, the Model box is opened too,
        since the message sends the user there (closed, it sits below the fold)."""
        updates: Updates = {"model_status": self.model_status_html(session)}
        status = self.manager.status(session.model_source)
        if (
            status is not None
            and not status.ok
            and not self.manager.is_loading(session.model_source)
        ):
            updates["model_box"] = gr.update(open=True)
        return updates

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
            family = f" ({text(status.family)})" if status.family else ""
            return (
                f'<div class="sam-model sam-ok">Model <b>{source}</b>{family} on '
                f"<b>{text(status.device)}</b></div>"
            )
        return (
            '<div class="sam-model sam-bad"><b>The model could not be loaded.</b> '
            f"<code>{source}</code>: {text(status.message)}<br>"
            "<b>Fix:</b> restart with a local checkpoint, e.g. "
            "<code>python app.py --model /path/to/sam_vit_b_01ec64.pth</code> (or a folder "
            "with config.json + model.safetensors), connect to the internet once to download "
            "it, or pick another model in the <i>Model</i> box (opened below).</div>"
        )

    def tick_view(self, session: Session) -> Updates:
        """The model's status and, in a project, the background encoding's progress."""
        loading = self.manager.is_loading(session.model_source)
        prefetch = self.project.prefetch_status() if self.project else None
        updates: Updates = {
            **self.model_view(session),
            "timer": gr.Timer(active=loading or (prefetch is not None and not prefetch.idle)),
        }
        if self.project is not None:  # the page has no encoding line without a project
            updates["prefetch"] = render.prefetch_html(prefetch)
        return updates

    def proposal_view(self, session: Session) -> Updates:
        """The review panel: shown only while there are proposals."""
        return {
            "proposals": render.proposals_html(session),
            "proposal_panel": gr.update(visible=session.doc.proposals is not None),
        }

    def find_note(self, message: str = "") -> Updates:
        """A lasting note under Find (the message line is replaced by the next action)."""
        if not message and proposals.text_extra_installed():
            return {"find_note": ""}
        message = message or (
            "Find objects needs the optional extra: pip install '.[text]' (adds transformers)."
        )
        return {"find_note": f'<div class="sam-find-note">{text(message)}</div>'}

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
            if session.link and session.undo_stack:  # a history kept from an earlier visit
                found += f", {len(session.undo_stack)} step(s) to undo"
            session.notify(
                f"{doc.image.name} ({w}×{h}{found}) {how}. Click the object to segment "
                "(right-click or Shift+click: background; drag: box)."
            )
            if self.project is not None and session.link is not None:
                near = self.project.neighbours(session.link.image_id, session.gallery_filter)
                wanted = [i for i in (near.next, near.previous) if i is not None]
                self.project.prefetch(predictor.engine, predictor.disk_cache, wanted)
        yield self.view(session)

    def cleanup(self) -> None:
        shutil.rmtree(self.export_dir, ignore_errors=True)
