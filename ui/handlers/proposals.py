"""Handlers of Segment everything, Find objects and the proposal review panel.

One area of :class:`ui.handlers.Handlers`. The engine runs in a worker thread while the handler
(a generator) shows its progress on the stage's busy veil; the result is put on show only if the
same image is still open.
"""

from __future__ import annotations

import itertools
import logging
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from sam.automatic import AutoMaskConfig
from sam.errors import SamError, TextPromptError
from sam.text_prompt import TextPromptConfig, normalise_prompt

from .. import proposals, render
from ..events import Payload, Updates, event
from ..state import Proposals, Session
from .base import HandlerBase

logger = logging.getLogger(__name__)

POLL_SECONDS = 0.4
# "Accept all above" starts here: predicted IoUs of good masks are high, detector scores lower.
DEFAULT_ACCEPT = {"everything": 0.95, "text": 0.5}
# The Segment everything settings that start at the loaded model's family defaults (slider ->
# AutoMaskConfig field); the min region area is the page's own choice.
FAMILY_SETTINGS = {
    "pps": "points_per_side",
    "pred_iou": "pred_iou_thresh",
    "stability": "stability_score_thresh",
    "nms": "box_nms_thresh",
    "offset": "stability_score_offset",
}
_jobs = itertools.count(1)


@dataclass
class _Progress:
    """What a worker reports: a line for the busy veil and decoder batches done / total."""

    text: str
    done: int = 0
    total: int = 0

    def line(self) -> str:
        if self.total:
            return f"{self.text} {100 * self.done // self.total} % ({self.done}/{self.total})"
        return self.text


def _unavailable(error: TextPromptError, source: str) -> str:
    """The lasting note under Find: short, the details are in the message line."""
    if "pip install" in str(error):
        return str(error)
    return f"Find objects is unavailable: the text detector {source} could not be loaded."


class ProposalHandlers(HandlerBase):
    """Segment everything, Find objects and the review of their proposals."""

    def proposal_fields(self, session: Session) -> Updates:
        """Label choices and the accept threshold for a new set of proposals."""
        props = session.doc.proposals
        if props is None:
            return {}
        names = [lab.name for lab in session.doc.labels]
        if props.source == "text":
            choices = [("Each its phrase", proposals.PHRASE), *((n, n) for n in names)]
            value = proposals.PHRASE
        else:
            choices = [(n, n) for n in names]
            value = session.active_label if session.active_label in names else names[0]
        return {
            "prop_label": gr.update(choices=choices, value=value),
            "prop_threshold": gr.update(value=DEFAULT_ACCEPT[props.source]),
        }

    def family_settings(self, session: Session, shown: Sequence[float] | None = None) -> Updates:
        """The Settings moved to the loaded model's family defaults (SAM 2 keeps candidates from
        a lower predicted IoU), once per family change. ``shown``: the sliders' values in
        :data:`FAMILY_SETTINGS` order; one the user moved off the previous family's default
        keeps its value. Without ``shown`` (page load, the startup model finishing loading) the
        sliders are known to show the page's first values."""
        status = self.manager.status(session.model_source)
        if status is None or not status.ok or status.family == session.settings_family:
            return {}
        before = AutoMaskConfig.for_family(session.settings_family or "sam")
        after = AutoMaskConfig.for_family(status.family)
        session.settings_family = status.family
        updates: Updates = {"state": session}
        for i, (name, field) in enumerate(FAMILY_SETTINGS.items()):
            old, new = getattr(before, field), getattr(after, field)
            moved = shown is not None and not math.isclose(float(shown[i]), old, abs_tol=1e-6)
            if new != old and not moved:
                updates[name] = gr.update(value=new)
        return updates

    # -- running the engine ----------------------------------------------------------------------

    @event
    def on_everything(
        self,
        session: Session,
        points_per_side: float,
        pred_iou: float,
        stability: float,
        min_area: float,
        nms: float = 0.7,
        offset: float = 1.0,
    ) -> Iterator[Updates]:
        """Segment everything on the open image, reusing its cached embedding."""
        try:
            config = AutoMaskConfig(
                points_per_side=int(points_per_side),
                pred_iou_thresh=float(pred_iou),
                stability_score_thresh=float(stability),
                min_mask_region_area=int(min_area),
                box_nms_thresh=float(nms),
                stability_score_offset=float(offset),
            )
        except (TypeError, ValueError) as exc:
            session.notify(f"Check the Segment everything settings: {exc}.", error=True)
            yield self.view(session)
            return

        def work(progress: _Progress, image: Any, predictor: Any) -> Proposals:
            def report(done: int, total: int) -> None:
                progress.done, progress.total = done, total

            return proposals.segment_everything(image, predictor, config, report)

        yield from self._run(session, "Segmenting everything…", work)

    @event
    def on_find(
        self,
        session: Session,
        text: str | None,
        box_threshold: float = 0.3,
        text_threshold: float = 0.25,
    ) -> Iterator[Updates]:
        """Find the phrases of ``text`` (Grounding DINO), segment each box (SAM)."""
        query = normalise_prompt(text or "")
        config = TextPromptConfig(
            box_threshold=float(box_threshold), text_threshold=float(text_threshold)
        )
        detectors = self.text_detectors

        def work(progress: _Progress, image: Any, predictor: Any) -> Proposals:
            if not detectors.loaded:
                progress.text = "Loading the text detector (the first use downloads it)…"
            detector = detectors.get()
            progress.text = f"Finding “{query}”…"
            return proposals.find_by_text(image, predictor, detector, query, config)

        busy = f"Finding “{query}”…" if detectors.loaded else "Loading the text detector…"
        yield from self._run(session, busy, work)

    def _run(
        self,
        session: Session,
        busy: str,
        work: Callable[[_Progress, Any, Any], Proposals],
    ) -> Iterator[Updates]:
        doc = session.doc
        if doc.image is None:
            session.notify("Open an image first.", error=True)
            yield self.view(session)
            return
        predictor = self.manager.predictor(session.model_source)
        if id(session) in self.proposal_jobs:
            session.notify("Still working on the previous request; wait for it to finish.", True)
            yield {"message": render.message_html(session)}
            return
        image, job = doc.image, f"job{next(_jobs)}"
        progress = _Progress(busy)
        outcome: dict[str, Any] = {}
        finished = threading.Event()
        self.proposal_jobs.add(id(session))

        def run() -> None:
            try:
                outcome["value"] = work(progress, image.array, predictor)
            except BaseException as exc:  # reported by the handler, in the page
                outcome["error"] = exc
            finally:
                self.proposal_jobs.discard(id(session))
                finished.set()

        threading.Thread(target=run, name="proposals", daemon=True).start()
        yield self.view(session, busy=progress.line(), job=job)
        while not finished.wait(POLL_SECONDS):
            yield {"stage": render.stage_html(session, progress.line(), job)}
        error = outcome.get("error")
        note: Updates = {}
        if isinstance(error, TextPromptError):
            session.notify(str(error), error=True)
            note = self.find_note(_unavailable(error, self.text_detectors.source))
        elif isinstance(error, SamError):
            session.notify(str(error), error=True)
        elif error is not None:
            logger.error("Proposals failed", exc_info=error)
            session.notify(
                f"That failed ({type(error).__name__}: {error}); your work is kept.", error=True
            )
        else:
            proposals.show(session, outcome["value"], image.key)
            note = self.find_note()
        yield {**self.view(session), **self.proposal_fields(session), **note}

    # -- reviewing -------------------------------------------------------------------------------

    @event
    def on_proposal(self, session: Session, payload: Payload) -> Updates:
        """A click on a proposal chip in the panel."""
        proposals.toggle(session, int(payload.get("index", -1)))
        return self.view(session)

    @event
    def on_accept_above(self, session: Session, threshold: float) -> Updates:
        proposals.accept_above(session, float(threshold))
        return self.view(session)

    @event
    def on_reject_all(self, session: Session) -> Updates:
        proposals.reject_all(session)
        return self.view(session)

    @event
    def on_add_accepted(self, session: Session, choice: str | None) -> Updates:
        proposals.add_accepted(session, choice)
        return self.view(session)

    @event
    def on_discard(self, session: Session) -> Updates:
        proposals.discard(session)
        return self.view(session)
