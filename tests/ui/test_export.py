"""Exports equal the engine's masks pixel for pixel, at the original size."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from ui import export
from ui.state import AnnotatedObject, Doc, ImageRef, Label, Mask, frozen

CLICKS = [(500, 375), (300, 900), (1500, 500)]


def read_png(data: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(data)))


def test_zip_matches_engine_masks(handlers, opened, engine):
    handlers.on_add_label(opened, "car", "#ff0000")
    expected = []
    for i, (x, y) in enumerate(CLICKS):
        handlers.on_choose_label(opened, _Evt({"index": 0 if i == 1 else 2}))
        handlers.prompt(opened, {"kind": "point", "x": x, "y": y})
        masks, _, _ = engine.predict(
            point_coords=np.array([[x, y]]), point_labels=np.array([1]), multimask_output=True
        )
        expected.append(masks[0])
        handlers.on_accept(opened)
    handlers.prompt(opened, {"kind": "point", "x": 10, "y": 10})  # a current, unaccepted mask
    current, _, _ = engine.predict(
        point_coords=np.array([[10, 10]]), point_labels=np.array([1]), multimask_output=True
    )

    updates = handlers.on_export_zip(opened)
    (path,) = updates["export_files"]["value"]
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
        meta = json.loads(zf.read("labels.json"))
        inst = read_png(zf.read("instance_map.png"))
        sem = read_png(zf.read("semantic_map.png"))
        per_object = [read_png(zf.read(o["mask"])) for o in meta["objects"]]
        mask_png = read_png(zf.read("mask.png"))

    assert {"instance_map.png", "semantic_map.png", "labels.json", "mask.png"} <= names
    h, w = opened.doc.image.size
    assert inst.shape == sem.shape == mask_png.shape == (h, w)
    assert inst.dtype == np.uint8
    np.testing.assert_array_equal(mask_png, current[0].astype(np.uint8) * 255)
    for png, mask in zip(per_object, expected, strict=True):
        assert set(np.unique(png)) <= {0, 255}
        np.testing.assert_array_equal(png, mask.astype(np.uint8) * 255)

    # Maps: later objects are painted over earlier ones.
    label_id = {lab["name"]: lab["id"] for lab in meta["labels"]}
    want_inst = np.zeros((h, w), np.uint8)
    want_sem = np.zeros((h, w), np.uint8)
    for obj, mask in zip(meta["objects"], expected, strict=True):
        want_inst[mask] = obj["id"]
        want_sem[mask] = label_id[obj["label"]]
    np.testing.assert_array_equal(inst, want_inst)
    np.testing.assert_array_equal(sem, want_sem)

    assert [o["label"] for o in meta["objects"]] == ["car", "object", "car"]
    assert meta["labels"][2] == {"id": 3, "name": "car", "color": "#ff0000"}
    assert meta["image"] == {"name": "truck.jpg", "width": w, "height": h}
    assert meta["objects"][0]["area"] == int(expected[0].sum())


def test_single_mask_png(handlers, opened, engine):
    handlers.prompt(opened, {"kind": "point", "x": 500, "y": 375})
    updates = handlers.on_export_mask(opened)
    (path,) = updates["export_files"]["value"]
    masks, _, _ = engine.predict(
        point_coords=np.array([[500, 375]]), point_labels=np.array([1]), multimask_output=True
    )
    png = np.array(Image.open(path))
    np.testing.assert_array_equal(png, masks[0].astype(np.uint8) * 255)
    # With no current mask, the selected object's mask is exported.
    handlers.on_accept(opened)
    handlers.on_export_mask(opened)
    assert opened.message_is_error
    handlers.object_action(opened, 1, "select")
    (path,) = handlers.on_export_mask(opened)["export_files"]["value"]
    np.testing.assert_array_equal(np.array(Image.open(path)), masks[0].astype(np.uint8) * 255)


def test_export_without_image_is_a_message(handlers):
    from ui.state import Session

    s = Session()
    out = handlers.on_export_zip(s)
    assert s.message_is_error and "export_files" not in out


def _doc_with_objects(n: int, size: tuple[int, int] = (20, 20)) -> Doc:
    h, w = size
    image = ImageRef("k", frozen(np.zeros((h, w, 3), np.uint8)), "img.png", "/dev/null")
    objects = []
    for i in range(n):
        m = np.zeros((h, w), bool)
        m[(i // w) % h, i % w] = True
        objects.append(AnnotatedObject(id=i + 1, label="a", mask=Mask.from_array(m), score=1.0))
    return Doc(image=image, labels=(Label("a", "#ff0000"),), objects=tuple(objects))


def test_instance_map_is_16_bit_beyond_255_objects(tmp_path: Path):
    doc = _doc_with_objects(300)
    inst = export.instance_map(doc)
    assert inst.dtype == np.uint16
    path = export.write_zip(doc, tmp_path / "a.zip")
    with zipfile.ZipFile(path) as zf:
        img = Image.open(io.BytesIO(zf.read("instance_map.png")))
        assert img.mode.startswith("I")  # 16-bit greyscale PNG
        back = np.array(img)
        assert len([n for n in zf.namelist() if n.startswith("masks/")]) == 300
    assert back.max() == 300
    np.testing.assert_array_equal(back.astype(np.int64), inst.astype(np.int64))
    assert back[0, 0] == 1 and back[(299 // 20), 299 % 20] == 300


def test_instance_map_is_8_bit_up_to_255_objects():
    assert export.instance_map(_doc_with_objects(255)).dtype == np.uint8


def test_mask_crop_roundtrip_is_exact():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 13), (64, 48)]:
        m = rng.random(shape) > 0.7
        np.testing.assert_array_equal(Mask.from_array(m).to_array(), m)
    empty = Mask.from_array(np.zeros((5, 6), bool))
    assert empty.area == 0 and empty.bbox is None
    assert not empty.to_array().any()


class _Evt:
    def __init__(self, data):
        self._data = data
