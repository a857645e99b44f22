"""Exports equal the engine's masks pixel for pixel, at the original size; the page's zip and
the project export agree on every map and on labels.json."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam.dataset.annotations import Label
from ui import export
from ui.handlers import Handlers
from ui.project import Project
from ui.state import AnnotatedObject, Doc, ImageRef, Mask, Session, frozen

CLICKS = [(500, 375), (300, 900), (1500, 500)]


def read_png(data: bytes) -> np.ndarray:
    return np.array(Image.open(io.BytesIO(data)))


def test_zip_matches_engine_masks(handlers, opened, engine):
    handlers.on_add_label(opened, "car", "#ff0000")
    expected = []
    for i, (x, y) in enumerate(CLICKS):
        handlers.on_choose_label(opened, _Evt({"id": 1 if i == 1 else 3}))
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


def test_session_label_ids_survive_a_deleted_label(handlers, opened):
    """Single upload: ids 1, 2, ... are never reused, so removing a label renumbers nothing."""
    handlers.on_add_label(opened, "car", "#ff0000")
    handlers.on_add_label(opened, "bus", "#00ff00")
    opened.active_label = "car"
    handlers.on_remove_label(opened)
    opened.active_label = "bus"
    handlers.prompt(opened, {"kind": "point", "x": 500, "y": 375})
    handlers.on_accept(opened)
    files = _zip_files(handlers.on_export_zip(opened))
    meta = json.loads(files["labels.json"])
    bus = meta["objects"][0]
    assert (bus["label"], bus["label_id"]) == ("bus", 4)
    assert [lab["id"] for lab in meta["labels"]] == [1, 2, 4]
    mask = read_png(files[bus["mask"]]) > 0
    assert set(np.unique(read_png(files["semantic_map.png"])[mask])) == {4}


def _doc_with_objects(n: int, size: tuple[int, int] = (20, 20)) -> Doc:
    h, w = size
    image = ImageRef("k", frozen(np.zeros((h, w, 3), np.uint8)), "img.png", "/dev/null")
    objects = []
    for i in range(n):
        m = np.zeros((h, w), bool)
        m[(i // w) % h, i % w] = True
        objects.append(AnnotatedObject(id=i + 1, label_id=1, mask=Mask.from_array(m), score=1.0))
    return Doc(image=image, labels=(Label(1, "a", "#ff0000"),), objects=tuple(objects))


def test_renamed_label_keeps_its_objects_and_its_id(handlers, opened):
    """A rename moves no object: they keep the label (its id, in the export too), and a new
    label taking the old name is another label."""
    handlers.on_add_label(opened, "car", "#ff0000")
    handlers.prompt(opened, {"kind": "point", "x": 500, "y": 375})
    handlers.on_accept(opened)
    handlers.on_save_label(opened, "vehicle", "#ff0000")
    handlers.on_add_label(opened, "car", "#0000ff")
    handlers.prompt(opened, {"kind": "point", "x": 1500, "y": 500})
    handlers.on_accept(opened)
    assert [opened.doc.label_name(o) for o in opened.doc.objects] == ["vehicle", "car"]
    assert "#1 vehicle" in handlers.view(opened)["objects"]
    meta = json.loads(_zip_files(handlers.on_export_zip(opened))["labels.json"])
    assert [(o["label"], o["label_id"]) for o in meta["objects"]] == [("vehicle", 3), ("car", 4)]
    handlers.on_undo(opened)
    handlers.on_undo(opened)  # the new "car" gone; the first object is still "vehicle"
    assert [opened.doc.label_name(o) for o in opened.doc.objects] == ["vehicle"]


def test_instance_map_is_16_bit_beyond_255_objects(tmp_path: Path):
    path = export.write_zip(_doc_with_objects(300), tmp_path / "a.zip")
    with zipfile.ZipFile(path) as zf:
        img = Image.open(io.BytesIO(zf.read("instance_map.png")))
        assert img.mode.startswith("I")  # 16-bit greyscale PNG
        back = np.array(img)
        assert len([n for n in zf.namelist() if n.startswith("masks/")]) == 300
    assert back.max() == 300
    assert back[0, 0] == 1 and back[(299 // 20), 299 % 20] == 300


def test_instance_map_is_8_bit_up_to_255_objects(tmp_path: Path):
    path = export.write_zip(_doc_with_objects(255), tmp_path / "a.zip")
    with zipfile.ZipFile(path) as zf:
        assert Image.open(io.BytesIO(zf.read("instance_map.png"))).mode == "L"


def test_mask_crop_roundtrip_is_exact():
    rng = np.random.default_rng(0)
    for shape in [(1, 1), (7, 13), (64, 48)]:
        m = rng.random(shape) > 0.7
        np.testing.assert_array_equal(Mask.from_array(m).to_array(), m)
    empty = Mask.from_array(np.zeros((5, 6), bool))
    assert empty.area == 0 and empty.bbox is None
    assert not empty.to_array().any()


# -- a folder project: the page's zip and the project export agree --------------------------


@pytest.fixture
def project_app(tmp_path: Path, example_photos: Path, manager):
    """A project over dog.jpg and dogs.jpg; dog.jpg already holds an object without a label
    (as another program or an import may leave one)."""
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("dog.jpg", "dogs.jpg"):
        shutil.copy(example_photos / name, folder / name)
    project = Project(folder)
    store = project.store
    height, width = np.asarray(Image.open(folder / "dog.jpg")).shape[:2]
    unlabelled = np.zeros((height, width), bool)
    unlabelled[10:60, 20:90] = True
    store.add_object(store.image_id("dog.jpg"), unlabelled, None, score=0.5)
    app = Handlers(manager, tmp_path / "media", tmp_path / "export", [], project)
    yield app
    project.close()


def _open_first(app: Handlers) -> Session:
    session = Session()
    app.on_load(session)
    list(app.on_resume(session))
    assert session.link is not None and session.link.path == "dog.jpg", session.message
    return session


def _zip_files(updates: dict) -> dict[str, bytes]:
    (path,) = updates["export_files"]["value"]
    with zipfile.ZipFile(path) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_page_zip_and_project_export_agree(project_app):
    app = project_app
    s = _open_first(app)
    store = app.project.store
    app.on_add_label(s, "spare", "#123456")
    app.on_add_label(s, "car", "#ff0000")
    s.active_label = "spare"
    app.on_remove_label(s)  # deleting a label renumbers no other
    assert not s.message_is_error, s.message
    s.active_label = "car"
    app.prompt(s, {"kind": "point", "x": 300, "y": 200})
    app.on_accept(s)
    s.active_label = "object"
    app.prompt(s, {"kind": "point", "x": 100, "y": 300})
    app.on_accept(s)
    assert not s.message_is_error, s.message

    page = _zip_files(app.on_export_zip(s))
    project = _zip_files(app.on_export_project(s, "png"))
    assert not s.message_is_error, s.message
    mine = {name.removeprefix("dog.jpg/"): data for name, data in project.items()}
    for name in ("instance_map.png", "semantic_map.png"):
        np.testing.assert_array_equal(read_png(page[name]), read_png(mine[name]), err_msg=name)
    page_meta, project_meta = json.loads(page["labels.json"]), json.loads(mine["labels.json"])
    assert page_meta == project_meta
    masks = sorted(name for name in page if name.startswith("masks/"))
    assert masks == sorted(name for name in mine if name.startswith("masks/"))
    for name in masks:
        np.testing.assert_array_equal(read_png(page[name]), read_png(mine[name]), err_msg=name)

    # Label ids are the store's: "car" keeps the id it got although "spare" is gone.
    ids = {lab.name: lab.id for lab in store.labels()}
    assert "spare" not in ids and ids["car"] > max(ids["object"], ids["background"]) + 1
    assert page_meta["labels"] == [
        {"id": lab.id, "name": lab.name, "color": lab.color} for lab in store.labels()
    ]
    unlabelled, car, obj = page_meta["objects"]
    assert (unlabelled["label_id"], unlabelled["label"]) == (None, None)
    assert (car["label_id"], obj["label_id"]) == (ids["car"], ids["object"])
    semantic = read_png(page["semantic_map.png"])
    for entry in (unlabelled, car, obj):
        mask = read_png(page[entry["mask"]]) > 0
        shown = read_png(page["instance_map.png"]) == entry["id"]
        assert set(np.unique(semantic[shown])) == {entry["label_id"] or 0}
        assert entry["bbox"] == _bbox(mask) and entry["area"] == int(mask.sum())


def _bbox(mask: np.ndarray) -> list[int]:
    ys, xs = np.nonzero(mask)
    x, y = int(xs.min()), int(ys.min())
    return [x, y, int(xs.max()) + 1 - x, int(ys.max()) + 1 - y]


@pytest.mark.parametrize("fmt", ["coco", "png"])
def test_project_export_names_skipped_images(project_app, fmt):
    app = project_app
    s = _open_first(app)
    folder = app.project.folder
    store = app.project.store
    (folder / "dogs.jpg").unlink()  # annotated, then deleted
    store.add_object(store.image_id("dogs.jpg"), np.ones((2, 2), bool), None, score=1.0)
    (folder / "zero.jpg").write_bytes(b"")  # appears in the folder empty
    store.add_images(["zero.jpg"])
    app.prompt(s, {"kind": "point", "x": 300, "y": 200})
    app.on_accept(s)
    updates = app.on_export_project(s, fmt)
    assert "Something went wrong" not in s.message
    assert s.message_is_error and "export_files" in updates, s.message
    assert "dogs.jpg (the file is missing (deleted or moved))" in s.message
    assert ("zero.jpg (the file is empty (0 bytes))" in s.message) == (fmt == "coco")
    files = _zip_files(updates)
    assert "dogs.jpg: the file is missing" in files["skipped.txt"].decode()
    if fmt == "coco":
        coco = json.loads(files["annotations.json"])
        assert [img["file_name"] for img in coco["images"]] == ["dog.jpg"]
        assert "left out 1 object(s) without a label" in s.message


class _Evt:
    def __init__(self, data):
        self._data = data
