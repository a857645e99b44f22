"""The click loop of the interactive-segmentation benchmarks over a dataset.

Per object: a click at :func:`~.clicks.next_click`, the prompt is every click so far plus the
previous prediction's low-res logits as ``mask_input``; the first click asks for three
candidates and keeps the best-scored one (SAM's ambiguity handling), later clicks ask for one.
Up to ``max_clicks`` clicks; a run stops early once it has the clicks the summaries read
(5) and the IoU has reached the highest NoC threshold (0.90), since later clicks change
neither. Separately, one box prompt from the object's bounding box.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
from tqdm import tqdm

from ..disk_cache import EmbeddingDiskCache
from ..engine import SamEngine
from ..image_io import load_image
from ..masks import bbox_xywh
from ..modeling import Sam
from ..predictor import SamPredictor
from .clicks import next_click
from .metrics import MAX_CLICKS, EvaluationResult, ObjectResult, mask_iou
from .samples import AnnotatedImage

logger = logging.getLogger(__name__)

# A run may stop once it has this many clicks and the IoU reached STOP_IOU.
_SUMMARY_CLICKS = 5
_STOP_IOU = 0.90


def evaluate(
    model: SamEngine | Sam,
    images: Sequence[AnnotatedImage],
    *,
    max_clicks: int = MAX_CLICKS,
    disk_cache: EmbeddingDiskCache | None = None,
    progress: bool | Callable[[int, int], None] = False,
) -> EvaluationResult:
    """Simulate an annotator on every object of ``images`` and summarise.

    Each image is encoded once (or served from the model's embedding cache or ``disk_cache``).
    ``progress``: True for a tqdm bar over objects, or a ``callback(done, total)``.
    """
    if max_clicks < 1:
        raise ValueError("max_clicks must be at least 1")
    predictor = SamPredictor(model, disk_cache=disk_cache)
    total = sum(len(image.objects) for image in images)
    bar = tqdm(total=total, desc="evaluating", unit="object", disable=progress is not True)
    results: list[ObjectResult] = []
    with bar:
        for image in images:
            predictor.set_image(load_image(image.path))
            for obj in image.objects:
                target = obj.mask()
                results.append(
                    ObjectResult(
                        obj.label,
                        click_ious(predictor, target, max_clicks),
                        box_iou(predictor, target),
                    )
                )
                bar.update()
                if callable(progress):
                    progress(len(results), total)
    return EvaluationResult.of(results, max_clicks)


def click_ious(predictor: SamPredictor, target: np.ndarray, max_clicks: int) -> tuple[float, ...]:
    """IoU with ``target`` ``(H, W) bool`` after each simulated click on the predictor's image."""
    points: list[tuple[int, int]] = []
    labels: list[int] = []
    predicted: np.ndarray | None = None
    logits: np.ndarray | None = None
    ious: list[float] = []
    while len(points) < max_clicks:
        click = next_click(target, predicted)
        if click is None:  # the mask is exact: nothing left to correct
            break
        points.append((click.x, click.y))
        labels.append(int(click.positive))
        masks, _, low_res = predictor.predict(
            point_coords=np.array(points, dtype=np.float64),
            point_labels=np.array(labels),
            mask_input=logits,
            multimask_output=len(points) == 1,
        )
        predicted, logits = masks[0], low_res[:1]
        ious.append(mask_iou(target, predicted))
        if len(ious) >= _SUMMARY_CLICKS and ious[-1] >= _STOP_IOU:
            break
    return tuple(ious)


def box_iou(predictor: SamPredictor, target: np.ndarray) -> float:
    """IoU with ``target`` of the mask predicted from its bounding box."""
    x, y, w, h = bbox_xywh(target)
    masks, _, _ = predictor.predict(box=np.array([x, y, x + w, y + h]), multimask_output=False)
    return mask_iou(target, masks[0])
