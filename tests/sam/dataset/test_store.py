"""The SQLite annotation store: persistence, crash safety, labels, statuses, migrations."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from PIL import Image

from sam.dataset.colors import LABEL_PALETTE
from sam.dataset.store import SCHEMA_VERSION, AnnotationStore
from sam.errors import ColorError, StoreError
from sam.image_io import list_images


def blob(shape=(60, 80), box=(10, 20, 30, 50)) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    y0, x0, y1, x1 = box
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.fixture
def folder(tmp_path):
    images = tmp_path / "images"
    (images / "sub").mkdir(parents=True)
    (images / ".hidden").mkdir()
    for name in ("b.jpg", "a.png", "sub/c.jpeg", ".hidden/x.png"):
        Image.new("RGB", (80, 60)).save(images / name)
    (images / "notes.txt").write_text("not an image")
    return images


def test_folder_is_registered_and_reopened(folder):
    with AnnotationStore.for_folder(folder) as store:
        assert [r.path for r in store.images()] == ["a.png", "b.jpg", "sub/c.jpeg"]
        assert store.images_dir == folder.resolve()
        label = store.ensure_label("dog")
        image_id = store.image_id("b.jpg")
        object_id = store.add_object(
            image_id, blob(), label.id, score=0.93, prompts={"points": [[15, 30, 1]]}
        )
    assert (folder / ".sam-annotator" / "annotations.sqlite").is_file()
    with AnnotationStore.for_folder(folder) as store:
        (obj,) = store.objects(image_id)
        assert obj.id == object_id and obj.label_id == label.id and obj.score == 0.93
        np.testing.assert_array_equal(obj.mask(), blob())
        assert obj.bbox == [20.0, 10.0, 30.0, 20.0] and obj.area == 600
        assert obj.prompts == {"points": [[15, 30, 1]]}
        assert store.image(image_id).status == "in_progress"
        assert store.image(image_id).num_objects == 1


def test_statuses_progress_and_filter(folder):
    with AnnotationStore.for_folder(folder) as store:
        a, b = store.image_id("a.png"), store.image_id("b.jpg")
        store.set_status(a, "done")
        store.set_status(b, "in_progress")
        assert store.progress() == (1, 3)
        assert [r.path for r in store.images("done")] == ["a.png"]
        with pytest.raises(StoreError, match="Unknown status"):
            store.set_status(a, "finished")


def test_edit_hide_and_delete(folder):
    with AnnotationStore.for_folder(folder) as store:
        image_id = store.image_id("a.png")
        cat = store.ensure_label("cat")
        object_id = store.add_object(image_id, blob())
        store.update_object(object_id, mask=blob(box=(0, 0, 5, 5)), label_id=cat.id, hidden=True)
        (obj,) = store.objects(image_id)
        assert obj.area == 25 and obj.label_id == cat.id and obj.hidden
        store.delete_object(object_id)
        assert store.objects(image_id) == []
        with pytest.raises(StoreError, match="No object"):
            store.update_object(object_id, hidden=False)


def test_labels(folder, tmp_path):
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("# classes\ndog\ncat,#00ff00\n\n")
    with AnnotationStore.for_folder(folder) as store:
        dog, cat = store.load_labels_file(labels_file)
        assert cat.color == "#00ff00" and dog.color.startswith("#")
        assert store.ensure_label("dog") == dog
        store.update_label(dog.id, name="puppy", color="#123456")
        assert next((lb.name, lb.color) for lb in store.labels()) == ("puppy", "#123456")
        with pytest.raises(StoreError, match="already a label"):
            store.update_label(cat.id, name="puppy")
        with pytest.raises(StoreError, match="needs a name"):
            store.ensure_label("  ")


HOSTILE_COLORS = (
    '#abc" onmouseover="alert(1)',
    '#fff"><img src=x onerror=alert(2)>',
    "red;background-image:url(http://example.invalid/x.png)",
    "red",
    "#12345",
    "rgb(300, 0, 0)",
)


@pytest.mark.parametrize("color", HOSTILE_COLORS)
def test_labels_file_with_a_bad_colour_is_refused_by_line(folder, tmp_path, color):
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text(f"# classes\ndog\ncat,{color}\n")
    with AnnotationStore.for_folder(folder) as store:
        with pytest.raises(StoreError, match=r"labels\.txt, line 3: .* is not a colour"):
            store.load_labels_file(labels_file)
        assert store.labels() == []  # nothing of the file was created


def test_label_colours_are_normalised(folder, tmp_path):
    labels_file = tmp_path / "labels.txt"
    labels_file.write_text("dog,#ABC\ncat, #00FF00 \n")
    with AnnotationStore.for_folder(folder) as store:
        dog, cat = store.load_labels_file(labels_file)
        assert (dog.color, cat.color) == ("#aabbcc", "#00ff00")
        store.update_label(dog.id, color="rgb(1, 2, 3)")
        assert store.labels()[0].color == "#010203"


@pytest.mark.parametrize("color", HOSTILE_COLORS)
def test_store_refuses_bad_colours(folder, color):
    with AnnotationStore.for_folder(folder) as store:
        image_id = store.image_id("a.png")
        dog = store.ensure_label("dog")
        object_id = store.add_object(image_id, blob(), dog.id)
        with pytest.raises(ColorError, match="not a colour"):
            store.ensure_label("cat", color)
        with pytest.raises(ColorError):
            store.update_label(dog.id, color=color)
        with pytest.raises(ColorError):
            store.add_object(image_id, blob(), dog.id, color=color)
        with pytest.raises(ColorError):
            store.update_object(object_id, color=color)
        assert [lb.name for lb in store.labels()] == ["dog"]
        assert [o.color for o in store.objects()] == [None]


def test_hostile_colours_written_by_another_program_are_read_back_safe(folder):
    with AnnotationStore.for_folder(folder) as store:
        image_id = store.image_id("a.png")
        dog = store.ensure_label("dog", "#123456")
        object_id = store.add_object(image_id, blob(), dog.id, color="#654321")
        db = store.path
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE labels SET color = ?", (HOSTILE_COLORS[0],))
        conn.execute("UPDATE objects SET color = ?", (HOSTILE_COLORS[2],))
    with AnnotationStore(db) as store:
        (label,) = store.labels()
        (obj,) = store.objects()
        assert label.color == LABEL_PALETTE[0] and obj.id == object_id
        assert obj.color is None  # the label's colour
        assert store.ensure_label("dog").color == LABEL_PALETTE[0]


def test_survives_kill_9_mid_session(folder):
    """A writer process killed with SIGKILL loses nothing it had committed."""
    script = textwrap.dedent(
        f"""
        import sys, time
        import numpy as np
        sys.path.insert(0, {os.getcwd()!r})
        from sam.dataset.store import AnnotationStore
        store = AnnotationStore.for_folder({str(folder)!r})
        image_id = store.image_id("a.png")
        for i in range(10_000):
            mask = np.zeros((60, 80), dtype=bool)
            mask[: 1 + i % 50, : 1 + i % 70] = True
            store.add_object(image_id, mask, score=float(i))
            print(i, flush=True)
        time.sleep(60)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    last = -1
    deadline = time.time() + 60
    while last < 50 and time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            pytest.fail(f"writer process died: {proc.stderr.read()}")
        last = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with AnnotationStore.for_folder(folder) as store:
        objects = store.objects(store.image_id("a.png"))
    assert len(objects) >= last + 1  # everything reported as stored is there
    assert [o.score for o in objects] == [float(i) for i in range(len(objects))]
    for o in objects[:5]:
        assert o.mask().sum() == o.area


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "db.sqlite"
    AnnotationStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer version of this app"):
        AnnotationStore(path)


def test_unwritable_location(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="Cannot open the annotation database"):
        AnnotationStore(blocker / "sub" / "db.sqlite")


def test_list_images_skips_hidden_and_non_images(folder):
    assert list_images(folder) == ["a.png", "b.jpg", "sub/c.jpeg"]


def test_version_1_database_is_migrated(tmp_path):
    """A database written by schema 1 opens, gains the colour column, keeps its objects."""
    from sam.dataset.store import _MIGRATIONS

    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.executescript(_MIGRATIONS[1])
    conn.execute("INSERT INTO images (path, updated_at) VALUES ('a.png', 0)")
    conn.execute(
        "INSERT INTO objects (image_id, rle, bbox, area, created_at, updated_at) "
        "VALUES (1, ?, '[0, 0, 1, 1]', 1, 0, 0)",
        (json.dumps({"size": [2, 2], "counts": "0120"}),),
    )
    conn.execute("PRAGMA user_version = 1")
    conn.commit()
    conn.close()
    with AnnotationStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION
        (obj,) = store.objects(1)
        assert obj.color is None and obj.mask().shape == (2, 2)
        store.update_object(obj.id, color="#00ff00")
        assert store.objects(1)[0].color == "#00ff00"


def test_colour_override_prompts_and_label_removal(folder):
    with AnnotationStore.for_folder(folder) as store:
        image_id = store.image_id("a.png")
        dog, spare = store.ensure_label("dog"), store.ensure_label("spare")
        object_id = store.add_object(image_id, blob(), dog.id, color="#112233",
                                     prompts={"points": [[1, 1, 1]]})  # fmt: skip
        store.update_object(object_id, prompts={"points": [[1, 1, 1], [5, 5, 0]]})
        (obj,) = store.objects(image_id)
        assert obj.color == "#112233" and len(obj.prompts["points"]) == 2
        store.update_object(object_id, color=None)
        assert store.objects(image_id)[0].color is None
        assert store.label_usage(dog.id) == 1 and store.label_usage(spare.id) == 0
        with pytest.raises(StoreError, match="used by 1 object"):
            store.delete_label(dog.id)
        store.delete_label(spare.id)
        assert [lb.name for lb in store.labels()] == ["dog"]
