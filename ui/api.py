"""The HTTP endpoints' checks and work.

``predict``: image + points/box JSON -> best mask PNG + scores. It goes through the same model
and embedding cache as the interactive UI, so asking about an image a user has open does not
re-run the encoder. ``brush``: mask PNG + one brush or eraser stroke -> the touched-up mask PNG,
checked and painted by ``ui/brush.py`` exactly as the page's strokes are.
"""

from __future__ import annotations

import json
import logging
import math
import reprlib
from pathlib import Path
from typing import Any

import numpy as np

from sam.errors import PromptError, SamError
from sam.image_io import load_image
from sam.predictor import MAX_POINTS, check_point_count

from . import brush, outputs
from .errors import StrokeError
from .export import binary_mask_png
from .models import ModelManager

logger = logging.getLogger(__name__)


#: Longest points or box text parsed. 64 points written out generously (spaces, floats at full
#: precision) take a few kB; a 10^6-point text is refused before ``json.loads`` reads it.
MAX_PROMPT_TEXT = 256 * MAX_POINTS
_POINTS_FORM = (
    f"[[x, y, label], ...] with label 1 (object) or 0 (background), at most {MAX_POINTS} points"
)
_BOX_FORM = "[x0, y0, x1, y1]"
#: Longest stroke text parsed: ``MAX_STROKE_POINTS`` points written out generously.
MAX_STROKE_TEXT = 64 * brush.MAX_STROKE_POINTS
_STROKE_FORM = '{"mode": "brush" or "erase", "points": [[x, y], ...], "radius": r}'


def parse_points(text: str | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``'[[x, y, label], ...]'`` -> coords ``(N, 2) float64`` and labels ``(N,) int64``.

    Empty text (or ``[]``/``null``) -> ``(None, None)``. At most ``MAX_POINTS`` points, each
    ``[x, y, label]`` with finite numbers ``x, y`` (not NaN, not ``true``) and ``label``
    exactly 0 or 1 (``1.0`` is the same JSON number and accepted; ``1.5``, ``true`` and ``"1"``
    are not).
    """
    value = _read_json(text, "points", _POINTS_FORM)
    if value is None or value == []:
        return None, None
    if not isinstance(value, list):
        raise PromptError(f"points must be a list {_POINTS_FORM}, got {_preview(value)}.")
    check_point_count(value)
    coords = [_point_xy(point, i) for i, point in enumerate(value, start=1)]
    labels = [_point_label(point, i) for i, point in enumerate(value, start=1)]
    return np.array(coords, dtype=np.float64), np.array(labels, dtype=np.int64)


def parse_box(text: str | None) -> np.ndarray | None:
    """``'[x0, y0, x1, y1]'`` -> ``(4,) float64``; empty text (or ``[]``/``null``) -> None."""
    value = _read_json(text, "box", _BOX_FORM)
    if value is None or value == []:
        return None
    if not (isinstance(value, list) and len(value) == 4 and all(map(_is_number, value))):
        raise PromptError(f"box must be {_BOX_FORM} (four finite numbers), got {_preview(value)}.")
    return np.array(value, dtype=np.float64)


def parse_multimask(value: Any) -> bool:
    """The ``multimask`` flag: a JSON boolean, nothing that merely looks like one."""
    if not isinstance(value, bool):
        raise PromptError(f"multimask must be true or false, got {_preview(value)}.")
    return value


def parse_stroke_text(text: str | None) -> dict[str, Any]:
    """``'{"mode": ..., "points": [[x, y], ...], "radius": r}'`` -> the payload
    :func:`ui.brush.parse_stroke` checks, as the page sends it; refused with a
    :class:`~ui.errors.StrokeError` when it is not a JSON object (or too long to parse)."""
    value = _read_json(text, "stroke", _STROKE_FORM, MAX_STROKE_TEXT, StrokeError)
    if value is None:
        raise StrokeError(f"No stroke given: pass {_STROKE_FORM}.")
    if not isinstance(value, dict):
        raise StrokeError(f"stroke must be a JSON object {_STROKE_FORM}, got {_preview(value)}.")
    return value


def _read_json(
    text: str | None,
    what: str,
    form: str,
    limit: int = MAX_PROMPT_TEXT,
    error: type[SamError] = PromptError,
) -> Any:
    """Parse one field, refusing over-long or too deeply nested text with a message."""
    if text is None or not str(text).strip():
        return None
    text = str(text)
    if len(text) > limit:
        raise error(
            f"{what} is {len(text):,} characters long, over the limit of {limit:,}. "
            f"Expected {form}."
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{what} is not valid JSON ({exc.msg}); expected {form}.") from None
    except RecursionError:  # "[[[[...]]]]" thousands deep
        raise error(f"{what} is nested too deeply; expected {form}.") from None


def _point_xy(point: Any, index: int) -> list[float]:
    if not (isinstance(point, list) and len(point) == 3 and all(map(_is_number, point[:2]))):
        raise PromptError(
            f"point {index} must be an [x, y, label] triple of finite numbers, got "
            f"{_preview(point)}; points must be {_POINTS_FORM}."
        )
    return [float(point[0]), float(point[1])]


def _point_label(point: list[Any], index: int) -> int:
    label = point[2]
    if not (_is_number(label) and label in (0, 1)):
        raise PromptError(
            f"point {index} has label {_preview(label)}: a label must be 1 (object) or "
            "0 (background)."
        )
    return int(label)


def _is_number(v: Any) -> bool:
    """A finite JSON number: not a bool (``true`` is an int to Python), not NaN or infinity."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _preview(value: Any, limit: int = 60) -> str:
    """``value`` as JSON for a message, cut short: requests can be megabytes long."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):  # reprlib cuts deep nesting short too
        text = reprlib.repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def run_predict(
    manager: ModelManager,
    image: str | Path | None,
    points: str | None,
    box: str | None,
    multimask: Any,
    out_dir: Path | None = None,
) -> tuple[str, dict[str, Any]]:
    """The endpoint's work; raises ``SamError`` subclasses with user-facing messages.

    ``points``/``box`` are JSON text (see :func:`parse_points`, :func:`parse_box`) and
    ``multimask`` must be a real bool: clients can send any JSON value for each field.
    """
    if not image:
        raise PromptError("No image given: pass an image file.")
    # Every prompt field is checked before the image is read or encoded.
    coords, labels = parse_points(points)
    box_arr = parse_box(box)
    multimask_output = parse_multimask(multimask)
    if coords is None and box_arr is None:
        raise PromptError("Give at least one point ([[x, y, 1]]) or a box ([x0, y0, x1, y1]).")
    array = load_image(str(image))
    predictor = manager.predictor()
    predictor.set_image(array)
    masks, scores, _ = predictor.predict(
        point_coords=coords,
        point_labels=labels,
        box=box_arr,
        multimask_output=multimask_output,
    )
    path = _write_mask(masks[0], out_dir)
    height, width = array.shape[:2]
    info = {"scores": [float(s) for s in scores], "size": [int(height), int(width)]}
    logger.info("API predict: %s, scores %s", Path(str(image)).name, info["scores"])
    return path, info


def run_brush(
    mask: str | Path | None, stroke: str | None, out_dir: Path | None = None
) -> tuple[str, dict[str, Any]]:
    """Paint (or erase) one stroke on a mask file: the page's brush, for API clients.

    ``mask`` is an image file whose non-black pixels are the mask (``predict``'s PNG, an
    export); ``stroke`` is JSON text (:func:`parse_stroke_text`) in original image pixels,
    checked by :func:`ui.brush.parse_stroke` like the page's strokes (NaN, more than
    ``MAX_STROKE_POINTS`` points or an unknown mode are refused; points off the image and
    radii over ``MAX_RADIUS`` are clamped). Returns a new PNG (0/255, the mask's size; the
    input file is left as it was) and ``{"area", "changed", "size": [H, W]}``: the painted
    mask's pixel count, the count's change (+ painted, - erased) and the mask's size.
    """
    if not mask:
        raise StrokeError("No mask given: pass a mask image (e.g. predict's mask PNG).")
    data = parse_stroke_text(stroke)  # before the mask is read, like predict's prompts
    before = load_image(str(mask)).any(axis=2)
    painted = brush.paint(before, brush.parse_stroke(data, before.shape))
    path = _write_mask(painted, out_dir)
    height, width = painted.shape
    area, was = int(painted.sum()), int(before.sum())
    info = {"area": area, "changed": area - was, "size": [int(height), int(width)]}
    logger.info("API brush: %s, %+d px", Path(str(mask)).name, info["changed"])
    return path, info


def _write_mask(mask: np.ndarray, out_dir: Path | None) -> str:
    """``mask`` (H, W) bool as ``mask.png`` (0/255) in ``out_dir``; its path."""
    # The app passes a fresh folder of its bounded API folder (ui/outputs.py); library callers
    # without one get a fresh folder in this process's own, bounded the same way.
    folder = out_dir or outputs.fresh_folder(outputs.process_folder("sam-api-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mask.png"
    path.write_bytes(binary_mask_png(mask))
    return str(path)
