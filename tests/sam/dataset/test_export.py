"""Dataset exports load in standard tools, round-trip the stored masks, skip unreadable images
with their names, and keep label ids stable."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from sam.dataset.annotations import (
    ImageAnnotations,
    Label,
    ObjectAnnotation,
    RleMask,
    prompts_record,
)
from sam.dataset.export import (
    export_dataset,
    main,
    write_bundle,
)
from sam.dataset.store import AnnotationStore
from sam.errors import ExportError
from sam.masks import bbox_xywh, mask_to_rle

SHAPE = (120, 160)


def ring(shape=SHAPE) -> np.ndarray:
    """A square with a hole: RLE keeps the hole, polygons cannot."""
    mask = np.zeros(shape, dtype=bool)
    mask[20:80, 30:90] = True
    mask[40:60, 50:70] = False
    return mask


def rect(y0, x0, y1, x1, shape=SHAPE) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def noise_jpeg(path: Path, size=(160, 120)) -> None:
    """A JPEG with real entropy data, so cutting it short truncates pixel data."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def run_cli(db: Path, fmt: str, out: Path) -> subprocess.CompletedProcess:
    """``python -m sam.export`` in a process of its own, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "sam.export", "--db", str(db), "--format", fmt, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def call_main(capsys, db: Path, fmt: str, out: Path) -> subprocess.CompletedProcess:
    """The same command line in this process (a new process costs seconds of imports)."""
    code = main(["--db", str(db), "--format", fmt, "--out", str(out)])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess([], code, captured.out, captured.err)


def read_png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


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
    report = export_dataset(store, "coco", tmp_path / "coco")
    coco = COCO(str(tmp_path / "coco" / "annotations.json"))
    assert sorted(img["file_name"] for img in coco.dataset["images"]) == [
        "empty.png",
        "one.jpg",
        "two.png",
    ]
    cats = {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())}
    assert cats == {lab.name: lab.id for lab in store.labels()}  # the labels' own ids
    anns = coco.loadAnns(coco.getAnnIds())
    assert len(anns) == 2  # the object without a label is left out, and reported
    for ann in anns:
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), masks[ann["id"]])
        assert ann["area"] == masks[ann["id"]].sum()
        assert ann["bbox"] == bbox_xywh(masks[ann["id"]])
    image = coco.loadImgs(store.image_id("empty.png"))[0]
    assert (image["height"], image["width"]) == (120, 160)
    assert [str(s) for s in report.skipped] == [
        "two.png object #1: has no label; left out (COCO and YOLO need a category)"
    ]
    assert "two.png object #1" in (tmp_path / "coco" / "skipped.txt").read_text()


def test_coco_polygons_option(project, tmp_path):
    from pycocotools.coco import COCO

    store, masks = project
    export_dataset(store, "coco", tmp_path / "coco", polygons=True)
    coco = COCO(str(tmp_path / "coco" / "annotations.json"))
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
    export_dataset(store, "yolo", tmp_path / "yolo")
    text = (tmp_path / "yolo" / "data.yaml").read_text()
    assert '0: "dog"' in text and '1: "cat"' in text and "unlabelled" not in text
    assert str(tmp_path) not in text  # no server paths in a file the page hands out
    lines = (tmp_path / "yolo" / "labels" / "one.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == ["0", "1"]
    cat_line = np.array(lines[1].split()[1:], dtype=float).reshape(-1, 2)
    assert cat_line.min() >= 0 and cat_line.max() <= 1
    drawn = np.zeros((120, 160), dtype=np.uint8)
    cv2.fillPoly(drawn, [np.round(cat_line * [160, 120]).astype(np.int32)], 1)
    expected = rect(90, 100, 110, 150)
    assert (drawn.astype(bool) & expected).sum() / (drawn.astype(bool) | expected).sum() > 0.9
    assert (tmp_path / "yolo" / "labels" / "empty.txt").read_text() == ""
    assert (tmp_path / "yolo" / "labels" / "two.txt").read_text() == ""  # unlabelled only
    assert "two.png object #1" in (tmp_path / "yolo" / "skipped.txt").read_text()


def test_png_bundles_and_labels_json(project, tmp_path):
    store, _masks = project
    export_dataset(store, "png", tmp_path / "png")
    one = tmp_path / "png" / "one.jpg"
    instances = read_png(one / "instance_map.png")
    np.testing.assert_array_equal(instances == 1, ring())
    np.testing.assert_array_equal(instances == 2, rect(90, 100, 110, 150))
    semantic = read_png(one / "semantic_map.png")
    meta = json.loads((one / "labels.json").read_text())
    dog = next(lab for lab in meta["labels"] if lab["name"] == "dog")
    assert dog["id"] == store.ensure_label("dog").id
    np.testing.assert_array_equal(semantic == dog["id"], ring())
    first = meta["objects"][0]
    assert first["label_id"] == dog["id"] and first["label"] == "dog"
    assert first["bbox"] == [30, 20, 60, 60] and first["area"] == int(ring().sum())
    np.testing.assert_array_equal(read_png(one / first["mask"]), ring().astype(np.uint8) * 255)
    assert not (tmp_path / "png" / "empty.png").exists()
    # An object without a label: in the instance map, background in the semantic map.
    two = tmp_path / "png" / "two.png"
    assert read_png(two / "instance_map.png")[5, 5] == 1
    assert read_png(two / "semantic_map.png").max() == 0
    obj = json.loads((two / "labels.json").read_text())["objects"][0]
    assert obj["label_id"] is None and obj["label"] is None
    assert obj["mask"] == "masks/0001_unlabelled.png"


def test_deleting_a_label_keeps_the_other_ids(project, tmp_path):
    store, _masks = project
    images = store.images_dir
    spare = store.ensure_label("spare")
    bird = store.ensure_label("bird")
    store.delete_label(spare.id)
    three = Image.new("RGB", (160, 120))
    three.save(images / "three.png")
    store.add_images(["three.png"])
    store.add_object(store.image_id("three.png"), rect(0, 0, 20, 20), bird.id)
    export_dataset(store, "png", tmp_path / "png")
    export_dataset(store, "coco", tmp_path / "coco")
    assert read_png(tmp_path / "png" / "three.png" / "semantic_map.png")[5, 5] == bird.id
    coco = json.loads((tmp_path / "coco" / "annotations.json").read_text())
    assert {"id": bird.id, "name": "bird", "supercategory": ""} in coco["categories"]


def test_bundle_maps_are_16_bit_beyond_255():
    h, w = 20, 20
    objects = []
    for i in range(300):
        m = np.zeros((h, w), bool)
        m.flat[i] = True
        objects.append(ObjectAnnotation(RleMask(mask_to_rle(m)), label_id=300 if i == 0 else 3))
    labels = (Label(3, "a", "#ff0000"), Label(300, "b", "#00ff00"))
    files: dict[str, bytes] = {}
    write_bundle(ImageAnnotations("x.png", h, w, labels, tuple(objects)), files.__setitem__)
    inst = np.asarray(Image.open(io.BytesIO(files["instance_map.png"])))
    sem = np.asarray(Image.open(io.BytesIO(files["semantic_map.png"])))
    assert inst.flat[299] == 300 and inst.max() == 300
    assert sem.flat[0] == 300 and sem.flat[1] == 3
    assert len([n for n in files if n.startswith("masks/")]) == 300
    files.clear()
    write_bundle(
        ImageAnnotations("x.png", h, w, labels[:1], tuple(objects[1:256])), files.__setitem__
    )
    assert Image.open(io.BytesIO(files["instance_map.png"])).mode == "L"


def test_bbox_matches_pycocotools():
    rng = np.random.default_rng(1)
    for mask in (ring(), rect(0, 0, 1, 1), rng.random((37, 53)) > 0.97):
        coco = mask_utils.toBbox(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))
        assert bbox_xywh(mask) == [int(v) for v in coco]
    assert bbox_xywh(np.zeros((4, 4), bool)) == [0, 0, 0, 0]


def test_prompts_record():
    assert prompts_record((), None) is None
    assert prompts_record([(1, 2, 1)], None) == {"points": [[1, 2, 1]], "box": None}
    assert prompts_record([], (0, 1, 5, 6)) == {"points": [], "box": [0, 1, 5, 6]}


def test_nothing_to_export(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (10, 10)).save(images / "a.png")
    with (
        AnnotationStore.for_folder(images) as store,
        pytest.raises(ExportError, match="Nothing to export yet"),
    ):
        export_dataset(store, "coco", tmp_path / "out")


def test_coco_with_only_unlabelled_objects_says_so(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (160, 120)).save(images / "a.png")
    with AnnotationStore.for_folder(images) as store:
        store.add_object(store.image_id("a.png"), rect(0, 0, 5, 5))
        with pytest.raises(ExportError, match="none of the 1 object"):
            export_dataset(store, "yolo", tmp_path / "out")
        assert export_dataset(store, "png", tmp_path / "png").objects == 1


# -- unreadable images and the command line --------------------------------------------------


@pytest.fixture
def damaged(tmp_path):
    """A folder with a good annotated image; an empty, a truncated, a deleted and a replaced
    (other size) one, each annotated before it was damaged; and an empty one never annotated."""
    images = tmp_path / "images"
    images.mkdir()
    for name in ("good.jpg", "cut.jpg", "gone.jpg", "zero.jpg", "other.jpg"):
        noise_jpeg(images / name)
    with AnnotationStore.for_folder(images) as store:
        dog = store.ensure_label("dog")
        for name in ("good.jpg", "cut.jpg", "gone.jpg", "zero.jpg", "other.jpg"):
            store.add_object(store.image_id(name), rect(10, 10, 50, 60), dog.id)
        db = store.path
    data = (images / "cut.jpg").read_bytes()
    (images / "cut.jpg").write_bytes(data[: len(data) // 2])
    (images / "gone.jpg").unlink()
    (images / "zero.jpg").write_bytes(b"")
    noise_jpeg(images / "other.jpg", size=(100, 100))
    (images / "blank.png").write_bytes(b"")
    with AnnotationStore.for_folder(images):  # registers blank.png
        pass
    return images, db


REASONS = {
    "cut.jpg": "truncated or corrupt",
    "gone.jpg": "missing",
    "zero.jpg": "empty (0 bytes)",
    "other.jpg": "drawn on a 160×120 image but the file is 100×100",
}


@pytest.mark.parametrize("fmt", ["coco", "yolo", "png"])
def test_cli_skips_unreadable_images_and_exports_the_rest(damaged, tmp_path, capsys, fmt):
    _images, db = damaged
    out = tmp_path / fmt
    # One format runs as its own process: what a user sees, exit code and all.
    result = run_cli(db, fmt, out) if fmt == "coco" else call_main(capsys, db, fmt, out)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    skipped_txt = (out / "skipped.txt").read_text()
    # The PNG maps hold annotated images only; COCO and YOLO list every image.
    reasons = REASONS if fmt == "png" else {**REASONS, "blank.png": "empty (0 bytes)"}
    for name, reason in reasons.items():
        line = next(ln for ln in result.stderr.splitlines() if name in ln)
        assert reason in line, line
        assert f"{name}: " in skipped_txt and reason in skipped_txt
    assert "good.jpg" not in result.stderr and "good.jpg" not in skipped_txt
    assert "1 image(s), 1 object(s)" in result.stdout
    if fmt == "coco":
        coco = json.loads((out / "annotations.json").read_text())
        assert [img["file_name"] for img in coco["images"]] == ["good.jpg"]
        assert len(coco["annotations"]) == 1
    elif fmt == "yolo":
        assert sorted(p.name for p in (out / "labels").iterdir()) == ["good.txt"]
    else:
        assert sorted(p.name for p in out.iterdir()) == ["good.jpg", "skipped.txt"]
        assert (read_png(out / "good.jpg" / "instance_map.png") == 1).sum() == 40 * 50


def test_cli_with_nothing_readable_exits_2_with_the_names(damaged, tmp_path, capsys):
    images, db = damaged
    (images / "good.jpg").unlink()
    result = call_main(capsys, db, "coco", tmp_path / "out")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "Nothing exported: every annotated image was skipped" in result.stderr
    assert "cut.jpg (the file is truncated or corrupt)" in result.stderr
    assert "and 1 more" in result.stderr  # the first five by name
    assert not (tmp_path / "out" / "annotations.json").exists()


def test_cli_real_failures_exit_2(project, tmp_path, capsys):
    store, _ = project
    out = tmp_path / "cli"
    result = call_main(capsys, store.path, "coco", out)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "annotations.json").read_text())["annotations"]
    missing = call_main(capsys, tmp_path / "none.sqlite", "png", out)
    assert missing.returncode == 2 and "No annotation database" in missing.stderr
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(os.urandom(4096))
    bad = call_main(capsys, garbage, "png", out)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
    a_file = tmp_path / "a_file"
    a_file.write_text("")
    blocked = call_main(capsys, store.path, "png", a_file)
    assert blocked.returncode == 2 and "Cannot write" in blocked.stderr
    assert "Traceback" not in blocked.stderr


def test_export_without_image_folder_uses_stored_sizes(tmp_path):
    with AnnotationStore(tmp_path / "db.sqlite") as store:
        store.add_images(["a.png"])
        store.add_object(store.image_id("a.png"), rect(0, 0, 5, 5), store.ensure_label("x").id)
        report = export_dataset(store, "coco", tmp_path / "out")
    assert report.images == 1 and report.objects == 1


def test_report_names_the_skipped_images(damaged, tmp_path):
    _images, db = damaged
    with AnnotationStore(db) as store:
        report = export_dataset(store, "png", tmp_path / "png")
    assert sorted(s.image for s in report.skipped) == sorted(REASONS)
    summary = report.summary()
    assert "skipped 4 image(s)" in summary and "zero.jpg (the file is empty" in summary
