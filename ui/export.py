"""The page's exports: one image's zip (*Export all*), the current mask as a PNG, and the whole
project as a COCO / YOLO / PNG dataset zip.

Every file is built by :mod:`sam.dataset.export`, the exporter behind ``python -m sam.export``
too, so the page's zip of a project image and the project's PNG dataset hold the same maps and
the same ``labels.json`` (see that module for the layout). The page's zip adds ``mask.png``, the
mask being drawn (or the selected object's). Every PNG is at the original image size and
written losslessly, so an exported mask equals the engine's mask pixel for pixel.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from sam.dataset import export as dataset
from sam.dataset.annotations import (
    UNLABELLED_ID,
    ImageAnnotations,
    ObjectAnnotation,
    prompts_record,
)
from sam.dataset.export import safe_name
from sam.dataset.store import AnnotationStore

from .state import AnnotatedObject, Doc, Mask


def binary_mask_png(mask: np.ndarray | Mask) -> bytes:
    """0/255 PNG of one mask at the image size."""
    return dataset.binary_mask_png(mask.to_array() if isinstance(mask, Mask) else mask)


def export_image(doc: Doc) -> ImageAnnotations:
    """The open image, its labels and objects as the exporter takes them (objects keep their
    label's stable id)."""
    if doc.image is None:
        raise ValueError("no image")
    height, width = doc.image.size
    return ImageAnnotations(
        name=doc.image.name,
        height=height,
        width=width,
        labels=doc.labels,
        objects=tuple(_export_object(doc, obj) for obj in doc.objects),
    )


def _export_object(doc: Doc, obj: AnnotatedObject) -> ObjectAnnotation:
    known = obj.label_id != UNLABELLED_ID and doc.label_by_id(obj.label_id) is not None
    return ObjectAnnotation(
        mask=obj.mask,
        label_id=obj.label_id if known else None,
        score=obj.score,
        hidden=obj.hidden,
        color=obj.color,
        prompts=prompts_record(obj.prompt.points, obj.prompt.box),
        source_id=obj.id,
    )


def current_mask(doc: Doc, selected_object: int | None = None) -> Mask | None:
    """The mask being drawn, else the selected object's, else None."""
    if doc.candidates is not None:
        return doc.candidates.mask
    if selected_object is not None and (obj := doc.object(selected_object)) is not None:
        return obj.mask
    return None


def stem(doc: Doc) -> str:
    name = doc.image.name if doc.image else "image"
    # Only the last component of a browser-supplied name, e.g. "../../x.png" -> "x".
    return safe_name(Path(name.replace("\\", "/")).stem, "image")


def write_zip(doc: Doc, path: Path, selected_object: int | None = None) -> Path:
    """Everything in one archive: the image's bundle (maps, labels.json, one PNG per object)
    and ``mask.png``, the current mask."""
    image = export_image(doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        dataset.write_bundle(image, zf.writestr)
        mask = current_mask(doc, selected_object)
        if mask is not None:
            zf.writestr("mask.png", binary_mask_png(mask))
    return path


def write_mask_png(doc: Doc, path: Path, selected_object: int | None = None) -> Path:
    mask = current_mask(doc, selected_object)
    if mask is None:
        raise ValueError("no current mask")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(binary_mask_png(mask))
    return path


def write_dataset_zip(
    store: AnnotationStore, fmt: str, folder: Path
) -> tuple[Path, dataset.ExportReport]:
    """The project as a ``fmt`` (coco, yolo, png) dataset in one zip, and what was skipped.

    Raises:
        ExportError: nothing to export; no zip is left behind then.
    """
    name = store.images_dir.name if store.images_dir else "project"
    path = folder / f"{safe_name(name, 'project')}_{fmt}.zip"
    try:
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            report = dataset.export_project(store, fmt, zf.writestr)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, report
