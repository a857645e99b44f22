"""Binary-mask conversions: COCO RLE (pycocotools), boxes, polygons (OpenCV), SAM logits."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from .transforms import resized_shape

# Logit magnitude given to a mask fed back as ``mask_input``: clearly inside (+) or outside (-),
# in the range of the decoder's own confident logits.
MASK_LOGIT = 8.0


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """``(H, W) bool`` -> COCO compressed RLE ``{"size": [H, W], "counts": str}`` (JSON-ready)."""
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


def _coded(rle: dict[str, Any]) -> dict[str, Any]:
    if isinstance(rle.get("counts"), list):  # uncompressed RLE
        return mask_utils.frPyObjects(rle, *rle["size"])
    if isinstance(rle.get("counts"), str):
        return {**rle, "counts": rle["counts"].encode("ascii")}
    return rle


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """COCO RLE (compressed or uncompressed) -> ``(H, W) bool``."""
    return mask_utils.decode(_coded(rle)).astype(bool)


def bbox_xywh(mask: np.ndarray) -> list[int]:
    """COCO box ``[x, y, w, h]`` in pixels of an ``(H, W) bool`` mask; ``[0, 0, 0, 0]`` when
    the mask is empty. Every export format's box comes from here."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return [0, 0, 0, 0]
    cols = np.flatnonzero(mask.any(axis=0))
    x, y = int(cols[0]), int(rows[0])
    return [x, y, int(cols[-1]) + 1 - x, int(rows[-1]) + 1 - y]


def rle_bbox_area(rle: dict[str, Any]) -> tuple[list[float], int]:
    """COCO ``[x, y, w, h]`` box and pixel area of an RLE mask."""
    coded = _coded(rle)
    return [float(v) for v in mask_utils.toBbox(coded)], int(mask_utils.area(coded))


def mask_to_polygons(mask: np.ndarray, min_points: int = 3) -> list[list[float]]:
    """Outer contours of a mask as flat ``[x0, y0, x1, y1, ...]`` pixel polygons (OpenCV).

    Holes are not represented (COCO and YOLO polygons cannot express them); prefer RLE when
    masks have holes.
    """
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    polygons = []
    for contour in contours:
        points = contour.reshape(-1, 2)
        if len(points) >= min_points:
            polygons.append(points.astype(float).ravel().tolist())
    return polygons


def mask_to_logits(
    mask: np.ndarray,
    input_size: tuple[int, int] | None = None,
    pad_size: int = 1024,
    low_res: int = 256,
    magnitude: float = MASK_LOGIT,
) -> np.ndarray:
    """A binary mask ``(H, W)`` -> ``(1, low_res, low_res) float32`` logits for ``mask_input``.

    Mirrors SAM's geometry: the mask is resized like the image (longest side to ``pad_size``,
    or to ``input_size`` when given), padded bottom/right to the square, and averaged down to
    the low-res grid. Coverage 0..1 maps linearly to ``-magnitude..+magnitude``, so edges get
    soft logits and the decoder's upscaling thresholded at 0 gives the mask back.
    """
    mask = np.asarray(mask, dtype=bool)
    height, width = mask.shape
    in_h, in_w = input_size or resized_shape(height, width, pad_size)
    # INTER_AREA averages when shrinking; enlarging a small image needs interpolation instead.
    shrink = in_h * in_w <= height * width
    resized = cv2.resize(
        mask.astype(np.float32),
        (in_w, in_h),
        interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
    )
    padded = np.zeros((pad_size, pad_size), dtype=np.float32)
    padded[:in_h, :in_w] = resized
    coverage = cv2.resize(padded, (low_res, low_res), interpolation=cv2.INTER_AREA)
    return ((coverage * 2.0 - 1.0) * magnitude).astype(np.float32)[None]
