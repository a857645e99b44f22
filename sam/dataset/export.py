"""One exporter for every way annotations leave the app.

The page's *Export all (zip)* (one image), the page's *Export project* and
``python -m sam.export --db PATH --format coco|yolo|png --out DIR [--polygons]`` all build
their files here, so they agree on label ids, ``labels.json``, boxes and colours.

Label ids are the labels' stable ids: the store's label id in a folder project, 1, 2, ... never
reused in a single-upload session. Deleting a label never renumbers the others. An object
without a label is background (0) in semantic maps and has ``label_id: null`` in
``labels.json``; COCO and YOLO need a category, so there it is left out and listed as skipped.

One image's *bundle* (the page's zip; one folder per image, named after the image file, in the
PNG dataset):

- ``instance_map.png``: object i (1..N, list order) painted with i, 0 = background; 8-bit, or
  16-bit beyond 255 objects. Where objects overlap the later one wins.
- ``semantic_map.png``: each object's label id, 0 = background and objects without a label;
  16-bit when a label id exceeds 255.
- ``masks/NNNN_<label>.png``: each object's complete mask, 0/255.
- ``labels.json``: ``{"image": {"name", "width", "height"}, "background": 0, "labels": [{"id",
  "name", "color"}], "objects": [{"id", "label_id", "label", "color", "area", "bbox", "score",
  "mask", "hidden", "prompts"}]}``; ``id`` is the object's value in the instance map, ``bbox``
  is COCO ``[x, y, w, h]`` in pixels (:func:`sam.masks.bbox_xywh`, used by every format),
  ``prompts`` is ``{"points": [[x, y, 1 | 0]], "box": [x0, y0, x1, y1] | null}`` or null.

A project image whose file cannot be read (missing, empty, truncated, not an image, or a size
other than the one its masks were drawn on) is skipped: the other images are exported, and every
skipped image or object is named in ``skipped.txt`` and in the :class:`ExportReport`. Masks
leave the database exactly as stored (COCO RLE); polygons (COCO option, YOLO) come from OpenCV
contours and cannot represent holes, which is why RLE is the COCO default.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import re
import sqlite3
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import ExportError, ImageLoadError, SamError
from ..masks import bbox_xywh, mask_to_polygons, mask_to_rle
from .annotations import (
    UNLABELLED_ID,
    ImageAnnotations,
    Label,
    ObjectAnnotation,
    RleMask,
    prompts_record,
)
from .colors import UNLABELLED_COLOR
from .store import AnnotationStore, ImageRecord, ObjectRecord

logger = logging.getLogger(__name__)

FORMATS = ("coco", "yolo", "png")
UNLABELLED = "unlabelled"
MASK_ON = 255
SKIPPED_FILE = "skipped.txt"
NO_CATEGORY = "has no label; left out (COCO and YOLO need a category)"
# How many skipped images a one-line summary names before "and N more".
SUMMARY_NAMES = 5

#: Where exported files go: ``put(relative posix path, content)``, e.g. ``ZipFile.writestr``.
Sink = Callable[[str, bytes], None]


@dataclass(frozen=True)
class Skipped:
    """An image left out of an export (``object_id`` None), or one of its objects."""

    image: str
    reason: str
    object_id: int | None = None  # the object's instance id (1..N in the image)

    def __str__(self) -> str:
        what = self.image if self.object_id is None else f"{self.image} object #{self.object_id}"
        return f"{what}: {self.reason}"


@dataclass
class ExportReport:
    """What an export wrote and what it left out."""

    format: str
    images: int = 0
    objects: int = 0
    skipped: list[Skipped] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the page: the skipped images by name, objects left out counted."""
        images = [s for s in self.skipped if s.object_id is None]
        objects = len(self.skipped) - len(images)
        parts = []
        if images:
            parts.append(f"skipped {len(images)} image(s): {name_skipped(images)}")
        if objects:
            parts.append(f"left out {objects} object(s) without a label")
        return (", ".join(parts) + f" (see {SKIPPED_FILE})") if parts else ""


def name_skipped(items: Sequence[Skipped]) -> str:
    """``a.jpg (reason); b.jpg (reason); and N more``: the first few, for a message."""
    named = "; ".join(f"{s.image} ({s.reason})" for s in items[:SUMMARY_NAMES])
    more = len(items) - SUMMARY_NAMES
    return named + (f"; and {more} more" if more > 0 else "")


# -- shared helpers ---------------------------------------------------------------------------


def safe_name(text: str, default: str) -> str:
    """``text`` as one harmless file-name component: no separators, no leading dots."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or default


def object_filename(instance_id: int, label: str | None) -> str:
    """``masks/NNNN_<label>.png`` of the object with this instance id."""
    return f"masks/{instance_id:04d}_{safe_name(label or UNLABELLED, 'object')}.png"


def png_bytes(array: np.ndarray) -> bytes:
    """Lossless PNG of a 2-D uint8 (8-bit) or uint16 (16-bit) array."""
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {array.shape}")
    if array.dtype == np.uint16:
        # Pillow maps little-endian uint16 to mode "I;16" and writes a 16-bit greyscale PNG.
        image = Image.fromarray(array.astype("<u2", copy=False))
    elif array.dtype == np.uint8:
        image = Image.fromarray(array)
    else:
        raise ValueError(f"expected uint8 or uint16, got {array.dtype}")
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def binary_mask_png(mask: np.ndarray) -> bytes:
    """0/255 PNG of one ``(H, W) bool`` mask."""
    return png_bytes(np.asarray(mask, dtype=bool).astype(np.uint8) * MASK_ON)


def _map_dtype(max_value: int) -> type[np.unsignedinteger]:
    if max_value > 65535:
        raise ExportError(f"{max_value} ids do not fit a 16-bit PNG.")
    return np.uint8 if max_value <= 255 else np.uint16


def _label_table(labels: Iterable[Label]) -> dict[int, Label]:
    """Real labels by id, in id order; ``UNLABELLED_ID`` (no label) is left out."""
    ordered = sorted(labels, key=lambda lab: lab.id)
    return {lab.id: lab for lab in ordered if lab.id > UNLABELLED_ID}


# -- one image ------------------------------------------------------------------------------------


def write_bundle(image: ImageAnnotations, put: Sink) -> None:
    """Write one image's ``instance_map.png``, ``semantic_map.png``, ``masks/NNNN_<label>.png``
    and ``labels.json`` (see the module docstring), each mask unpacked once."""
    shape = (image.height, image.width)
    labels = _label_table(image.labels)
    owners = [labels.get(obj.label_id) if obj.label_id is not None else None
              for obj in image.objects]  # fmt: skip
    instances = np.zeros(shape, _map_dtype(len(image.objects)))
    semantic = np.zeros(shape, _map_dtype(max((lab.id for lab in owners if lab), default=0)))
    entries = []
    for number, (obj, label) in enumerate(zip(image.objects, owners, strict=True), start=1):
        mask = np.asarray(obj.mask.to_array(), dtype=bool)
        if mask.shape != shape:
            raise ExportError(
                f"{image.name}: object #{number} is {mask.shape[1]}×{mask.shape[0]} but the "
                f"image is {image.width}×{image.height}."
            )
        instances[mask] = number
        if label is not None:
            semantic[mask] = label.id
        entry = _object_entry(number, obj, label, mask)
        put(entry["mask"], binary_mask_png(mask))
        entries.append(entry)
    put("instance_map.png", png_bytes(instances))
    put("semantic_map.png", png_bytes(semantic))
    document = {
        "image": {"name": image.name, "width": image.width, "height": image.height},
        "background": 0,
        "labels": [{"id": lab.id, "name": lab.name, "color": lab.color} for lab in labels.values()],
        "objects": entries,
    }
    put("labels.json", json.dumps(document, indent=2).encode())


def _object_entry(
    number: int, obj: ObjectAnnotation, label: Label | None, mask: np.ndarray
) -> dict[str, Any]:
    return {
        "id": number,
        "label_id": label.id if label else None,
        "label": label.name if label else None,
        "color": obj.color or (label.color if label else UNLABELLED_COLOR),
        "area": int(np.count_nonzero(mask)),
        "bbox": bbox_xywh(mask),
        "score": None if obj.score is None else round(float(obj.score), 6),
        "mask": object_filename(number, label.name if label else None),
        "hidden": bool(obj.hidden),
        "prompts": obj.prompts,
    }


# -- a project from its store ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectData:
    """A project's labels, its readable images and the images that were skipped."""

    labels: tuple[Label, ...]
    images: list[ImageAnnotations]
    skipped: list[Skipped]


def read_project(store: AnnotationStore, annotated_only: bool = False) -> ProjectData:
    """Every image of the store (or only those with objects) whose file reads completely."""
    try:
        labels = tuple(store.labels())
        by_image: dict[int, list[ObjectRecord]] = {}
        for obj in store.objects():
            by_image.setdefault(obj.image_id, []).append(obj)
        records = store.images()
    except (sqlite3.Error, ValueError) as exc:  # ValueError: a row that is not valid JSON
        raise ExportError(
            f"The annotation database cannot be read ({exc}); it may be damaged."
        ) from exc
    images, skipped = [], []
    for record in records:
        objects = by_image.get(record.id, [])
        if annotated_only and not objects:
            continue
        try:
            images.append(_project_image(store.images_dir, record, objects, labels))
        except ImageLoadError as exc:
            skipped.append(Skipped(record.path, str(exc)))
    return ProjectData(labels, images, skipped)


def _project_image(
    folder: Path | None, record: ImageRecord, objects: list[ObjectRecord], labels: tuple[Label, ...]
) -> ImageAnnotations:
    rel = PurePosixPath(record.path)
    if rel.is_absolute() or ".." in rel.parts or "\\" in record.path:
        raise ImageLoadError("its path leaves the project folder")
    masks = [RleMask(obj.rle) for obj in objects]
    try:
        shapes = {mask.shape for mask in masks}
    except (KeyError, TypeError, ValueError) as exc:
        raise ImageLoadError("its stored masks are damaged") from exc
    if folder is not None:
        height, width = image_file_size(folder / record.path)
    elif record.width and record.height:
        height, width = record.height, record.width
    elif shapes:
        height, width = next(iter(shapes))
    else:
        raise ImageLoadError("its size is unknown (the database does not name its image folder)")
    if shapes - {(height, width)}:
        h, w = next(iter(shapes - {(height, width)}))
        raise ImageLoadError(
            f"its masks were drawn on a {w}×{h} image but the file is {width}×{height} now "
            "(replaced?); restore the file or annotate it again"
        )
    return ImageAnnotations(
        name=record.path,
        height=height,
        width=width,
        labels=labels,
        objects=tuple(
            ObjectAnnotation(
                mask=mask,
                label_id=obj.label_id,
                score=obj.score,
                hidden=obj.hidden,
                color=obj.color,
                prompts=_stored_prompts(obj.prompts),
                source_id=obj.id,
            )
            for obj, mask in zip(objects, masks, strict=True)
        ),
        source_id=record.id,
    )


def _stored_prompts(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        return prompts_record(raw.get("points") or (), raw.get("box"))
    except (TypeError, ValueError, AttributeError):  # written by another program: not fatal
        return None


def image_file_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` of an image file as displayed (EXIF orientation applied), after checking that
    every byte of it decodes (JPEGs decode at 1/8 scale: quick, and still read to the end).

    Raises:
        ImageLoadError: the reason in words, without the path (the caller names the image).
    """
    try:
        if path.is_dir():
            raise ImageLoadError("it is a folder, not an image file")
        if path.stat().st_size == 0:
            raise ImageLoadError("the file is empty (0 bytes)")
        with Image.open(path) as img:
            width, height = img.size
            turned = _exif_turned(img)
            img.draft(img.mode, (max(1, width // 8), max(1, height // 8)))
            img.load()
    except ImageLoadError:
        raise
    except FileNotFoundError as exc:
        raise ImageLoadError("the file is missing (deleted or moved)") from exc
    except PermissionError as exc:
        raise ImageLoadError("the file cannot be read (permission denied)") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError("not a readable image (unknown format or damaged header)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageLoadError("too large to read") from exc
    except Exception as exc:  # Pillow's decoders raise many types for damaged data
        raise ImageLoadError("the file is truncated or corrupt") from exc
    return (width, height) if turned else (height, width)


def _exif_turned(img: Image.Image) -> bool:
    """Whether the EXIF orientation turns the image by 90° (as the app shows it)."""
    try:
        return img.getexif().get(0x0112, 1) in (5, 6, 7, 8)
    except Exception:  # a damaged EXIF block: the app ignores it too
        return False


# -- datasets -------------------------------------------------------------------------------------


def export_project(
    store: AnnotationStore, fmt: str, put: Sink, polygons: bool = False
) -> ExportReport:
    """Write the project as a ``fmt`` dataset through ``put``; skipped images and objects are
    listed in ``skipped.txt`` and the report.

    Raises:
        ExportError: unknown format, a damaged database, or nothing to export (no readable
            image has an object COCO/YOLO/PNG can hold); nothing is written then.
    """
    if fmt not in FORMATS:
        raise ExportError(f"Unknown export format {fmt!r}; use one of {', '.join(FORMATS)}.")
    project = read_project(store, annotated_only=fmt == "png")
    _check_exportable(project, fmt, any(rec.num_objects for rec in store.images()))
    report = ExportReport(fmt, skipped=list(project.skipped))
    if fmt == "coco":
        _write_coco(project, put, report, polygons)
    elif fmt == "yolo":
        _write_yolo(project, put, report)
    else:
        for image in project.images:
            write_bundle(image, _under(put, f"{image.name}/"))
            report.images += 1
            report.objects += len(image.objects)
    if report.skipped:
        put(SKIPPED_FILE, "".join(f"{item}\n" for item in report.skipped).encode())
    logger.info("%s: %d image(s), %d object(s) exported, %d skipped", fmt, report.images,
                report.objects, len(report.skipped))  # fmt: skip
    return report


def _under(put: Sink, prefix: str) -> Sink:
    return lambda name, data: put(prefix + name, data)


def _check_exportable(project: ProjectData, fmt: str, any_objects: bool) -> None:
    """Refuse an export that would hold no object, saying why."""
    if not any_objects:
        raise ExportError("Nothing to export yet: no image has an accepted object.")
    labels = _label_table(project.labels)
    objects = [obj for image in project.images for obj in image.objects]
    if fmt != "png" and objects and not any(obj.label_id in labels for obj in objects):
        raise ExportError(
            f"Nothing exported: {fmt.upper()} needs a category and none of the "
            f"{len(objects)} object(s) has a label. Label them, or export PNG maps."
        )
    if not objects:
        raise ExportError(
            f"Nothing exported: every annotated image was skipped: {name_skipped(project.skipped)}."
        )


def _write_coco(project: ProjectData, put: Sink, report: ExportReport, polygons: bool) -> None:
    """``annotations.json`` in COCO instances format: categories are the labels (their ids),
    segmentations RLE as stored, or polygons."""
    labels = _label_table(project.labels)
    images, annotations = [], []
    for image in project.images:
        images.append(
            {"id": image.source_id, "file_name": image.name, "height": image.height,
             "width": image.width}
        )  # fmt: skip
        for number, obj in enumerate(image.objects, start=1):
            if obj.label_id not in labels:
                report.skipped.append(Skipped(image.name, NO_CATEGORY, number))
                continue
            mask = obj.mask.to_array()
            if polygons:
                segmentation: Any = mask_to_polygons(mask)
            else:
                segmentation = obj.mask.rle if isinstance(obj.mask, RleMask) else mask_to_rle(mask)
            annotations.append(
                {
                    "id": obj.source_id,
                    "image_id": image.source_id,
                    "category_id": obj.label_id,
                    "segmentation": segmentation,
                    "area": int(np.count_nonzero(mask)),
                    "bbox": bbox_xywh(mask),
                    "iscrowd": 0,
                    "score": obj.score,
                }
            )
    document = {
        "info": {"description": "exported by sam-annotator"},
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": lab.id, "name": lab.name, "supercategory": ""} for lab in labels.values()
        ],
    }
    put("annotations.json", json.dumps(document).encode())
    report.images, report.objects = len(images), len(annotations)


def _write_yolo(project: ProjectData, put: Sink, report: ExportReport) -> None:
    """``labels/<image>.txt`` (``class x1 y1 x2 y2 ...``, normalised to [0, 1], one line per
    separate region of an object) and ``data.yaml``; classes are the labels in id order."""
    labels = _label_table(project.labels)
    class_of = {label_id: i for i, label_id in enumerate(labels)}
    owners: dict[str, str] = {}
    for image in project.images:
        target = f"labels/{PurePosixPath(image.name).with_suffix('.txt')}"
        if target in owners:  # YOLO finds labels by the image's name without its suffix
            reason = f"its YOLO label file {target} is {owners[target]}'s; rename one of them"
            report.skipped.append(Skipped(image.name, reason))
            continue
        owners[target] = image.name
        lines = []
        for number, obj in enumerate(image.objects, start=1):
            if obj.label_id not in labels:
                report.skipped.append(Skipped(image.name, NO_CATEGORY, number))
                continue
            for polygon in mask_to_polygons(obj.mask.to_array()):
                xy = np.asarray(polygon).reshape(-1, 2) / [image.width, image.height]
                coords = " ".join(f"{v:.6f}" for v in xy.ravel())
                lines.append(f"{class_of[obj.label_id]} {coords}")
            report.objects += 1
        put(target, ("\n".join(lines) + ("\n" if lines else "")).encode())
        report.images += 1
    yaml_lines = [
        "# YOLO segmentation labels from sam-annotator: put (or link) the project's images",
        "# under images/ beside labels/, keeping their sub-folders.",
        "train: images",
        "val: images",
        "names:",
        *[f"  {i}: {json.dumps(lab.name)}" for i, lab in enumerate(labels.values())],
    ]
    put("data.yaml", ("\n".join(yaml_lines) + "\n").encode())


# -- output folder and command line ----------------------------------------------------------------


class FolderSink:
    """Writes exported files below ``root`` (created if missing)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ExportError(f"Cannot write to {root}: {exc.strerror or exc}.") from exc

    def __call__(self, name: str, data: bytes) -> None:
        target = self.root / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        except OSError as exc:
            raise ExportError(f"Cannot write {target}: {exc.strerror or exc}.") from exc


def export_dataset(
    store: AnnotationStore, fmt: str, out_dir: Path, polygons: bool = False
) -> ExportReport:
    """:func:`export_project` into the folder ``out_dir``."""
    return export_project(store, fmt, FolderSink(out_dir), polygons)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when anything was exported (skipped images are named on stderr and in
    ``skipped.txt``), 2 with a message when nothing could be."""
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
            report = export_dataset(store, args.format, args.out, polygons=args.polygons)
    except SamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for item in report.skipped:
        print(f"skipped {item}", file=sys.stderr)
    note = f"; {len(report.skipped)} skipped, see {SKIPPED_FILE}" if report.skipped else ""
    print(
        f"exported {args.format}: {report.images} image(s), {report.objects} object(s) "
        f"to {args.out}{note}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
