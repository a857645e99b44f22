"""The ``predict`` HTTP endpoint: image + points/box JSON -> best mask PNG + scores.

It goes through the same model and embedding cache as the interactive UI, so asking about an
image a user has open does not re-run the encoder.
"""

from __future__ import annotations

import json
import logging
import math
import reprlib
from pathlib import Path
from typing import Any

import numpy as np

from sam.errors import PromptError
from sam.image_io import load_image
from sam.predictor import MAX_POINTS, check_point_count

from . import outputs
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


def _read_json(text: str | None, what: str, form: str) -> Any:
    """Parse one prompt field, refusing over-long or too deeply nested text with a message."""
    if text is None or not str(text).strip():
        return None
    text = str(text)
    if len(text) > MAX_PROMPT_TEXT:
        raise PromptError(
            f"{what} is {len(text):,} characters long, over the limit of {MAX_PROMPT_TEXT:,}. "
            f"Expected {form}."
        )
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptError(f"{what} is not valid JSON ({exc.msg}); expected {form}.") from None
    except RecursionError:  # "[[[[...]]]]" thousands deep
        raise PromptError(f"{what} is nested too deeply; expected {form}.") from None


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
    # The app passes a fresh folder of its bounded API folder (ui/outputs.py); library callers
    # without one get a fresh folder in this process's own, bounded the same way.
    folder = out_dir or outputs.fresh_folder(outputs.process_folder("sam-api-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mask.png"
    path.write_bytes(binary_mask_png(masks[0]))
    height, width = array.shape[:2]
    info = {"scores": [float(s) for s in scores], "size": [int(height), int(width)]}
    logger.info("API predict: %s, scores %s", Path(str(image)).name, info["scores"])
    return str(path), info
