"""``python -m sam`` as a user runs it."""

from __future__ import annotations

import numpy as np
from PIL import Image
from sam_cli import predict_args, run_cli

from sam import SamPredictor, load_model


def test_help():
    result = run_cli("--help")
    assert result.returncode == 0 and "predict" in result.stdout
    result = run_cli("predict", "--help")
    assert result.returncode == 0 and "--negative" in result.stdout


def test_predict_writes_the_best_mask(tiny_checkpoint, example_photos, tmp_path):
    out = tmp_path / "out" / "mask.png"
    image_path = example_photos / "truck.jpg"
    clicks = ("--point", "500", "375", "--negative", "1100", "600")
    result = run_cli(*predict_args(tiny_checkpoint, image_path, out, *clicks, "--device", "cpu"))
    assert result.returncode == 0, result.stderr
    assert "candidate 1: predicted IoU" in result.stdout
    written = np.asarray(Image.open(out))
    assert set(np.unique(written)) <= {0, 255}

    predictor = SamPredictor(load_model(tiny_checkpoint, device="cpu"))
    predictor.set_image(image_path)
    masks, _, _ = predictor.predict(
        np.array([[500, 375], [1100, 600]]), np.array([1, 0]), multimask_output=False
    )
    assert written.shape == masks.shape[1:]
    np.testing.assert_array_equal(written == 255, masks[0])


def test_bad_model_path_is_a_message_not_a_traceback(example_photos, tmp_path):
    missing = tmp_path / "missing.pth"
    point = ("--point", "1", "1")
    result = run_cli(*predict_args(missing, example_photos / "dog.jpg", tmp_path / "m.png", *point))
    assert result.returncode == 2
    assert "error: No such file or folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_too_many_points_exit_2_before_the_model_loads(example_photos, tmp_path):
    """65 clicks: refused with the limit named; the (missing) model is never even looked for."""
    clicks = [*("--point", "10", "20") * 33, *("--negative", "30", "40") * 32]
    out = tmp_path / "m.png"
    result = run_cli(
        *predict_args(tmp_path / "missing.pth", example_photos / "dog.jpg", out, *clicks)
    )
    assert result.returncode == 2, result.stderr
    assert "65 --point/--negative points is more than the limit of 64" in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_bad_image_is_a_message(tiny_checkpoint, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    result = run_cli(*predict_args(tiny_checkpoint, bad, tmp_path / "m.png", "--point", "1", "1"))
    assert result.returncode == 2 and "error:" in result.stderr
    assert "Traceback" not in result.stderr


def test_everything_writes_coco_rle_json(tiny_checkpoint, example_photos, tmp_path):
    import json

    from pycocotools import mask as mask_utils

    out = tmp_path / "masks.json"
    result = run_cli(
        "everything",
        "--model",
        str(tiny_checkpoint),
        "--image",
        str(example_photos / "dog.jpg"),
        "--out",
        str(out),
        "--points-per-side",
        "4",
        "--pred-iou-thresh",
        "-10",
        "--stability-score-thresh",
        "0",
        "--png-dir",
        str(tmp_path / "png"),
    )
    assert result.returncode == 0, result.stderr
    document = json.loads(out.read_text())
    assert document["image"]["width"] == 800 and document["image"]["height"] == 534
    annotations = document["annotations"]
    assert annotations and f"wrote {len(annotations)} masks" in result.stdout
    pngs = sorted((tmp_path / "png").glob("mask_*.png"))
    assert len(pngs) == len(annotations)
    first = annotations[0]
    rle = {**first["segmentation"], "counts": first["segmentation"]["counts"].encode()}
    decoded = mask_utils.decode(rle)
    np.testing.assert_array_equal(decoded * 255, np.asarray(Image.open(pngs[0])))
    assert int(decoded.sum()) == first["area"]
