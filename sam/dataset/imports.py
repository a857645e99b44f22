"""Reading existing annotations as masks: PNG masks (binary or instance maps) and COCO JSON.

Pure file parsing (numpy, Pillow, pycocotools); the page decides which image each mask goes to.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from ..errors import ImportFileError
from ..masks import rle_to_mask

ImportedMask = tuple[np.ndarray, str | None]  # (H, W) bool, label name (None: not given)


def masks_from_png(path: str | Path) -> list[ImportedMask]:
    """A PNG as masks: a binary mask gives one, an instance map one per non-zero value.

    Greyscale (8/16-bit) and palette PNGs are read by value; RGB(A) maps by colour, black
    being background. Instances come in increasing value order.
    """
    try:
        with Image.open(path) as img:
            img.load()
            by_value = img.mode in ("L", "I;16", "I", "P", "1")
            array = np.asarray(img if by_value else img.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise ImportFileError(f"{Path(path).name} is not a readable PNG mask: {exc}") from exc
    if array.ndim == 3:  # colour-coded instances: one id per distinct colour
        packed = array[..., 0].astype(np.int64) << 16 | array[..., 1].astype(np.int64) << 8
        array = packed | array[..., 2]
    values = [v for v in np.unique(array) if v != 0]
    return [(array == v, None) for v in values]


def masks_from_coco(path: str | Path) -> dict[str, list[ImportedMask]]:
    """COCO instances JSON -> ``{file_name: [(mask, category name), ...]}``.

    Segmentations may be compressed or uncompressed RLE or polygons.
    """
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        images = {img["id"]: img for img in document["images"]}
        # Names become labels shown in the page (escaped there); COCO carries no colours.
        categories = {c["id"]: str(c["name"]) for c in document.get("categories", [])}
        annotations = document["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ImportFileError(f"{Path(path).name} is not a COCO instances file: {exc}") from exc
    found: dict[str, list[ImportedMask]] = defaultdict(list)
    for ann in annotations:
        image = images.get(ann.get("image_id"))
        if image is None:
            continue
        height, width = int(image["height"]), int(image["width"])
        mask = _segmentation_mask(ann.get("segmentation"), height, width)
        if mask is not None:
            found[image["file_name"]].append((mask, categories.get(ann.get("category_id"))))
    return dict(found)


def _segmentation_mask(segmentation: Any, height: int, width: int) -> np.ndarray | None:
    if isinstance(segmentation, dict):
        return rle_to_mask(segmentation)
    if isinstance(segmentation, list) and segmentation:
        polygons = [p for p in segmentation if isinstance(p, list) and len(p) >= 6]
        if not polygons:
            return None
        rles = mask_utils.frPyObjects(polygons, height, width)
        return mask_utils.decode(mask_utils.merge(rles)).astype(bool)
    return None
