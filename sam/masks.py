"""Binary-mask conversions: COCO RLE (pycocotools), boxes and polygons (OpenCV)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils


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
