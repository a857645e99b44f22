"""Export annotations as PNG masks, an instance map, a semantic map, labels.json, and a zip;
and a whole project as a COCO / YOLO / PNG dataset zip (through :mod:`sam.export`).

Every PNG is at the original image size and written losslessly from the stored masks, so an
exported mask equals the engine's mask pixel for pixel. Instance ids are 1..N in object order
(0 = background) and label ids are 1..L in label-list order; ``labels.json`` maps both.
Where objects overlap, the later object wins in the maps; the per-object masks are complete.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from sam import export as dataset
from sam.store import AnnotationStore

from .state import Doc, Mask

MASK_ON = 255


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


def binary_mask_png(mask: np.ndarray | Mask) -> bytes:
    """0/255 PNG of one mask at the image size."""
    full = mask.to_array() if isinstance(mask, Mask) else np.asarray(mask, dtype=bool)
    return png_bytes(full.astype(np.uint8) * MASK_ON)


def _paint(shape: tuple[int, int], layers: list[tuple[Mask, int]]) -> np.ndarray:
    top = max((value for _, value in layers), default=0)
    out = np.zeros(shape, dtype=np.uint16 if top > 255 else np.uint8)
    for mask, value in layers:
        h, w = mask.crop_shape
        region = out[mask.top : mask.top + h, mask.left : mask.left + w]
        region[mask.crop] = value
    return out


def instance_map(doc: Doc) -> np.ndarray:
    """Object i (1-based, list order) painted with value i; uint16 when there are >255."""
    if doc.image is None:
        raise ValueError("no image")
    return _paint(doc.image.size, [(o.mask, i + 1) for i, o in enumerate(doc.objects)])


def label_ids(doc: Doc) -> dict[str, int]:
    return {lab.name: i + 1 for i, lab in enumerate(doc.labels)}


def semantic_map(doc: Doc) -> np.ndarray:
    """Each pixel the id of its object's label (1-based, label-list order)."""
    if doc.image is None:
        raise ValueError("no image")
    ids = label_ids(doc)
    return _paint(doc.image.size, [(o.mask, ids[o.label]) for o in doc.objects])


def labels_json(doc: Doc) -> dict[str, Any]:
    if doc.image is None:
        raise ValueError("no image")
    ids = label_ids(doc)
    height, width = doc.image.size
    return {
        "image": {"name": doc.image.name, "width": width, "height": height},
        "background": 0,
        "labels": [
            {"id": ids[lab.name], "name": lab.name, "color": lab.color} for lab in doc.labels
        ],
        "objects": [
            {
                "id": i + 1,
                "label": o.label,
                "label_id": ids[o.label],
                "color": doc.color_of(o),
                "area": o.mask.area,
                "bbox": list(o.mask.bbox) if o.mask.bbox else None,
                "predicted_iou": round(o.score, 6),
                "mask": object_filename(i + 1, o.label),
                "hidden": o.hidden,
                "points": [list(p) for p in o.prompt.points],
                "box": list(o.prompt.box) if o.prompt.box else None,
            }
            for i, o in enumerate(doc.objects)
        ],
    }


def safe_name(text: str, default: str) -> str:
    """``text`` as one harmless file-name component: no separators, no leading dots."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or default


def object_filename(instance_id: int, label: str) -> str:
    return f"masks/{instance_id:04d}_{safe_name(label, 'object')}.png"


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
    """Everything in one archive: maps, labels.json, one PNG per object, the current mask."""
    if doc.image is None:
        raise ValueError("no image")
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("instance_map.png", png_bytes(instance_map(doc)))
        zf.writestr("semantic_map.png", png_bytes(semantic_map(doc)))
        zf.writestr("labels.json", json.dumps(labels_json(doc), indent=2))
        for i, obj in enumerate(doc.objects):
            zf.writestr(object_filename(i + 1, obj.label), binary_mask_png(obj.mask))
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


def write_dataset_zip(store: AnnotationStore, fmt: str, folder: Path) -> Path:
    """Export a project with ``sam.export`` in ``fmt`` (coco, yolo, png) and zip the result."""
    out = folder / fmt
    if fmt == "coco":
        dataset.export_coco(store, out)
    elif fmt == "yolo":
        dataset.export_yolo(store, out)
    elif fmt == "png":
        dataset.export_png(store, out)
    else:
        raise ValueError(f"unknown export format {fmt!r}")
    name = store.images_dir.name if store.images_dir else "project"
    path = folder / f"{safe_name(name, 'project')}_{fmt}.zip"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(out.rglob("*")):
            if file.is_file():
                zf.write(file, file.relative_to(out).as_posix())
    return path
