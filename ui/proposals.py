"""Proposals from Segment everything and Find objects, and what the user does with them.

Proposals live in the undoable :class:`~ui.state.Doc`: while some are on show, a click on the
image toggles the smallest one under the pointer, and "Add accepted" turns the accepted ones
into ordinary objects in one step (Undo brings the proposals back). The engine runs in
:func:`segment_everything` and :func:`find_by_text`, which take no session: the app runs them
in a worker thread and shows their result with :func:`show` once they finish.
"""

from __future__ import annotations

import colorsys
import importlib.util
import logging
import threading
from collections.abc import Callable
from dataclasses import replace

import numpy as np

from sam import SamPredictor
from sam.automatic import AutoMaskConfig, AutomaticMaskGenerator, ProgressCallback
from sam.text_prompt import (
    DEFAULT_DETECTOR,
    GroundingDetector,
    TextPromptConfig,
    clean_phrase,
    segment_by_text,
)

from .errors import ProposalError
from .state import AnnotatedObject, Mask, Prompt, Proposal, Proposals, Session

logger = logging.getLogger(__name__)

# Label-dropdown value meaning "each proposal keeps the phrase that found it".
PHRASE = "@phrase"
SOURCES = {"everything": "Segment everything", "text": "Find objects"}


def distinct_colors(n: int) -> list[str]:
    """``n`` well-separated bright colours (golden-angle hues, alternating lightness)."""
    colors = []
    for i in range(n):
        hue = (0.03 + i * 0.381966) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.72 if i % 2 else 0.9, 0.98 if i % 3 else 0.85)
        colors.append(f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}")
    return colors


# -- running the engine ------------------------------------------------------------------------


def segment_everything(
    image: np.ndarray,
    predictor: SamPredictor,
    config: AutoMaskConfig,
    progress: ProgressCallback | None = None,
) -> Proposals:
    """SAM's automatic mask generator on ``image``, on the predictor's cached embedding."""
    generator = AutomaticMaskGenerator(predictor.engine, config)
    found = generator.generate(image, progress=progress, predictor=predictor)
    colors = distinct_colors(len(found))
    items = tuple(
        Proposal(
            mask=Mask.from_array(p.segmentation),
            score=p.predicted_iou,
            mask_score=p.predicted_iou,
            color=colors[i],
            prompt=Prompt(points=((int(p.point[0]), int(p.point[1]), 1),)),
        )
        for i, p in enumerate(found)
    )
    return Proposals(items, "everything")


def find_by_text(
    image: np.ndarray,
    predictor: SamPredictor,
    detector: GroundingDetector,
    text: str,
    config: TextPromptConfig,
) -> Proposals:
    """Grounding DINO boxes for ``text``, each segmented by SAM, as proposals with phrases."""
    found = segment_by_text(predictor, detector, image, text, config)
    colors = distinct_colors(len(found))
    items = []
    for i, p in enumerate(found):
        x0, y0, x1, y1 = p.detection.box
        box = (int(x0), int(y0), max(int(x0) + 1, round(x1)), max(int(y0) + 1, round(y1)))
        items.append(
            Proposal(
                mask=Mask.from_array(p.mask),
                score=p.detection.score,
                mask_score=p.mask_score,
                color=colors[i],
                prompt=Prompt(box=box),
                phrase=clean_phrase(p.detection.phrase, text),
            )
        )
    return Proposals(tuple(items), "text", query=text.strip())


class TextDetectors:
    """The app's Grounding DINO, loaded on first use and shared by every session.

    A failed load is not remembered: the next Find tries again (after installing the extra,
    or once the network is back).
    """

    def __init__(
        self,
        source: str = DEFAULT_DETECTOR,
        device: str = "auto",
        factory: Callable[..., GroundingDetector] = GroundingDetector,
    ) -> None:
        self.source = source
        self.device = device
        self._factory = factory
        self._detector: GroundingDetector | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._detector is not None

    def get(self) -> GroundingDetector:
        """The detector; raises ``TextPromptError`` saying why it cannot be loaded."""
        with self._lock:
            if self._detector is None:
                self._detector = self._factory(self.source, device=self.device)
                logger.info("Loaded text detector %s", self.source)
            return self._detector


def text_extra_installed() -> bool:
    """Whether the optional ``[text]`` extra (transformers) is importable."""
    return importlib.util.find_spec("transformers") is not None


# -- session actions ---------------------------------------------------------------------------


def show(session: Session, proposals: Proposals, image_key: str) -> bool:
    """Put ``proposals`` (made for the image ``image_key``) on show, replacing the prompt.

    Returns False, with a message, when another image was opened meanwhile.
    """
    doc = session.doc
    if doc.image is None or doc.image.key != image_key:
        session.notify("Another image was opened meanwhile; its proposals were dropped.", True)
        return False
    what = SOURCES[proposals.source]
    if not proposals.items:
        hint = (
            "lower the thresholds under Settings, or try other words"
            if proposals.source == "text"
            else "lower the thresholds under Settings"
        )
        session.notify(f"{what} found nothing: {hint}.", error=True)
        return False
    session.commit(
        replace(doc, proposals=proposals, prompt=Prompt(), candidates=None, editing=None)
    )
    n = len(proposals.items)
    session.notify(
        f"{what}: {n} proposal(s). Click a mask to accept or reject it, or accept all above a "
        "score; then Add accepted as objects (Enter)."
    )
    return True


def _require(session: Session) -> Proposals:
    if session.doc.proposals is None:
        raise ProposalError("No proposals on show: run Segment everything or Find first.")
    return session.doc.proposals


def _set_items(session: Session, items: tuple[Proposal, ...]) -> None:
    proposals = _require(session)
    session.commit(replace(session.doc, proposals=replace(proposals, items=items)))


def proposal_at(proposals: Proposals, x: int, y: int) -> int | None:
    """Index of the smallest proposal containing pixel ``(x, y)``, or None."""
    best: int | None = None
    for i, p in enumerate(proposals.items):
        m = p.mask
        h, w = m.crop_shape
        if not (m.left <= x < m.left + w and m.top <= y < m.top + h):
            continue
        bit = (y - m.top) * w + (x - m.left)  # packbits: big-endian bits, row-major crop
        if not (m.bits[bit >> 3] >> (7 - (bit & 7))) & 1:
            continue
        if best is None or m.area < proposals.items[best].mask.area:
            best = i
    return best


def toggle(session: Session, index: int) -> None:
    items = _require(session).items
    if not 0 <= index < len(items):
        raise ProposalError(f"There is no proposal {index + 1}.")
    p = items[index]
    new = replace(p, accepted=not p.accepted)
    _set_items(session, (*items[:index], new, *items[index + 1 :]))
    state = "accepted" if new.accepted else "rejected"
    name = f" “{p.phrase}”" if p.phrase else ""
    session.notify(f"Proposal {index + 1}{name} {state} (score {p.score:.3f}).")


def toggle_at(session: Session, x: int, y: int) -> int | None:
    """Toggle the smallest proposal under the pointer; returns its index (None: none there)."""
    index = proposal_at(_require(session), x, y)
    if index is None:
        session.notify(
            f"No proposal at ({x}, {y}). Click a coloured mask, or Discard proposals to "
            "go back to clicking objects.",
            error=True,
        )
        return None
    toggle(session, index)
    return index


def accept_above(session: Session, threshold: float) -> int:
    """Accept every proposal scoring at least ``threshold`` (others are left as they are)."""
    items = _require(session).items
    hits = sum(1 for p in items if p.score >= threshold and not p.accepted)
    new = tuple(replace(p, accepted=p.accepted or p.score >= threshold) for p in items)
    if hits:
        _set_items(session, new)
    total = sum(1 for p in new if p.accepted)
    session.notify(f"Accepted {hits} more with score ≥ {threshold:.2f}; {total} accepted in all.")
    return hits


def reject_all(session: Session) -> None:
    items = _require(session).items
    if any(p.accepted for p in items):
        _set_items(session, tuple(replace(p, accepted=False) for p in items))
    session.notify("No proposal accepted now.")


def discard(session: Session) -> None:
    proposals = _require(session)
    session.commit(replace(session.doc, proposals=None))
    session.notify(f"Discarded {len(proposals.items)} proposal(s) (Undo brings them back).")


def label_for(proposal: Proposal, choice: str | None, fallback: str) -> str:
    """The label an accepted proposal gets: the chosen one, or its phrase for ``PHRASE``."""
    choice = (choice or "").strip()
    if choice == PHRASE or not choice:
        return (proposal.phrase or "").strip() or fallback
    return choice


def add_accepted(session: Session, choice: str | None) -> list[AnnotatedObject]:
    """The accepted proposals become objects (new labels created), in one undoable step."""
    doc = session.doc
    proposals = _require(session)
    chosen = proposals.accepted
    if not chosen:
        raise ProposalError(
            "No proposal is accepted yet: click masks on the image to accept them, or use "
            "Accept all above a score."
        )
    active = doc.label_by_id(session.active_label_id)
    fallback = (active or doc.labels[0]).name
    labels, objects, next_id = doc.labels, list(doc.objects), doc.next_id
    added = []
    for p in chosen:
        name = label_for(p, choice, fallback)
        labels, label = session.with_label(labels, name)
        obj = AnnotatedObject(
            id=next_id, label_id=label.id, mask=p.mask, score=p.mask_score, prompt=p.prompt,
            source=proposals.source,
        )  # fmt: skip
        objects.append(obj)
        added.append(obj)
        next_id += 1
    session.commit(
        replace(doc, labels=labels, objects=tuple(objects), next_id=next_id, proposals=None)
    )
    names = sorted({session.doc.label_name(o) for o in added})
    session.notify(
        f"Added {len(added)} object(s) ({', '.join(names)}); Undo brings the proposals back."
    )
    return added
