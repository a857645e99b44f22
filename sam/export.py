"""Dataset export: COCO instances JSON, YOLO segmentation, PNG instance/semantic maps.

``python -m sam.export --db PATH --format coco|yolo|png --out DIR [--polygons]``

Masks leave the database exactly as stored (COCO RLE). Polygons (COCO option, YOLO) come from
OpenCV contours and cannot represent holes; RLE is the default for COCO for that reason.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import ExportError, SamError
from .masks import mask_to_polygons, rle_to_mask
from .store import AnnotationStore, ImageRecord, Label, ObjectRecord

logger = logging.getLogger(__name__)

FORMATS = ("coco", "yolo", "png")
UNLABELLED = "unlabelled"


# -- pure map builders ---------------------------------------------------------------------


def _map_dtype(max_value: int) -> type[np.unsignedinteger]:
    if max_value > 65535:
        raise ExportError(f"{max_value} ids do not fit a 16-bit PNG.")
    return np.uint8 if max_value <= 255 else np.uint16


def instance_map(masks: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` map where pixel = 1-based index of the last mask covering it, 0 elsewhere.

    uint8 for up to 255 masks, uint16 beyond (PNG stores both losslessly).
    """
    out = np.zeros(shape, dtype=_map_dtype(len(masks)))
    for i, mask in enumerate(masks, start=1):
        out[mask] = i
    return out


def semantic_map(
    masks: Sequence[np.ndarray], label_ids: Sequence[int], shape: tuple[int, int]
) -> np.ndarray:
    """``(H, W)`` map where pixel = label id of the last mask covering it, 0 = background."""
    out = np.zeros(shape, dtype=_map_dtype(max(label_ids, default=0)))
    for mask, label in zip(masks, label_ids, strict=True):
        out[mask] = label
    return out


def labels_json(labels: Sequence[Label]) -> dict[str, dict[str, str]]:
    """``{"<id>": {"name": ..., "color": ...}}`` for the semantic map's values."""
    return {str(label.id): {"name": label.name, "color": label.color} for label in labels}


# -- helpers over a store -----------------------------------------------------------------------


def _image_size(record: ImageRecord, objects: list[ObjectRecord], images_dir: Path | None):
    """(height, width) as displayed: from the masks, the store, or the file's header."""
    if objects:
        height, width = objects[0].rle["size"]
        return int(height), int(width)
    if record.width and record.height:
        return record.height, record.width
    if images_dir is None:
        raise ExportError(f"Size of {record.path} unknown and the image folder is not known.")
    with Image.open(images_dir / record.path) as img:
        width, height = img.size
        if img.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF orientations with a 90° turn
            width, height = height, width
    return height, width


def _prepare_out(out_dir: Path) -> Path:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"Cannot write to {out_dir}: {exc}") from exc
    return out_dir


def _annotated(store: AnnotationStore) -> list[tuple[ImageRecord, list[ObjectRecord]]]:
    by_image: dict[int, list[ObjectRecord]] = {}
    for obj in store.objects():
        by_image.setdefault(obj.image_id, []).append(obj)
    return [(rec, by_image.get(rec.id, [])) for rec in store.images()]


def _require_objects(pairs) -> None:
    if not any(objects for _, objects in pairs):
        raise ExportError("Nothing to export yet: no image has an accepted object.")


# -- formats --------------------------------------------------------------------------------------


def export_coco(store: AnnotationStore, out_dir: Path, polygons: bool = False) -> Path:
    """Write ``annotations.json`` in COCO instances format; returns its path.

    Categories are the project's labels (objects without a label go to ``unlabelled``).
    Segmentations are RLE, or polygons with ``polygons=True``.
    """
    pairs = _annotated(store)
    _require_objects(pairs)
    labels = store.labels()
    categories = [{"id": lb.id, "name": lb.name, "supercategory": ""} for lb in labels]
    unlabelled_id = max((lb.id for lb in labels), default=0) + 1
    images, annotations = [], []
    for record, objects in pairs:
        height, width = _image_size(record, objects, store.images_dir)
        images.append({"id": record.id, "file_name": record.path, "height": height, "width": width})
        for obj in objects:
            category = obj.label_id if obj.label_id is not None else unlabelled_id
            segmentation = mask_to_polygons(rle_to_mask(obj.rle)) if polygons else obj.rle
            annotations.append(
                {
                    "id": obj.id,
                    "image_id": record.id,
                    "category_id": category,
                    "segmentation": segmentation,
                    "area": obj.area,
                    "bbox": obj.bbox,
                    "iscrowd": 0,
                    "score": obj.score,
                }
            )
    if any(a["category_id"] == unlabelled_id for a in annotations):
        categories.append({"id": unlabelled_id, "name": UNLABELLED, "supercategory": ""})
    document = {
        "info": {"description": "exported by sam-annotator"},
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    path = _prepare_out(out_dir) / "annotations.json"
    path.write_text(json.dumps(document))
    logger.info("COCO: %d images, %d objects -> %s", len(images), len(annotations), path)
    return path


def export_yolo(store: AnnotationStore, out_dir: Path) -> Path:
    """Write YOLO segmentation labels (``labels/<image>.txt``) and ``data.yaml``.

    Each line is ``class x1 y1 x2 y2 ...`` with coordinates normalised to [0, 1]. An object
    made of several separate regions gives one line per region. Returns the data.yaml path.
    """
    pairs = _annotated(store)
    _require_objects(pairs)
    labels = store.labels()
    names = [lb.name for lb in labels]
    class_of = {lb.id: i for i, lb in enumerate(labels)}
    if any(obj.label_id is None for _, objects in pairs for obj in objects):
        class_of[None] = len(names)
        names.append(UNLABELLED)
    out = _prepare_out(out_dir)
    for record, objects in pairs:
        height, width = _image_size(record, objects, store.images_dir)
        lines = []
        for obj in objects:
            for polygon in mask_to_polygons(rle_to_mask(obj.rle)):
                xy = np.asarray(polygon).reshape(-1, 2) / [width, height]
                coords = " ".join(f"{v:.6f}" for v in xy.ravel())
                lines.append(f"{class_of[obj.label_id]} {coords}")
        target = out / "labels" / Path(record.path).with_suffix(".txt")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(lines) + ("\n" if lines else ""))
    images_dir = store.images_dir or Path("images")
    yaml_lines = [
        f"path: {out.resolve()}",
        f"train: {images_dir}",
        f"val: {images_dir}",
        "names:",
        *[f"  {i}: {json.dumps(name)}" for i, name in enumerate(names)],
    ]
    data_yaml = out / "data.yaml"
    data_yaml.write_text("\n".join(yaml_lines) + "\n")
    return data_yaml


def export_png(store: AnnotationStore, out_dir: Path) -> list[Path]:
    """Per annotated image: ``instances/<image>.png`` (object ids in order, 16-bit beyond 255
    objects) and ``semantic/<image>.png`` (label ids), plus ``labels.json``."""
    pairs = _annotated(store)
    _require_objects(pairs)
    out = _prepare_out(out_dir)
    written = []
    for record, objects in pairs:
        if not objects:
            continue
        shape = _image_size(record, objects, store.images_dir)
        masks = [rle_to_mask(obj.rle) for obj in objects]
        stem = Path(record.path).with_suffix(".png")
        for kind, array in (
            ("instances", instance_map(masks, shape)),
            ("semantic", semantic_map(masks, [obj.label_id or 0 for obj in objects], shape)),
        ):
            target = out / kind / stem
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(target)
            written.append(target)
    (out / "labels.json").write_text(json.dumps(labels_json(store.labels()), indent=1))
    return written


# -- command line ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m sam.export", description="Export a project's annotations as a dataset."
    )
    parser.add_argument("--db", required=True, type=Path, help="the project's annotations.sqlite")
    parser.add_argument("--format", required=True, choices=FORMATS, help="dataset format")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--polygons", action="store_true", help="COCO: polygons instead of RLE (loses holes)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if not args.db.is_file():
            raise ExportError(f"No annotation database at {args.db}.")
        with AnnotationStore(args.db) as store:
            if args.format == "coco":
                result = export_coco(store, args.out, polygons=args.polygons)
            elif args.format == "yolo":
                result = export_yolo(store, args.out)
            else:
                export_png(store, args.out)
                result = args.out
    except SamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"exported {args.format} to {result}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
