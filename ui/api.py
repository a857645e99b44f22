"""The ``predict`` HTTP endpoint: image + points/box JSON -> best mask PNG + scores.

It goes through the same model and embedding cache as the interactive UI, so asking about an
image a user has open does not re-run the encoder.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sam.errors import PromptError
from sam.image_io import load_image

from .export import binary_mask_png
from .models import ModelManager

logger = logging.getLogger(__name__)


def parse_points(text: str | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``'[[x, y, label], ...]'`` -> coords ``(N, 2)`` and labels ``(N,)``; empty -> None."""
    if text is None or not str(text).strip():
        return None, None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptError(
            f"points is not valid JSON ({exc.msg}); expected [[x, y, 1], ...]."
        ) from None
    if value in (None, []):
        return None, None
    if not isinstance(value, list) or not all(
        isinstance(p, list) and len(p) == 3 and all(_is_number(v) for v in p) for p in value
    ):
        raise PromptError(
            f"points must be a list of [x, y, label] triples with label 1 (object) or 0 "
            f"(background), got {text!r}."
        )
    arr = np.array(value, dtype=np.float64)
    return arr[:, :2], arr[:, 2].astype(np.int64)


def parse_box(text: str | None) -> np.ndarray | None:
    """``'[x0, y0, x1, y1]'`` -> array; empty -> None."""
    if text is None or not str(text).strip():
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptError(
            f"box is not valid JSON ({exc.msg}); expected [x0, y0, x1, y1]."
        ) from None
    if value in (None, []):
        return None
    if not (isinstance(value, list) and len(value) == 4 and all(_is_number(v) for v in value)):
        raise PromptError(f"box must be [x0, y0, x1, y1] (four numbers), got {text!r}.")
    return np.array(value, dtype=np.float64)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def run_predict(
    manager: ModelManager,
    image: str | Path | None,
    points: str | None,
    box: str | None,
    multimask: bool,
    out_dir: Path | None = None,
) -> tuple[str, dict[str, Any]]:
    """The endpoint's work; raises ``SamError`` subclasses with user-facing messages."""
    if not image:
        raise PromptError("No image given: pass an image file.")
    coords, labels = parse_points(points)
    box_arr = parse_box(box)
    if coords is None and box_arr is None:
        raise PromptError("Give at least one point ([[x, y, 1]]) or a box ([x0, y0, x1, y1]).")
    array = load_image(str(image))
    predictor = manager.predictor()
    predictor.set_image(array)
    masks, scores, _ = predictor.predict(
        point_coords=coords,
        point_labels=labels,
        box=box_arr,
        multimask_output=bool(multimask),
    )
    folder = out_dir or Path(tempfile.mkdtemp(prefix="sam-api-"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mask.png"
    path.write_bytes(binary_mask_png(masks[0]))
    height, width = array.shape[:2]
    info = {"scores": [float(s) for s in scores], "size": [int(height), int(width)]}
    logger.info("API predict: %s, scores %s", Path(str(image)).name, info["scores"])
    return str(path), info
