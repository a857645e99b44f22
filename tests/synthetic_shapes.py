"""A small synthetic instance-segmentation dataset in COCO format: shapes with distinct colours
and textures (circles, rectangles, triangles) on varied, textured backgrounds.

Deterministic for a seed. Used by the evaluation and fine-tuning tests and by
``bench/bench_finetune.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from sam.masks import bbox_xywh, mask_to_rle

SHAPES = ("circle", "rectangle", "triangle")
# Each shape kind has its own colour family and texture, so a model can tell them apart.
_COLOURS = {"circle": (220, 60, 50), "rectangle": (50, 90, 220), "triangle": (240, 200, 40)}


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    base = rng.integers(40, 200, size=3)
    yy, xx = np.mgrid[0:height, 0:width]
    angle = rng.uniform(0, np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) / max(height, width)
    image = base[None, None, :] + 50 * ramp[..., None] + rng.normal(0, 18, (height, width, 3))
    return image


def _shape_mask(rng: np.random.Generator, kind: str, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    size = int(rng.integers(min(height, width) // 6, min(height, width) // 3))
    cx = int(rng.integers(size, width - size))
    cy = int(rng.integers(size, height - size))
    if kind == "circle":
        cv2.circle(mask, (cx, cy), size, 1, -1)
    elif kind == "rectangle":
        w, h = size, int(size * rng.uniform(0.5, 1.0))
        cv2.rectangle(mask, (cx - w, cy - h), (cx + w, cy + h), 1, -1)
    else:
        points = np.array([[cx, cy - size], [cx - size, cy + size], [cx + size, cy + size]])
        cv2.fillPoly(mask, [points.astype(np.int32)], 1)
    return mask.astype(bool)


def _paint(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, kind: str) -> None:
    height, width = mask.shape
    yy, xx = np.mgrid[0:height, 0:width]
    colour = np.array(_COLOURS[kind]) + rng.integers(-25, 25, size=3)
    if kind == "circle":  # solid
        texture = np.ones((height, width))
    elif kind == "rectangle":  # stripes
        texture = 0.75 + 0.25 * np.sign(np.sin(xx / 3.0))
    else:  # checker
        texture = 0.8 + 0.2 * (((xx // 5) + (yy // 5)) % 2)
    painted = colour[None, None, :] * texture[..., None] + rng.normal(0, 6, (height, width, 3))
    image[mask] = painted[mask]


def make_dataset(
    folder: Path,
    n_images: int = 12,
    seed: int = 0,
    size: tuple[int, int] = (192, 256),
    shapes_per_image: tuple[int, int] = (2, 3),
) -> tuple[Path, Path]:
    """Write ``folder/images/*.png`` and ``folder/annotations.json`` (COCO, RLE masks of the
    visible part of each shape); returns (annotations, images folder)."""
    rng = np.random.default_rng(seed)
    images_dir = folder / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    height, width = size
    document = {
        "images": [],
        "annotations": [],
        "categories": [{"id": i + 1, "name": name} for i, name in enumerate(SHAPES)],
    }
    for index in range(n_images):
        image = _background(rng, height, width)
        placed: list[tuple[str, np.ndarray]] = []
        count = int(rng.integers(shapes_per_image[0], shapes_per_image[1] + 1))
        for kind in rng.permutation(SHAPES)[:count]:
            mask = _shape_mask(rng, str(kind), height, width)
            _paint(rng, image, mask, str(kind))
            # Later shapes hide what they cover of earlier ones.
            placed = [(k, m & ~mask) for k, m in placed]
            placed.append((str(kind), mask))
        name = f"shapes_{index:03d}.png"
        cv2.imwrite(
            str(images_dir / name), np.clip(image, 0, 255).astype(np.uint8)[..., ::-1].copy()
        )
        document["images"].append(
            {"id": index + 1, "file_name": name, "height": height, "width": width}
        )
        for kind, mask in placed:
            if mask.sum() < 50:
                continue
            document["annotations"].append(
                {
                    "id": len(document["annotations"]) + 1,
                    "image_id": index + 1,
                    "category_id": SHAPES.index(kind) + 1,
                    "segmentation": mask_to_rle(mask),
                    "bbox": bbox_xywh(mask),
                    "area": int(mask.sum()),
                    "iscrowd": 0,
                }
            )
    annotations = folder / "annotations.json"
    annotations.write_text(json.dumps(document))
    return annotations, images_dir
