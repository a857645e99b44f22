"""Segment everything with a SAM 2 engine: Meta's SAM 2 generator defaults, and proposals that
are the engine's own candidates laid over the whole image."""

from __future__ import annotations

import numpy as np
import pytest

from sam import SamPredictor, load_model
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
        same = [i for i, m in enumerate(masks) if np.array_equal(m, p.segmentation)]
        assert same, "a proposal is none of its point's candidates"
        assert any(abs(scores[i] - p.predicted_iou) < 1e-4 for i in same)
