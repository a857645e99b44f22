"""Segment everything: SAM's automatic mask generator.

A grid of single-point prompts is decoded in batches against the cached image embedding. Each
point yields three candidates; a candidate survives when its predicted IoU and its stability
score (IoU of the mask thresholded at ``mask_threshold ± offset``) pass their thresholds.
Duplicates are removed by box non-maximum suppression, optionally small islands and holes are
cleaned with OpenCV, and optional crop layers re-run the grid on overlapping zoomed crops.

Only candidates that pass the predicted-IoU filter are upsampled to full size, in small
chunks, so memory stays bounded on large images.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import cv2
import numpy as np
import torch

from .engine import SamEngine, as_engine
from .image_io import load_image
from .masks import mask_to_rle
from .modeling import Sam
from .predictor import SamPredictor

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]

# How many full-size candidate logit maps are alive at once (1800x1200 fp32 = 8.6 MB each).
_UPSCALE_CHUNK = 8
# Most prompts decoded together on a CPU. Batching pays on a GPU; on a CPU a batch's image-sized
# intermediates (64 x 4096 x 256 fp32 = 268 MB per tensor) fall out of cache, and a 64-prompt
# batch costs more per point than a 2-prompt one (measured: bench/README.md, levers table).
_CPU_POINTS_PER_BATCH = 2


@dataclass(frozen=True)
class AutoMaskConfig:
    """Parameters of the generator, with SAM's defaults (:meth:`for_family`: SAM 2's).

    Attributes:
        points_per_side: the grid is ``points_per_side²`` points over the image (32 -> 1024).
        points_per_batch: prompts decoded together on a GPU, where larger is faster and uses
            more memory; on a CPU at most 2, which is faster there.
        pred_iou_thresh: keep candidates whose predicted IoU is above this.
        stability_score_thresh: keep candidates whose stability score is above this.
        stability_score_offset: logit offset used for the stability score.
        mask_threshold: logit above which a pixel belongs to the mask.
        box_nms_thresh: box IoU above which the lower-scored duplicate is dropped.
        crop_n_layers: extra layers of zoomed crops (layer i has ``(2**i)²`` crops); 0 = off.
        crop_overlap_ratio: overlap of neighbouring crops, as a fraction of the short side.
        crop_n_points_downscale_factor: grid side is divided by this per crop layer.
        min_mask_region_area: islands and holes smaller than this many pixels are removed
            (0 = off).
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0

    def __post_init__(self) -> None:
        if self.points_per_side < 1 or self.points_per_batch < 1:
            raise ValueError("points_per_side and points_per_batch must be at least 1")
        if self.crop_n_layers < 0 or self.crop_n_points_downscale_factor < 1:
            raise ValueError("crop_n_layers must be >= 0 and the downscale factor >= 1")

    @classmethod
    def for_family(cls, family: str, **changes: Any) -> AutoMaskConfig:
        """The defaults Meta's generator of ``family`` (``SamEngine.family``) uses, with
        ``changes`` (field name -> value) on top: SAM 2's ``SAM2AutomaticMaskGenerator`` keeps
        candidates from a predicted IoU of 0.8 (its calibrated scores run lower), SAM's from
        0.88; every other default is shared."""
        defaults = cls(pred_iou_thresh=0.8) if family.startswith("sam2") else cls()
        return replace(defaults, **changes)


@dataclass
class MaskProposal:
    """One generated mask.

    ``segmentation`` is ``(H, W) bool``; ``bbox`` is COCO ``[x, y, w, h]`` in whole pixels (the
    mask's extent, as pycocotools' ``toBbox`` gives it); ``point`` is the grid
    point (x, y) that produced it; ``crop_box`` is ``[x0, y0, x1, y1]`` of its crop.
    """

    segmentation: np.ndarray
    area: int
    bbox: list[int]
    predicted_iou: float
    stability_score: float
    point: tuple[float, float]
    crop_box: list[int]

    def rle(self) -> dict[str, Any]:
        """The mask as COCO compressed RLE (``counts`` as str), via pycocotools."""
        return mask_to_rle(self.segmentation)


# -- pure helpers ---------------------------------------------------------------------------------


def point_grid(n_per_side: int) -> np.ndarray:
    """``(n², 2)`` cell-centre points in ``[0, 1]²``, x varying fastest."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def crop_boxes(
    height: int, width: int, n_layers: int, overlap_ratio: float
) -> list[tuple[list[int], int]]:
    """``[x0, y0, x1, y1]`` crops with their layer: the whole image, then ``(2**i)²`` overlapping
    crops for each layer ``i = 1..n_layers``."""
    boxes = [([0, 0, width, height], 0)]
    short = min(height, width)
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * short * (2 / per_side))
        crop_w = math.ceil((overlap * (per_side - 1) + width) / per_side)
        crop_h = math.ceil((overlap * (per_side - 1) + height) / per_side)
        xs = [int((crop_w - overlap) * i) for i in range(per_side)]
        ys = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in itertools.product(xs, ys):
            boxes.append(([x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)], layer))
    return boxes


def stability_score(logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU between the masks at ``threshold + offset`` and ``threshold - offset``.

    ``logits``: ``(N, H, W)`` -> ``(N,)`` float32. The high mask lies inside the low one, so
    the IoU is the ratio of their areas.
    """
    high = (logits > threshold + offset).flatten(1).sum(1, dtype=torch.int64)
    low = (logits > threshold - offset).flatten(1).sum(1, dtype=torch.int64)
    return high.float() / low.clamp(min=1).float()


def mask_to_box(mask: np.ndarray) -> list[int]:
    """``[x0, y0, x1, y1]`` with inclusive max pixel indices; ``[0, 0, 0, 0]`` when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0, 0, 0, 0]
    return [int(cols[0]), int(rows[0]), int(cols[-1]), int(rows[-1])]


def box_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices kept by non-maximum suppression, best first.

    ``boxes``: ``(N, 4)`` ``[x0, y0, x1, y1]``; a box is dropped when its IoU with a better one
    is above ``iou_threshold``. OpenCV drops scores below its own threshold, so it is given
    ranks (1 for the best) rather than the raw scores, which may be negative.
    """
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    ranks = np.empty(len(scores), dtype=np.float32)
    ranks[order] = 1.0 - np.arange(len(scores), dtype=np.float32) / len(scores)
    xywh = [[int(b[0]), int(b[1]), int(b[2] - b[0]), int(b[3] - b[1])] for b in boxes]
    keep = cv2.dnn.NMSBoxes(xywh, ranks.tolist(), 0.0, float(iou_threshold))
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def remove_small_regions(mask: np.ndarray, min_area: int) -> tuple[np.ndarray, bool]:
    """Fill holes and drop islands smaller than ``min_area`` pixels (8-connectivity).

    The largest island is always kept, so a small object does not vanish. Returns the cleaned
    mask and whether anything changed.
    """
    out = mask.copy()
    n, labels, stats, _ = cv2.connectedComponentsWithStats(out.astype(np.uint8), connectivity=8)
    if n > 2:  # background + several islands
        areas = stats[1:, cv2.CC_STAT_AREA]
        small = np.flatnonzero(areas < min_area) + 1
        if len(small) == len(areas):
            small = np.delete(small, np.argmax(areas))
        out[np.isin(labels, small)] = False
    n, labels, stats, _ = cv2.connectedComponentsWithStats((~out).astype(np.uint8), 8)
    holes = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] < min_area) + 1
    if len(holes):
        out[np.isin(labels, holes)] = True
    return out, not np.array_equal(out, mask)


def _near_crop_edge(box: list[int], crop: list[int], full: list[int], atol: float = 20.0) -> bool:
    """A mask touching a crop edge that is not an image edge is probably cut off by the crop."""
    b = np.asarray(box, dtype=np.float64)
    near_crop = np.isclose(b, crop, atol=atol, rtol=0)
    near_image = np.isclose(b, full, atol=atol, rtol=0)
    return bool(np.any(near_crop & ~near_image))


# -- the generator --------------------------------------------------------------------------------


class AutomaticMaskGenerator:
    """Generate masks for everything in an image.

    >>> proposals = AutomaticMaskGenerator(model).generate(image)
    """

    def __init__(self, model: SamEngine | Sam, config: AutoMaskConfig | None = None) -> None:
        self.engine = as_engine(model)
        self.config = config or AutoMaskConfig.for_family(self.engine.family)

    def generate(
        self,
        image: Any,
        progress: ProgressCallback | None = None,
        predictor: SamPredictor | None = None,
    ) -> list[MaskProposal]:
        """All masks for ``image`` (array, PIL image or path), best predicted IoU first.

        ``progress(done, total)`` is called after each decoder batch (total counts batches).
        ``predictor``: one of the caller's on the same model (e.g. with a disk cache of
        embeddings); by default a fresh one, which still finds embeddings in the model's cache.
        """
        array = load_image(image, max_pixels=None)
        height, width = array.shape[:2]
        cfg = self.config
        crops = crop_boxes(height, width, cfg.crop_n_layers, cfg.crop_overlap_ratio)
        grids = {
            layer: point_grid(
                max(1, cfg.points_per_side // cfg.crop_n_points_downscale_factor**layer)
            )
            for layer in range(cfg.crop_n_layers + 1)
        }
        per_batch = cfg.points_per_batch
        if self.engine.device.type == "cpu":
            per_batch = min(per_batch, _CPU_POINTS_PER_BATCH)
        total = sum(math.ceil(len(grids[layer]) / per_batch) for _, layer in crops)
        done = 0
        proposals: list[MaskProposal] = []
        if predictor is None:
            predictor = SamPredictor(self.engine)
        elif predictor.engine is not self.engine:
            raise ValueError("the predictor must wrap the generator's model")
        for crop, layer in crops:
            x0, y0, x1, y1 = crop
            predictor.set_image(np.ascontiguousarray(array[y0:y1, x0:x1]))
            points = grids[layer] * np.array([x1 - x0, y1 - y0])
            for start in range(0, len(points), per_batch):
                batch = points[start : start + per_batch]
                proposals.extend(self._decode_batch(predictor, batch, crop, (height, width)))
                done += 1
                if progress is not None:
                    progress(done, total)
        return self._finish(proposals)

    def _decode_batch(
        self,
        predictor: SamPredictor,
        points: np.ndarray,
        crop: list[int],
        full_size: tuple[int, int],
    ) -> list[MaskProposal]:
        cfg = self.config
        low_res, iou = predictor.decode_low_res(
            points[:, None, :], np.ones((len(points), 1), dtype=np.int64), multimask_output=True
        )
        candidates = low_res.flatten(0, 1)
        scores = iou.flatten()
        point_of = np.repeat(points, low_res.shape[1], axis=0)
        keep = (scores > cfg.pred_iou_thresh).nonzero().flatten().tolist()
        height, width = full_size
        x0, y0, x1, y1 = crop
        out = []
        for chunk_start in range(0, len(keep), _UPSCALE_CHUNK):
            idx = keep[chunk_start : chunk_start + _UPSCALE_CHUNK]
            logits = predictor.upscale(candidates[idx][:, None])[:, 0]
            stability = stability_score(logits, cfg.mask_threshold, cfg.stability_score_offset)
            masks = (logits > cfg.mask_threshold).numpy()
            for j, i in enumerate(idx):
                if stability[j] <= cfg.stability_score_thresh:
                    continue
                local_box = mask_to_box(masks[j])
                box = [local_box[0] + x0, local_box[1] + y0, local_box[2] + x0, local_box[3] + y0]
                if _near_crop_edge(box, crop, [0, 0, width, height]):
                    continue
                full = np.zeros((height, width), dtype=bool)
                full[y0:y1, x0:x1] = masks[j]
                px, py = point_of[i]
                out.append(
                    MaskProposal(
                        segmentation=full,
                        area=int(masks[j].sum()),
                        bbox=box,
                        predicted_iou=float(scores[i]),
                        stability_score=float(stability[j]),
                        point=(float(px + x0), float(py + y0)),
                        crop_box=list(crop),
                    )
                )
        return out

    def _finish(self, proposals: list[MaskProposal]) -> list[MaskProposal]:
        """NMS over all crops, optional region cleanup, COCO ``xywh`` boxes."""
        cfg = self.config
        boxes = np.array([p.bbox for p in proposals], dtype=np.float64).reshape(-1, 4)
        scores = np.array([p.predicted_iou for p in proposals], dtype=np.float64)
        kept = [proposals[i] for i in box_nms(boxes, scores, cfg.box_nms_thresh)]
        if cfg.min_mask_region_area > 0:
            cleaned = []
            for p in kept:
                mask, changed = remove_small_regions(p.segmentation, cfg.min_mask_region_area)
                if changed:
                    p.segmentation, p.area, p.bbox = mask, int(mask.sum()), mask_to_box(mask)
                if p.area > 0:
                    cleaned.append(p)
            kept = cleaned
        for p in kept:  # inclusive max indices -> COCO width/height in pixels
            x0, y0, x1, y1 = p.bbox
            p.bbox = [x0, y0, x1 - x0 + 1, y1 - y0 + 1]
        logger.info("Segment everything kept %d of %d candidates", len(kept), len(proposals))
        return kept
