"""A folder opened as a project, at handler level: gallery, autosave to SQLite (undo/redo
included), reopening, status and progress, background encoding, disk cache, import, export."""

from __future__ import annotations

import io
import json
import threading
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from project_app import NAMES, add_object, make_handlers, start
from pycocotools.coco import COCO

from sam.image_io import load_image
from sam.masks import mask_to_logits, mask_to_rle
from ui import actions
from ui.handlers import Handlers
from ui.state import Session


class _Evt:
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data


def stored_masks(h: Handlers, s: Session) -> list[np.ndarray]:
    return [o.mask() for o in h.project.store.objects(s.link.image_id)]


def test_folder_opens_with_gallery_progress_and_resumes_first_unfinished(app):
    s, updates = start(app)
    assert s.link.path == "dog.jpg" and s.doc.image.name == "dog.jpg"
    final = {k: v for u in updates for k, v in u.items()}
    for name in NAMES:
        assert name in final["gallery"]
    assert "0 of 3 done" in final["progress"]
    assert 'sam-current" data-event="open" data-id="1"' in final["gallery"]
    app.project.store.set_status(1, "done")
    s2, _ = start(app)
    assert s2.link.path == "dogs.jpg"  # a new tab resumes at the first image not done


def test_every_change_is_stored_at_once_and_undo_redo_follow(app):
    s, _ = start(app)
    first = add_object(app, s, 300, 200)
    app.prompt(s, {"kind": "point", "x": 600, "y": 300})
    second = s.doc.candidates.mask.to_array()
    out = app.on_accept(s)
    assert "2 obj" in out["gallery"]  # the gallery follows the store
    stored = stored_masks(app, s)
    np.testing.assert_array_equal(stored[0], first)
    np.testing.assert_array_equal(stored[1], second)
    app.object_action(s, 1, "delete")
    assert len(stored_masks(app, s)) == 1
    app.on_undo(s)  # the deleted object comes back, in the store too
    assert len(stored_masks(app, s)) == 2
    app.on_undo(s)  # un-accept the second object
    assert len(stored_masks(app, s)) == 1
    app.on_redo(s)
    assert len(stored_masks(app, s)) == 2
    app.object_action(s, 2, "hide")
    assert [o.hidden for o in app.project.store.objects(s.link.image_id)] == [False, True]
    app.on_add_label(s, "dog", "#ff0000")
    app.object_action(s, 1, "select")
    app.on_object_label(s, "dog")
    labels = {lab.id: lab.name for lab in app.project.store.labels()}
    assert [labels[o.label_id] for o in app.project.store.objects(s.link.image_id)] == [
        "dog",
        "object",
    ]
    assert app.project.store.image(s.link.image_id).status == "in_progress"


def test_undoing_a_new_label_with_its_object(app):
    """Relabelling to a new name creates the label and moves the object in one step; undoing
    it must move the object back before the label is deleted from the store."""
    s, _ = start(app)
    add_object(app, s, 300, 200)
    app.object_action(s, 1, "select")
    app.on_object_label(s, "cat")  # a new label
    app.on_undo(s)
    assert not s.message_is_error, s.message
    labels = {lab.id: lab.name for lab in app.project.store.labels()}
    assert "cat" not in labels.values()
    assert [labels[o.label_id] for o in app.project.store.objects(s.link.image_id)] == ["object"]


def test_reopening_the_folder_restores_objects_labels_and_refines_them(
    app, folder, tiny_checkpoint, tmp_path
):
    s, _ = start(app)
    app.on_add_label(s, "animal", "#00aa00")
    mask = add_object(app, s, 300, 200)
    app.on_save_label(s, "pet", "#00bb00")  # rename in place: stored, the object follows
    s.selected_object = 1
    app.on_object_color(s, "#ff00aa")  # this object's own colour
    app.project.close()

    again = make_handlers(folder, tiny_checkpoint, tmp_path / "second")
    s2, _ = start(again)
    assert [s2.doc.label_name(o) for o in s2.doc.objects] == ["pet"]
    np.testing.assert_array_equal(s2.doc.objects[0].mask.to_array(), mask)
    assert s2.doc.objects[0].prompt.points == ((300, 200, 1),)
    assert s2.doc.label("pet").color == "#00bb00"
    assert s2.doc.objects[0].color == "#ff00aa"
    assert "from the disk cache" in s2.message  # the restarted app did not encode again
    # A reloaded object (no decoder logits kept) refines from its mask with the next click.
    actions.edit_object(s2, 1)
    again.prompt(s2, {"kind": "point", "x": 320, "y": 210})
    assert len(s2.doc.candidates.masks) == 1
    again.on_accept(s2)
    (stored,) = again.project.store.objects(s2.link.image_id)
    np.testing.assert_array_equal(stored.mask(), s2.doc.objects[0].mask.to_array())
    assert [320, 210, 1] in stored.prompts["points"]  # the refining click is kept too
    again.project.close()


def test_labels_file_and_removing_project_labels(folder, tiny_checkpoint, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("# classes\ncat\ndog,#123456\nbird\n")
    h = make_handlers(folder, tiny_checkpoint, tmp_path, labels_file=labels)
    s, _ = start(h)
    assert [lab.name for lab in s.doc.labels] == ["cat", "dog", "bird"]
    assert s.doc.label("dog").color == "#123456"
    store = h.project.store
    other = store.image_id("truck.jpg")  # "bird" is used on another image only
    store.add_object(
        other, np.ones((4, 4), bool), {lb.name: lb.id for lb in store.labels()}["bird"]
    )
    for used in ("dog", "bird"):
        if used == "dog":
            s.active_label = "dog"
            add_object(h, s, 300, 200)
        s.active_label = used
        h.on_remove_label(s)
        assert s.message_is_error and "used by 1 object" in s.message
    s.active_label = "cat"
    h.on_remove_label(s)  # unused anywhere: removed from the page and the project
    assert not s.message_is_error
    assert [lab.name for lab in s.doc.labels] == ["dog", "bird"]
    assert [lab.name for lab in store.labels()] == ["dog", "bird"]
    h.project.close()


def test_status_progress_filter_and_navigation(app):
    s, _ = start(app)
    out = app.on_done(s)
    assert "1 of 3 done" in out["progress"] and "Reopen" in str(out["done_btn"])
    list(app.on_next(s))
    assert s.link.path == "dogs.jpg"
    list(app.on_prev(s))
    assert s.link.path == "dog.jpg"
    out = app.on_filter(s, "not_started")
    assert "dog.jpg" not in out["gallery"] and "truck.jpg" in out["gallery"]
    list(app.on_next(s))  # next within the filter, from the current image's place
    assert s.link.path == "dogs.jpg"
    list(app.on_next(s))
    assert s.link.path == "truck.jpg"
    list(app.on_next(s))
    assert s.link.path == "truck.jpg" and "last image" in s.message
    list(app.on_gallery(s, _Evt({"id": 1})))
    assert s.link.path == "dog.jpg"
    out = app.on_done(s)  # reopen
    assert "0 of 3 done" in out["progress"]
    assert not s.undo_stack  # each image has its own history


def test_next_image_after_prefetch_runs_no_encoder(app):
    model = app.manager.predictor().model
    threads: list[str] = []  # the thread of each encoder run
    encode = model.encode_image
    model.encode_image = lambda pixels: (
        threads.append(threading.current_thread().name),
        encode(pixels),
    )[1]
    try:
        s, _ = start(app)
        assert app.project.wait_prefetched(60)
        assert "ready" in app.on_tick(s)["prefetch"]
        assert threads == ["MainThread", "sam-prefetch"]  # dog.jpg here, dogs.jpg behind
        list(app.on_next(s))
        assert s.link.path == "dogs.jpg" and "from cache" in s.message
        app.prompt(s, {"kind": "point", "x": 100, "y": 100})
        assert app.project.wait_prefetched(60)  # then its own neighbours: truck.jpg
        # Neither opening dogs.jpg nor its first click ran the encoder in the click path.
        assert threads == ["MainThread", "sam-prefetch", "sam-prefetch"]
    finally:
        model.encode_image = encode


def test_import_png_and_coco_then_edit_seeds_mask_input(app, folder, tmp_path):
    s, _ = start(app)
    height, width = s.doc.image.size
    inst = np.zeros((height, width), np.uint8)
    inst[50:150, 60:200] = 3
    inst[200:300, 300:500] = 7
    png = tmp_path / "dog_instances.png"
    Image.fromarray(inst).save(png)
    app.on_import(s, str(png))
    assert [o.source for o in s.doc.objects] == ["import", "import"]
    stored = app.project.store.objects(s.link.image_id)
    assert [o.source for o in stored] == ["import", "import"]
    np.testing.assert_array_equal(stored[1].mask(), inst == 7)

    # Re-editing an imported mask: the first click already feeds its mask as mask_input.
    seen: dict[str, Any] = {}
    real = app.manager.predictor

    class Spy:
        def __init__(self) -> None:
            self.inner = real()
            self.engine = self.inner.engine

        def set_image(self, image, digest=None):
            self.inner.set_image(image, digest)

        def predict(self, **kw):
            seen.update(kw)
            return self.inner.predict(**kw)

    app.object_action(s, 2, "edit")
    app.manager.predictor = lambda source=None: Spy()  # type: ignore[method-assign]
    try:
        app.prompt(s, {"kind": "point", "x": 400, "y": 250})
    finally:
        app.manager.predictor = real  # type: ignore[method-assign]
    assert seen["multimask_output"] is False and seen["mask_input"].shape == (1, 256, 256)
    np.testing.assert_array_equal(seen["mask_input"], mask_to_logits(inst == 7))

    # COCO: the open image's objects join the session, another image's go to the store.
    truck = np.zeros((1200, 1800), bool)
    truck[100:400, 200:900] = True
    dog = np.zeros((height, width), bool)
    dog[10:40, 10:40] = True
    coco = {
        "images": [
            {"id": 1, "file_name": "dog.jpg", "height": height, "width": width},
            {"id": 2, "file_name": "sub/truck.jpg", "height": 1200, "width": 1800},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 5,
                "segmentation": [[10, 10, 40, 10, 40, 40, 10, 40]],
            },
            {"id": 2, "image_id": 2, "category_id": 6, "segmentation": mask_to_rle(truck)},
        ],
        "categories": [{"id": 5, "name": "ball"}, {"id": 6, "name": "truck"}],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(coco))
    app.on_import(s, str(path))
    assert s.doc.label_name(s.doc.objects[-1]) == "ball" and not s.message_is_error, s.message
    truck_id = app.project.store.image_id("truck.jpg")
    (obj,) = app.project.store.objects(truck_id)
    np.testing.assert_array_equal(obj.mask(), truck)
    labels = {lab.id: lab.name for lab in app.project.store.labels()}
    assert labels[obj.label_id] == "truck"


def test_import_of_a_mask_for_another_size_is_a_message(app, tmp_path):
    s, _ = start(app)
    png = tmp_path / "small.png"
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(png)
    app.on_import(s, str(png))
    assert s.message_is_error and "10×10" in s.message and not s.doc.objects


@pytest.mark.parametrize("fmt", ["coco", "yolo", "png"])
def test_export_project_zip(app, fmt, tmp_path):
    s, _ = start(app)
    mask = add_object(app, s, 300, 200)
    out = app.on_export_project(s, fmt)
    assert not s.message_is_error, s.message
    (path,) = out["export_files"]["value"]
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        if fmt == "coco":
            target = tmp_path / "annotations.json"
            target.write_bytes(zf.read("annotations.json"))
            coco = COCO(str(target))
            (ann,) = coco.loadAnns(coco.getAnnIds())
            np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), mask)
        elif fmt == "yolo":
            assert "data.yaml" in names and "labels/dog.txt" in names
        else:
            inst = np.array(Image.open(io.BytesIO(zf.read("dog.jpg/instance_map.png"))))
            np.testing.assert_array_equal(inst == 1, mask)


def test_app_project_flags():
    import app

    args = app.parse_args(["--images", "d", "--db", "x.sqlite", "--labels", "l.txt"])
    assert (args.images, args.db, args.labels) == (Path("d"), Path("x.sqlite"), Path("l.txt"))
    with pytest.raises(SystemExit):
        app.parse_args(["--db", "x.sqlite"])  # a database belongs to an image folder
    assert app.main(["--images", "/nonexistent/folder"]) == 2


def test_objects_without_a_label_never_take_a_label_of_that_name(app, folder):
    """A label really called "unlabelled" (masks imported without a class get one) and an
    object with no label at all are two things: editing either keeps it where it was."""
    store = app.project.store
    image_id = store.image_id("dog.jpg")
    named = store.ensure_label("unlabelled").id
    h, w = load_image(folder / "dog.jpg").shape[:2]
    first, second = np.zeros((h, w), bool), np.zeros((h, w), bool)
    first[10:40, 10:40] = second[60:90, 60:90] = True
    store.add_object(image_id, first, named)
    store.add_object(image_id, second, None)
    s, _ = start(app)
    assert [s.doc.label_name(o) for o in s.doc.objects] == ["unlabelled", "unlabelled"]
    app.object_action(s, 1, "hide")
    app.object_action(s, 2, "hide")
    assert [(r.label_id, r.hidden) for r in store.objects(image_id)] == [
        (named, True),
        (None, True),
    ]


def test_done_and_next_opens_the_next_image_not_done(app):
    s, _ = start(app)
    store = app.project.store
    store.set_status(store.image_id("dogs.jpg"), "done")
    list(app.on_done_next(s))
    assert s.link.path == "truck.jpg", s.message  # dogs.jpg is done already
    assert store.image(store.image_id("dog.jpg")).status == "done"
    out = list(app.on_done_next(s))  # the last one not done
    assert s.link.path == "truck.jpg" and "Every image" in s.message
    assert "3 of 3 done" in out[-1]["progress"]
