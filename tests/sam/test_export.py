"""Dataset exports load in standard tools and round-trip the stored masks."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from PIL import Image

from sam.errors import ExportError
from sam.export import export_coco, export_png, export_yolo, instance_map, semantic_map
from sam.store import AnnotationStore


def ring(shape=(120, 160)) -> np.ndarray:
    """A square with a hole: RLE keeps the hole, polygons cannot."""
    mask = np.zeros(shape, dtype=bool)
    mask[20:80, 30:90] = True
    mask[40:60, 50:70] = False
    return mask


def rect(y0, x0, y1, x1, shape=(120, 160)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.fixture
def project(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("one.jpg", "two.png", "empty.png"):
        Image.new("RGB", (160, 120)).save(images / name)
    store = AnnotationStore.for_folder(images)
    dog, cat = store.ensure_label("dog"), store.ensure_label("cat")
    one, two = store.image_id("one.jpg"), store.image_id("two.png")
    masks = {
        store.add_object(one, ring(), dog.id, score=0.9): ring(),
        store.add_object(one, rect(90, 100, 110, 150), cat.id): rect(90, 100, 110, 150),
        store.add_object(two, rect(0, 0, 10, 10)): rect(0, 0, 10, 10),  # no label
    }
    yield store, masks
    store.close()


def test_coco_rle_round_trips_exactly(project, tmp_path):
    from pycocotools.coco import COCO

    store, masks = project
    path = export_coco(store, tmp_path / "coco")
    coco = COCO(str(path))
    assert sorted(img["file_name"] for img in coco.dataset["images"]) == [
        "empty.png",
        "one.jpg",
        "two.png",
    ]
    names = {c["name"] for c in coco.loadCats(coco.getCatIds())}
    assert names == {"dog", "cat", "unlabelled"}
    for ann in coco.loadAnns(coco.getAnnIds()):
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), masks[ann["id"]])
        assert ann["area"] == masks[ann["id"]].sum()
    image = coco.loadImgs(store.image_id("empty.png"))[0]
    assert (image["height"], image["width"]) == (120, 160)


def test_coco_polygons_option(project, tmp_path):
    from pycocotools.coco import COCO

    store, masks = project
    coco = COCO(str(export_coco(store, tmp_path / "coco", polygons=True)))
    for ann in coco.loadAnns(coco.getAnnIds()):
        assert isinstance(ann["segmentation"], list)
        drawn = coco.annToMask(ann).astype(bool)
        filled = masks[ann["id"]].copy()
        if ann["id"] == 1:  # polygons lose the hole of the ring
            filled[40:60, 50:70] = True
        iou = (drawn & filled).sum() / (drawn | filled).sum()
        # Contours run through pixel centres: a half-pixel border is lost, which matters
        # only for tiny objects (a 10x10 square keeps 9x9).
        assert iou > (0.9 if filled.sum() >= 400 else 0.75)


def test_yolo_labels_and_data_yaml(project, tmp_path):
    store, _masks = project
    data_yaml = export_yolo(store, tmp_path / "yolo")
    text = data_yaml.read_text()
    assert '0: "dog"' in text and '1: "cat"' in text and '2: "unlabelled"' in text
    lines = (tmp_path / "yolo" / "labels" / "one.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["0", "1"]
    cat_line = np.array(lines[1].split()[1:], dtype=float).reshape(-1, 2)
    assert cat_line.min() >= 0 and cat_line.max() <= 1
    drawn = np.zeros((120, 160), dtype=np.uint8)
    cv2.fillPoly(drawn, [np.round(cat_line * [160, 120]).astype(np.int32)], 1)
    expected = rect(90, 100, 110, 150)
    assert (drawn.astype(bool) & expected).sum() / (drawn.astype(bool) | expected).sum() > 0.9
    assert (tmp_path / "yolo" / "labels" / "empty.txt").read_text() == ""


def test_png_maps_and_labels_json(project, tmp_path):
    store, _masks = project
    export_png(store, tmp_path / "png")
    instances = np.asarray(Image.open(tmp_path / "png" / "instances" / "one.png"))
    np.testing.assert_array_equal(instances == 1, ring())
    np.testing.assert_array_equal(instances == 2, rect(90, 100, 110, 150))
    semantic = np.asarray(Image.open(tmp_path / "png" / "semantic" / "one.png"))
    labels = json.loads((tmp_path / "png" / "labels.json").read_text())
    dog_id = next(int(k) for k, v in labels.items() if v["name"] == "dog")
    np.testing.assert_array_equal(semantic == dog_id, ring())
    assert not (tmp_path / "png" / "instances" / "empty.png").exists()


def test_instance_map_is_16_bit_beyond_255_objects():
    masks = [np.zeros((20, 20), dtype=bool) for _ in range(300)]
    for i, m in enumerate(masks):
        m.flat[i] = True
    out = instance_map(masks, (20, 20))
    assert out.dtype == np.uint16 and out.flat[299] == 300
    assert instance_map(masks[:255], (20, 20)).dtype == np.uint8
    assert semantic_map(masks[:2], [3, 300], (20, 20)).dtype == np.uint16


def test_nothing_to_export(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (10, 10)).save(images / "a.png")
    with (
        AnnotationStore.for_folder(images) as store,
        pytest.raises(ExportError, match="Nothing to export yet"),
    ):
        export_coco(store, tmp_path / "out")


def test_cli(project, tmp_path):
    store, _ = project
    out = tmp_path / "cli"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sam.export",
            "--db",
            str(store.path),
            "--format",
            "coco",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "annotations.json").read_text())["annotations"]
    missing = subprocess.run(
        [
            sys.executable,
            "-m",
            "sam.export",
            "--db",
            str(tmp_path / "none.sqlite"),
            "--format",
            "png",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "No annotation database" in missing.stderr
