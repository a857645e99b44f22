"""The simulated annotator of the interactive-segmentation benchmarks (RITM, SimpleClick, SAM):
each click goes to the interior point of the largest error region farthest from its border.

The first click (nothing predicted yet) is therefore the object's most interior point; later
clicks are positive in a region the prediction missed and negative in one it spilled into.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Click:
    """A click at pixel ``(x, y)``; ``positive``: on the object (label 1) or not (label 0)."""

    x: int
    y: int
    positive: bool


def interior_distance(region: np.ndarray) -> np.ndarray:
    """``(H, W) bool`` -> ``(H, W) float32``: each pixel's distance to the nearest pixel
    outside ``region``, the image border counting as outside (as in RITM)."""
    padded = np.pad(region.astype(np.uint8), 1)
    return cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]


def next_click(target: np.ndarray, predicted: np.ndarray | None = None) -> Click | None:
    """The annotator's next click for ``target`` given the current prediction (both
    ``(H, W) bool``; None: nothing predicted yet). None when the prediction is exact.

    Missed pixels and spilled pixels are two error maps; the click goes to the deepest point
    of whichever has the deeper one (ties: the missed one, a positive click).
    """
    target = np.asarray(target, dtype=bool)
    predicted = np.zeros_like(target) if predicted is None else np.asarray(predicted, dtype=bool)
    missed = interior_distance(target & ~predicted)
    spilled = interior_distance(predicted & ~target)
    positive = missed.max() >= spilled.max()
    depth = missed if positive else spilled
    if depth.max() <= 0:
        return None
    y, x = np.unravel_index(int(np.argmax(depth)), depth.shape)
    return Click(int(x), int(y), bool(positive))


def first_click(target: np.ndarray) -> Click:
    """The object's interior point farthest from its border (``target`` must not be empty)."""
    click = next_click(target)
    if click is None:
        raise ValueError("an empty mask has no interior point to click")
    return click
