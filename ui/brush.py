"""Brush and eraser strokes: the page's touch-up of a mask, checked and painted.

``static/stage.js`` sends one stroke per mouse-up as ``{mode, points, radius}`` in original
image pixels. :func:`parse_stroke` turns that untrusted payload into a :class:`Stroke` (or
refuses it with a :class:`~ui.errors.StrokeError` saying why); :func:`paint` applies a stroke to
a boolean mask. Both are pure: the undo step and the store are ``ui/actions.py``'s business.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from .errors import StrokeError

# A stroke is a polyline the page thins as it is drawn: this bounds the work one stroke asks
# of the server (and the payload) whatever a client sends.
MAX_STROKE_POINTS = 4096
# Beyond this a "brush" would repaint the whole of any image the app opens.
MAX_RADIUS = 4096
MODES = {"brush": False, "erase": True}  # mode -> erases


@dataclass(frozen=True)
class Stroke:
    """A thick polyline: every pixel within ``radius`` of it is painted (or erased).

    ``points`` are ``(x, y)`` pixel indices inside the image; ``radius`` is in image pixels
    (0: a one-pixel line).
    """

    points: tuple[tuple[int, int], ...]
    radius: int
    erase: bool

    @property
    def name(self) -> str:
        """What the stroke is called in messages and undo/redo ("brush stroke")."""
        return "eraser stroke" if self.erase else "brush stroke"


def parse_stroke(data: Mapping[str, Any], size: tuple[int, int]) -> Stroke:
    """A stroke from the page's payload for an image of ``size`` ``(H, W)``.

    Points outside the image are moved to its edge and the radius is clamped to
    ``[0, MAX_RADIUS]``; anything that is not a stroke (unknown mode, no points, more than
    ``MAX_STROKE_POINTS``, non-numbers, NaN or infinity) raises :class:`StrokeError`.
    """
    mode = data.get("mode")
    if not isinstance(mode, str) or mode not in MODES:
        raise StrokeError(f"Unknown stroke mode {str(mode)[:20]!r}: use brush or erase.")
    raw = data.get("points")
    if not isinstance(raw, list | tuple) or not raw:
        raise StrokeError("The stroke has no points: drag on the image to paint.")
    if len(raw) > MAX_STROKE_POINTS:
        raise StrokeError(
            f"The stroke has {len(raw):,} points; at most {MAX_STROKE_POINTS:,} are accepted: "
            "paint it in shorter strokes."
        )
    height, width = size
    points = []
    for point in raw:
        if not isinstance(point, list | tuple) or len(point) != 2:
            raise StrokeError("Each stroke point must be an [x, y] pair of image pixels.")
        x, y = (_finite(v, "A stroke point") for v in point)
        points.append((_clamp(x, width - 1), _clamp(y, height - 1)))
    radius = _finite(data.get("radius"), "The brush radius")
    if radius < 0:
        raise StrokeError("The brush radius cannot be negative.")
    return Stroke(tuple(points), round(min(radius, MAX_RADIUS)), MODES[mode])


def _finite(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StrokeError(f"{what} must be a number, not {type(value).__name__}.")
    if not math.isfinite(value):
        raise StrokeError(f"{what} must be a finite number.")
    return float(value)


def _clamp(value: float, top: int) -> int:
    return int(min(max(math.floor(value), 0), top))


def paint(mask: np.ndarray, stroke: Stroke) -> np.ndarray:
    """``mask`` (H, W) bool with ``stroke`` painted (or erased); a new (H, W) bool array.

    The stroke is a disc of ``radius`` at every point joined by lines as wide as the discs.
    """
    ink = np.zeros(mask.shape, dtype=np.uint8)
    # OpenCV's thick lines come out one pixel wider on each side than the thickness asked for
    # (odd values): 2r matches the 2r + 1 pixels across a disc of radius r.
    thickness = max(1, 2 * stroke.radius)
    for a, b in zip(stroke.points, stroke.points[1:], strict=False):
        cv2.line(ink, a, b, 1, thickness=thickness, lineType=cv2.LINE_8)
    for point in stroke.points:
        cv2.circle(ink, point, stroke.radius, 1, thickness=-1, lineType=cv2.LINE_8)
    touched = ink.astype(bool)
    return mask & ~touched if stroke.erase else mask | touched
