"""Segment everything: against transformers' mask-generation pipeline, and its pure helpers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from sam import load_model
from sam.automatic import (
    AutoMaskConfig,
    AutomaticMaskGenerator,
    _near_crop_edge,
    box_nms,
    crop_boxes,
    mask_to_box,
    point_grid,
    remove_small_regions,
    stability_score,
)

# Random weights predict IoUs around ±1 and logits of small magnitude: these settings keep
# some candidates, not all.
PRED_IOU = 0.3
STABILITY = 0.7535  # halfway between two observed scores, far from any
OFFSET = 0.02
#: Those thresholds on the pipeline's grid: 8x8 points, 16 a batch (SAM's defaults otherwise).
PIPELINE = AutoMaskConfig(
    points_per_side=8,
    points_per_batch=16,
    pred_iou_thresh=PRED_IOU,
    stability_score_thresh=STABILITY,
    stability_score_offset=OFFSET,
)


def hf_candidates(hf_model, image: np.ndarray, points_per_side: int):
    """Candidates of transformers' pipeline before its NMS (which needs torchvision)."""
    from transformers import MaskGenerationPipeline, SamImageProcessorPil

    pipe = MaskGenerationPipeline(model=hf_model, image_processor=SamImageProcessorPil())
    masks, scores, boxes = [], [], []
    batches = pipe.preprocess(
        Image.fromarray(image), points_per_batch=16, points_per_crop=points_per_side
    )
    with torch.no_grad():
        for batch in batches:
            out = pipe._forward(
                batch,
                pred_iou_thresh=PRED_IOU,
                stability_score_thresh=STABILITY,
                stability_score_offset=OFFSET,
            )
            masks.extend(_rle_to_mask(r) for r in out["masks"])
            scores.append(out["iou_scores"])
            boxes.append(out["boxes"])
    return masks, torch.cat(scores).numpy(), torch.cat(boxes).numpy()


def _rle_to_mask(rle) -> np.ndarray:
    height, width = rle["size"]
    flat = np.repeat(np.arange(len(rle["counts"])) % 2 == 1, rle["counts"])
    return flat.reshape(width, height).T


def reference_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Plain greedy NMS, written out for the test."""
    order = list(np.argsort(-scores, kind="stable"))
    keep: list[int] = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in order:
        ok = True
        for k in keep:
            w = max(0.0, min(boxes[i, 2], boxes[k, 2]) - max(boxes[i, 0], boxes[k, 0]))
            h = max(0.0, min(boxes[i, 3], boxes[k, 3]) - max(boxes[i, 1], boxes[k, 1]))
            union = area[i] + area[k] - w * h
            if union > 0 and w * h / union > threshold:
                ok = False
                break
        if ok:
            keep.append(int(i))
    return keep


@pytest.fixture(scope="module")
def model(tiny_checkpoint):
    return load_model(tiny_checkpoint, device="cpu")


def test_candidates_match_transformers_pipeline(model, tiny_hf_model, photos):
    image = photos["dog.jpg"]
    ref_masks, ref_scores, ref_boxes = hf_candidates(tiny_hf_model, image, points_per_side=8)
    assert 5 < len(ref_masks) < 8 * 8 * 3, "thresholds should keep some candidates, not all"

    # Keep every candidate: compare before NMS.
    config = dataclasses.replace(PIPELINE, box_nms_thresh=1.0)
    ours = AutomaticMaskGenerator(model, config).generate(image)
    assert len(ours) == len(ref_masks)
    order = np.argsort(-ref_scores, kind="stable")
    for proposal, i in zip(ours, order, strict=True):
        assert proposal.predicted_iou == pytest.approx(float(ref_scores[i]), abs=1e-4)
        assert (proposal.segmentation == ref_masks[i]).mean() > 0.999
        x0, y0, x1, y1 = ref_boxes[i]
        assert proposal.bbox == [x0, y0, x1 - x0 + 1, y1 - y0 + 1]


def test_nms_result_matches_reference_on_pipeline_candidates(model, tiny_hf_model, photos):
    image = photos["dog.jpg"]
    ref_masks, ref_scores, ref_boxes = hf_candidates(tiny_hf_model, image, points_per_side=8)
    expected = reference_nms(ref_boxes.astype(float), ref_scores, 0.7)
    ours = AutomaticMaskGenerator(model, PIPELINE).generate(image)
    assert len(ours) == len(expected) < len(ref_masks)
    for proposal, i in zip(ours, expected, strict=True):
        assert (proposal.segmentation == ref_masks[i]).mean() > 0.999


def test_progress_and_rle(model, photos):
    """Progress counts decoder batches: 16 points in batches of 2 on the CPU (at most 2 there,
    whatever the config asks: larger batches are slower on a CPU)."""
    assert model.device.type == "cpu"
    calls = []
    config = AutoMaskConfig(
        points_per_side=4, points_per_batch=5, pred_iou_thresh=-10, stability_score_thresh=0.0
    )
    proposals = AutomaticMaskGenerator(model, config).generate(
        photos["truck.jpg"], progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(done, 8) for done in range(1, 9)]
    from pycocotools import mask as mask_utils

    for p in proposals[:5]:
        rle = p.rle()
        decoded = mask_utils.decode({**rle, "counts": rle["counts"].encode()})
        np.testing.assert_array_equal(decoded.astype(bool), p.segmentation)
        assert p.area == int(p.segmentation.sum())
        assert [int(v) for v in mask_utils.toBbox(rle)] == p.bbox


def test_callers_predictor_reuses_its_embedding(model, photos, tmp_path):
    from sam import SamPredictor
    from sam.disk_cache import EmbeddingDiskCache

    image = np.ascontiguousarray(photos["dog.jpg"][::8, ::8])
    config = AutoMaskConfig(points_per_side=3, pred_iou_thresh=-10, stability_score_thresh=0.0)
    predictor = SamPredictor(model, EmbeddingDiskCache(tmp_path, model))
    predictor.set_image(image)
    model.embedding_cache.clear()  # only the caller's disk cache holds the embedding now
    generator = AutomaticMaskGenerator(model, config)
    proposals = generator.generate(image, predictor=predictor)
    assert predictor.embedding_source == "disk"
    fresh = generator.generate(image)
    assert [p.bbox for p in proposals] == [p.bbox for p in fresh]
    with pytest.raises(ValueError, match="generator's model"):
        AutomaticMaskGenerator(load_model_like(model), config).generate(image, predictor=predictor)


def load_model_like(model):
    """Another model object (weights shared): a predictor of ``model`` must not serve it."""
    import copy

    return copy.copy(model)


def test_crop_layers_decode_every_crop(model, photos):
    image = photos["groceries.jpg"]
    config = AutoMaskConfig(
        points_per_side=4,
        points_per_batch=4,
        crop_n_layers=1,
        pred_iou_thresh=-10,
        stability_score_thresh=0.0,
        crop_n_points_downscale_factor=2,
    )
    calls = []
    proposals = AutomaticMaskGenerator(model, config).generate(
        image, progress=lambda done, total: calls.append(total)
    )
    # whole image: 16 points in 8 CPU batches of 2; 4 crops of layer 1: 4 points, 2 batches each
    assert calls == [16] * 16
    for p in proposals:
        x0, y0, x1, y1 = p.crop_box
        outside = p.segmentation.copy()
        outside[y0:y1, x0:x1] = False
        assert not outside.any()


def test_masks_cut_by_a_crop_edge_are_dropped():
    full = [0, 0, 1000, 800]
    crop = [300, 0, 700, 400]
    assert _near_crop_edge([305, 50, 500, 200], crop, full)  # touches the crop's left edge
    assert not _near_crop_edge([350, 5, 500, 200], crop, full)  # top edge is the image's
    assert not _near_crop_edge([350, 50, 500, 200], crop, full)
    assert not _near_crop_edge([0, 0, 999, 799], full, full)


def test_point_grid_and_crops():
    grid = point_grid(2)
    np.testing.assert_allclose(grid, [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])
    boxes = crop_boxes(100, 200, 1, 0.5)
    assert boxes[0] == ([0, 0, 200, 100], 0) and len(boxes) == 5
    for (x0, y0, x1, y1), layer in boxes[1:]:
        assert layer == 1 and 0 <= x0 < x1 <= 200 and 0 <= y0 < y1 <= 100


def test_stability_score_on_hand_made_logits():
    logits = torch.full((1, 10, 10), -5.0)
    logits[0, :4, :] = 3.0  # 40 pixels sure
    logits[0, 4:6, :] = 0.5  # 20 pixels above -1 but below +1
    assert stability_score(logits, 0.0, 1.0).item() == pytest.approx(40 / 60)


def test_mask_to_box():
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 3:9] = True
    assert mask_to_box(mask) == [3, 2, 8, 4]
    assert mask_to_box(np.zeros((4, 4), dtype=bool)) == [0, 0, 0, 0]


def test_box_nms_against_reference():
    rng = np.random.default_rng(0)
    xy = rng.integers(0, 80, (60, 2))
    wh = rng.integers(5, 40, (60, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(float)
    scores = rng.normal(size=60)  # negative scores too
    for threshold in (0.3, 0.5, 0.7):
        assert box_nms(boxes, scores, threshold).tolist() == reference_nms(boxes, scores, threshold)
    assert box_nms(np.zeros((0, 4)), np.zeros(0), 0.5).size == 0


def test_remove_small_regions():
    mask = np.zeros((40, 40), dtype=bool)
    mask[5:30, 5:30] = True
    mask[10:12, 10:12] = False  # hole of 4 px
    mask[35:37, 35:37] = True  # island of 4 px
    cleaned, changed = remove_small_regions(mask, min_area=10)
    assert changed and cleaned[10:12, 10:12].all() and not cleaned[35:37, 35:37].any()
    assert cleaned.sum() == 25 * 25
    lone = np.zeros((20, 20), dtype=bool)
    lone[3:5, 3:5] = True  # the only island is small: kept
    kept, changed = remove_small_regions(lone, min_area=10)
    assert not changed and kept.sum() == 4
