"""Interactive-segmentation metrics: IoU per click, NoC@IoU (clicks needed), their means per
label and overall."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Clicks the protocol allows; NoC counts an object never reaching the IoU as this many.
MAX_CLICKS = 20


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``(H, W) bool`` masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def number_of_clicks(ious: Sequence[float], threshold: float, max_clicks: int = MAX_CLICKS) -> int:
    """Clicks until the IoU first reaches ``threshold`` (``ious[k]``: after click k+1), or
    ``max_clicks`` when it never does."""
    for index, value in enumerate(ious[:max_clicks]):
        if value >= threshold:
            return index + 1
    return max_clicks


@dataclass(frozen=True)
class ObjectResult:
    """One object's run: IoU after each click (``ious[k]``: after k+1 clicks; the run stops
    early once the mask is right) and the IoU from its bounding box."""

    label: str
    ious: tuple[float, ...]
    box_iou: float

    def iou_after(self, clicks: int) -> float:
        """IoU after ``clicks`` clicks (the last one simulated when the run stopped earlier)."""
        return self.ious[min(clicks, len(self.ious)) - 1]


@dataclass(frozen=True)
class Summary:
    """Means over a set of objects. mIoU after 1, 3 and 5 clicks and from the box; NoC@85 and
    NoC@90: mean clicks to reach that IoU (``max_clicks`` when never)."""

    n_objects: int
    miou_1click: float
    miou_3click: float
    miou_5click: float
    miou_box: float
    noc85: float
    noc90: float

    @classmethod
    def of(cls, results: Sequence[ObjectResult], max_clicks: int = MAX_CLICKS) -> Summary:
        if not results:
            raise ValueError("no objects to summarise")

        def mean(values: Sequence[float]) -> float:
            return round(float(np.mean(values)), 6)

        return cls(
            n_objects=len(results),
            miou_1click=mean([r.iou_after(1) for r in results]),
            miou_3click=mean([r.iou_after(3) for r in results]),
            miou_5click=mean([r.iou_after(5) for r in results]),
            miou_box=mean([r.box_iou for r in results]),
            noc85=mean([number_of_clicks(r.ious, 0.85, max_clicks) for r in results]),
            noc90=mean([number_of_clicks(r.ious, 0.90, max_clicks) for r in results]),
        )


@dataclass(frozen=True)
class EvaluationResult:
    """The metrics overall and per label, and every object's run."""

    overall: Summary
    per_label: dict[str, Summary]
    objects: tuple[ObjectResult, ...]
    max_clicks: int = MAX_CLICKS

    @classmethod
    def of(cls, results: Sequence[ObjectResult], max_clicks: int = MAX_CLICKS) -> EvaluationResult:
        labels = sorted({r.label for r in results})
        per_label = {
            label: Summary.of([r for r in results if r.label == label], max_clicks)
            for label in labels
        }
        return cls(Summary.of(results, max_clicks), per_label, tuple(results), max_clicks)

    def to_dict(self) -> dict[str, Any]:
        """The overall keys (``miou_1click``, ..., ``n_objects``) plus ``per_label``."""
        return {
            **asdict(self.overall),
            "max_clicks": self.max_clicks,
            "per_label": {label: asdict(s) for label, s in self.per_label.items()},
        }
