"""Annotated images for evaluation and fine-tuning: image files with their objects' masks kept
as COCO RLE (a mask is decoded only while it is used, so a dataset never sits in memory)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from ..errors import DatasetError
from ..masks import rle_bbox_area, rle_to_mask

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnnotatedObject:
    """One object: its mask as COCO RLE (``{"size": [H, W], "counts": ...}``) and label name."""

    rle: dict[str, Any]
    label: str = ""

    def mask(self) -> np.ndarray:
        """``(H, W) bool``."""
        return rle_to_mask(self.rle)

    @property
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the mask."""
        height, width = self.rle["size"]
        return int(height), int(width)


@dataclass(frozen=True)
class AnnotatedImage:
    """An image file and its objects; ``name`` is how messages refer to it (never a full
    path: messages reach remote users of the app)."""

    path: Path
    name: str
    objects: tuple[AnnotatedObject, ...]


def read_coco(annotations: str | Path, images_dir: str | Path) -> list[AnnotatedImage]:
    """A COCO instances file (RLE or polygon segmentations) and its image folder.

    Images without objects and empty masks are left out (logged).

    Raises:
        DatasetError: the file is not COCO instances JSON.
    """
    annotations, images_dir = Path(annotations), Path(images_dir)
    try:
        document = json.loads(annotations.read_text(encoding="utf-8"))
        images = {img["id"]: img for img in document["images"]}
        categories = {c["id"]: str(c["name"]) for c in document.get("categories", [])}
        entries = document["annotations"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DatasetError(
            f"{annotations.name} is not a COCO instances file (images, annotations): {exc}"
        ) from exc
    objects: dict[Any, list[AnnotatedObject]] = {key: [] for key in images}
    empty = 0
    for ann in entries:
        image = images.get(ann.get("image_id"))
        if image is None:
            continue
        rle = _segmentation_rle(ann.get("segmentation"), int(image["height"]), int(image["width"]))
        if rle is None or rle_bbox_area(rle)[1] == 0:
            empty += 1
            continue
        label = categories.get(ann.get("category_id"), "")
        objects[ann["image_id"]].append(AnnotatedObject(rle, label))
    if empty:
        logger.info("Left out %d empty or unreadable segmentations of %s", empty, annotations.name)
    return [
        AnnotatedImage(images_dir / images[key]["file_name"], images[key]["file_name"], tuple(objs))
        for key, objs in objects.items()
        if objs
    ]


def _segmentation_rle(segmentation: Any, height: int, width: int) -> dict[str, Any] | None:
    """COCO segmentation (compressed/uncompressed RLE or polygons) -> compressed RLE."""
    if isinstance(segmentation, dict):
        if isinstance(segmentation.get("counts"), list):
            return mask_utils.frPyObjects(segmentation, height, width)
        return segmentation
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if isinstance(p, list) and len(p) >= 6]
        if polygons:
            return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    return None


def check_dataset(images: Sequence[AnnotatedImage]) -> None:
    """Refuse a dataset that cannot be used, before any model work: no objects, an image that
    cannot be opened, or masks whose size is not their image's.

    Raises:
        DatasetError: naming the image and what to fix.
    """
    if not any(image.objects for image in images):
        raise DatasetError(
            "The dataset has no annotated objects: annotate some objects first, or point at "
            "the annotations file that holds them."
        )
    for image in images:
        try:
            with Image.open(image.path) as opened:
                width, height = opened.size
        except (OSError, ValueError) as exc:
            raise DatasetError(
                f"The image {image.name} cannot be read ({type(exc).__name__}): check that it "
                "exists in the image folder and is a PNG, JPEG, WebP, TIFF, BMP or GIF file."
            ) from exc
        for obj in image.objects:
            if obj.size != (height, width):
                raise DatasetError(
                    f"A mask of {image.name} is {obj.size[1]}x{obj.size[0]} but the image is "
                    f"{width}x{height}: the annotations belong to another version of the image."
                )
