"""Fine-tuning a SAM 2 model: ``python -m sam.finetune --model <SAM 2 folder>`` trains on SAM 2's
own low-res layout and feature maps and writes a folder that our engine and
``transformers.Sam2Model`` load with the same outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic_shapes import make_dataset

from sam import SamPredictor, load_model
from sam.engine import Sam2Engine
from sam.finetune.__main__ import main
from sam.transforms import preprocess_square

POINTS, LABELS = [[60, 50], [150, 120]], [1, 0]


@pytest.fixture(scope="module")
def finetuned(tiny_sam2_checkpoint, tmp_path_factory):
    annotations, images_dir = make_dataset(tmp_path_factory.mktemp("shapes2"), n_images=3, seed=5)
    out = tmp_path_factory.mktemp("finetuned-sam2") / "model"
    args = [
        "--model", str(tiny_sam2_checkpoint), "--device", "cpu",
        "--coco", str(annotations), "--images", str(images_dir), "--out", str(out),
        "--epochs", "1", "--lr", "1e-3", "--batch-size", "4", "--val-fraction", "0.34",
        "--val-max-clicks", "1", "--seed", "1",
    ]  # fmt: skip
    assert main(args) == 0
    return out, next(images_dir.glob("*.png"))


def test_sam2_folder_loads_identically_in_ours_and_transformers(finetuned):
    from transformers import Sam2Model

    out, image_path = finetuned
    image = np.asarray(Image.open(image_path).convert("RGB"))
    engine = load_model(out, device="cpu")
    assert isinstance(engine, Sam2Engine)
    predictor = SamPredictor(engine)
    predictor.set_image(image)
    _, scores, logits = predictor.predict(point_coords=POINTS, point_labels=LABELS)

    hf = Sam2Model.from_pretrained(out).eval()
    pixels = preprocess_square(image, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    scale = np.array([1024 / image.shape[1], 1024 / image.shape[0]])
    with torch.no_grad():
        reference = hf(
            pixel_values=pixels,
            input_points=torch.tensor(np.array(POINTS) * scale, dtype=torch.float32)[None, None],
            input_labels=torch.tensor(LABELS)[None, None],
        )
    ref_scores, ref_logits = reference.iou_scores[0, 0], reference.pred_masks[0, 0]
    order = torch.argsort(ref_scores, descending=True, stable=True)
    np.testing.assert_allclose(scores, ref_scores[order].numpy(), atol=1e-4)
    np.testing.assert_allclose(logits, ref_logits[order].numpy(), atol=1e-4)

    report = json.loads((out / "training.json").read_text())
    assert report["epochs"][1]["steps"] >= 1 and np.isfinite(report["epochs"][1]["train_loss"])
