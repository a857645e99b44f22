"""Batch auto-labelling into the project database: proposals wait for review, apart from the
annotations (not exported, not counted), and a rerun labels only what is left."""

from __future__ import annotations

import shutil

import pytest
from checkpoints import save_random_grounding_dino
from PIL import Image

from sam.dataset.autolabel import main
from sam.dataset.store import AnnotationStore
from sam.masks import rle_to_mask


@pytest.fixture
def project(tmp_path, example_photos):
    folder = tmp_path / "project"
    folder.mkdir()
    for name in ("dog.jpg", "truck.jpg"):
        shutil.copy(example_photos / name, folder / name)
    (folder / "notes.png").write_text("not an image")
    return folder


# Random weights: SAM's default thresholds keep nothing; these keep every candidate.
LOOSE = ("--pred-iou-thresh", "-10", "--stability-score-thresh", "0")


def run(project, checkpoint, *what, capsys):
    argv = ["--model", str(checkpoint), "--images", str(project), "--device", "cpu", *what]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_everything_proposals_are_stored_for_review(tiny_checkpoint, project, capsys):
    code, out, err = run(
        project, tiny_checkpoint, "--everything", "--points-per-side", "4", *LOOSE, capsys=capsys
    )
    assert code == 0, err
    assert "failed 1 (notes.png)" in out and "could not read notes.png: " in err
    with AnnotationStore.for_folder(project) as store:
        dog = store.image_id("dog.jpg")
        width, height = Image.open(project / "dog.jpg").size
        proposals = store.objects(dog, reviewed=False)
        assert proposals, "the random model proposes something on a 4x4 grid"
        for p in proposals:
            assert (p.source, p.reviewed, p.label_id) == ("everything", False, None)
            assert rle_to_mask(p.rle).shape == (height, width) and p.mask().any()
            x, y, positive = p.prompts["points"][0]
            assert positive == 1 and 0 <= x <= width and 0 <= y <= height
        # Not annotations until reviewed: not listed, counted, exported or moving the status.
        assert store.objects(dog) == [] and store.objects() == []
        assert {r.path: (r.status, r.num_objects) for r in store.images()} == {
            "dog.jpg": ("not_started", 0),
            "notes.png": ("not_started", 0),
            "truck.jpg": ("not_started", 0),
        }
        total = len(store.objects(reviewed=False))
    assert f"labelled 2 ({total} proposals), skipped 0, failed 1" in out

    code, out, _ = run(
        project, tiny_checkpoint, "--everything", "--points-per-side", "4", *LOOSE, capsys=capsys
    )
    assert code == 0 and "labelled 0 (0 proposals), skipped 2, failed 1" in out


def test_text_proposals_carry_their_phrase_as_label(tiny_checkpoint, project, tmp_path, capsys):
    detector = save_random_grounding_dino(tmp_path / "grounding-dino")
    code, _, err = run(
        project, tiny_checkpoint, "--text", "truck. wheel.", "--detector", str(detector),
        "--box-threshold", "0.05", "--text-threshold", "0", capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    with AnnotationStore.for_folder(project) as store:
        proposals = store.objects(store.image_id("truck.jpg"), reviewed=False)
        assert proposals, "random weights still score a few boxes above 0.05"
        names = {lab.id: lab.name for lab in store.labels()}
        for p in proposals:
            assert p.source == "text" and not p.reviewed
            assert names[p.label_id] in {"truck", "wheel", "truck wheel"}
            x0, y0, x1, y1 = p.prompts["box"]
            assert p.prompts["points"] == [] and 0 <= x0 < x1 and 0 <= y0 < y1


def test_an_image_being_annotated_is_left_alone(tiny_checkpoint, project, capsys):
    with AnnotationStore.for_folder(project) as store:
        store.set_status(store.image_id("dog.jpg"), "in_progress")
    code, out, _ = run(
        project, tiny_checkpoint, "--everything", "--points-per-side", "2", *LOOSE, capsys=capsys
    )
    assert code == 0 and "labelled 1 " in out and "skipped 1" in out
    with AnnotationStore.for_folder(project) as store:
        assert store.objects(store.image_id("dog.jpg"), reviewed=False) == []


def test_an_image_where_nothing_was_found_is_not_labelled_again(tiny_checkpoint, project, capsys):
    strict = ("--everything", "--points-per-side", "2")  # SAM's thresholds: random weights fail
    code, out, _ = run(project, tiny_checkpoint, *strict, capsys=capsys)
    assert code == 0 and "labelled 2 (0 proposals)" in out
    code, out, _ = run(project, tiny_checkpoint, *strict, capsys=capsys)
    assert code == 0 and "labelled 0 (0 proposals), skipped 2" in out
