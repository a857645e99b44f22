"""``python -m sam.evaluate``: the table and the JSON object, from a COCO file or the app's
project database, and a clear error for a bad dataset."""

from __future__ import annotations

import json

from synthetic_shapes import make_dataset

from sam.dataset.store import AnnotationStore
from sam.evaluate import main
from sam.evaluation import read_coco

KEYS = ("miou_1click", "miou_3click", "miou_5click", "miou_box", "noc85", "noc90", "n_objects")


def test_json_from_coco_and_from_the_project_database(tiny_checkpoint, tmp_path, capsys):
    annotations, images_dir = make_dataset(tmp_path, n_images=2, seed=5)
    common = ["--model", str(tiny_checkpoint), "--device", "cpu", "--max-clicks", "2", "--json"]
    assert main([*common, "--coco", str(annotations), "--images", str(images_dir)]) == 0
    from_coco = json.loads(capsys.readouterr().out)
    assert all(key in from_coco for key in KEYS)
    expected = sum(len(i.objects) for i in read_coco(annotations, images_dir))
    assert from_coco["n_objects"] == expected

    # The same objects annotated in a project of the app give the same numbers.
    db = tmp_path / "project.sqlite"
    with AnnotationStore.for_folder(images_dir, db) as store:
        for image in read_coco(annotations, images_dir):
            image_id = store.image_id(image.name)
            for obj in image.objects:
                label = store.ensure_label(obj.label)
                store.add_object(image_id, obj.mask(), label.id)
    assert main([*common, "--db", str(db)]) == 0
    from_db = json.loads(capsys.readouterr().out)
    for key in KEYS:
        assert from_db[key] == from_coco[key]
    assert from_db["per_label"] == from_coco["per_label"]


def test_table_lists_each_label_and_the_overall_row(tiny_checkpoint, tmp_path, capsys):
    annotations, images_dir = make_dataset(tmp_path, n_images=1, seed=2)
    code = main(
        [
            "--model",
            str(tiny_checkpoint),
            "--device",
            "cpu",
            "--max-clicks",
            "1",
            "--coco",
            str(annotations),
            "--images",
            str(images_dir),
        ]
    )
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header[0] == "label" and sorted(header[1:]) == sorted(KEYS)
    assert lines[-1].split()[0] == "all"
    labels = {o.label for i in read_coco(annotations, images_dir) for o in i.objects}
    assert {line.split()[0] for line in lines[1:-1]} == labels


def test_bad_dataset_is_a_clear_error(tiny_checkpoint, tmp_path, capsys):
    annotations, images_dir = make_dataset(tmp_path, n_images=1, seed=2)
    (images_dir / "shapes_000.png").unlink()
    code = main(
        ["--model", str(tiny_checkpoint), "--coco", str(annotations), "--images", str(images_dir)]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The image shapes_000.png cannot be read")
    assert "Traceback" not in err and str(tmp_path) not in err


def test_coco_needs_an_image_folder(tiny_checkpoint, tmp_path, capsys):
    annotations, _ = make_dataset(tmp_path, n_images=1, seed=2)
    assert main(["--model", str(tiny_checkpoint), "--coco", str(annotations)]) == 2
    assert "--coco needs --images" in capsys.readouterr().err
