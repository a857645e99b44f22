"""Segment everything with a SAM 2 engine: Meta's SAM 2 generator defaults, and proposals that
are the engine's own candidates laid over the whole image."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from sam import SamPredictor, load_model
from sam.__main__ import main
from sam.automatic import AutoMaskConfig, AutomaticMaskGenerator


@pytest.fixture(scope="module")
def sam2(tiny_sam2_checkpoint):
    return load_model(tiny_sam2_checkpoint, device="cpu")


def test_each_family_gets_its_generators_defaults(sam2, tiny_checkpoint):
    assert AutomaticMaskGenerator(sam2).config == AutoMaskConfig(pred_iou_thresh=0.8)
    sam = load_model(tiny_checkpoint, device="cpu")
    assert AutomaticMaskGenerator(sam).config == AutoMaskConfig()
    assert AutoMaskConfig().pred_iou_thresh == 0.88
    # A caller's config is kept as given, whatever the family.
    mine = AutoMaskConfig(pred_iou_thresh=0.5)
    assert AutomaticMaskGenerator(sam2, mine).config is mine


def test_proposals_are_the_engines_candidates(sam2, photos):
    image = photos["truck.jpg"]
    config = AutoMaskConfig(points_per_side=2, pred_iou_thresh=-10, stability_score_thresh=-1)
    proposals = AutomaticMaskGenerator(sam2, config).generate(image)
    assert proposals
    predictor = SamPredictor(sam2)
    predictor.set_image(image)
    for p in proposals:
        assert p.segmentation.shape == image.shape[:2]
        masks, scores, _ = predictor.predict(
            point_coords=np.array([p.point]), point_labels=np.array([1]), multimask_output=True
        )
        # The generator decodes its points as one batch, the predictor one point: float noise
        # may flip a pixel whose logit is ~0 (1 of 2.16 M seen), never a real difference.
        same = [i for i, m in enumerate(masks) if (m != p.segmentation).mean() < 1e-5]
        assert same, "a proposal is none of its point's candidates"
        assert any(abs(scores[i] - p.predicted_iou) < 1e-4 for i in same)


def run_everything(model: Path, image: Path, out: Path, *options: str) -> dict:
    """``python -m sam everything`` in this process; its JSON document."""
    argv = ["everything", "--model", str(model), "--image", str(image), "--out", str(out)]
    assert main([*argv, "--device", "cpu", "--points-per-side", "2", *options]) == 0
    return json.loads(out.read_text())


def test_cli_starts_from_the_models_family_defaults(
    tiny_sam2_checkpoint, tiny_checkpoint, example_photos, tmp_path
):
    truck_path = example_photos / "truck.jpg"
    sam2_doc = run_everything(tiny_sam2_checkpoint, truck_path, tmp_path / "sam2.json")
    assert sam2_doc["model"]["family"].startswith("sam2")
    assert sam2_doc["settings"] == asdict(AutoMaskConfig(points_per_side=2, pred_iou_thresh=0.8))
    assert all(a["predicted_iou"] > 0.8 for a in sam2_doc["annotations"])
    sam_doc = run_everything(tiny_checkpoint, truck_path, tmp_path / "sam.json")
    assert sam_doc["settings"]["pred_iou_thresh"] == 0.88
    # What the user typed wins over the family's default.
    mine = run_everything(
        tiny_sam2_checkpoint, truck_path, tmp_path / "mine.json", "--pred-iou-thresh", "-10"
    )
    assert mine["settings"]["pred_iou_thresh"] == -10
    assert len(mine["annotations"]) >= len(sam2_doc["annotations"])


def test_cli_help_names_each_familys_default(capsys):
    with pytest.raises(SystemExit):
        main(["everything", "--help"])
    assert "0.88 for SAM, 0.8 for SAM 2" in " ".join(capsys.readouterr().out.split())
