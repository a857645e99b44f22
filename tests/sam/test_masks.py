"""mask_to_logits: a mask turned into SAM low-res logits comes back through the decoder's
upscaling (threshold 0) as the same mask."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sam import SamPredictor, load_model
from sam.masks import MASK_LOGIT, mask_to_logits


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def _shapes(height: int, width: int) -> np.ndarray:
    """A filled ellipse and a rectangle with a hole: curved edges, straight edges, a hole."""
    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, (width // 3, height // 2), (width // 6, height // 4), 20, 0, 360, 1, -1)
    mask[height // 5 : height // 2, width // 2 : width * 9 // 10] = 1
    mask[height // 4 : height // 3, width * 6 // 10 : width * 7 // 10] = 0
    return mask.astype(bool)


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint: Path) -> SamPredictor:
    return SamPredictor(load_model(str(tiny_checkpoint), device="cpu"))


@pytest.mark.parametrize("size", [(1200, 1800), (1800, 1200), (300, 500), (1024, 1024)])
def test_logits_round_trip_through_upscale(predictor, size):
    height, width = size
    mask = _shapes(height, width)
    predictor.set_image(np.zeros((height, width, 3), np.uint8))
    logits = mask_to_logits(mask)
    assert logits.shape == (1, 256, 256) and logits.dtype == np.float32
    assert logits.min() >= -MASK_LOGIT and logits.max() <= MASK_LOGIT
    back = predictor.upscale(torch.from_numpy(logits)[None])[0, 0].numpy() > 0
    assert back.shape == mask.shape
    assert _iou(back, mask) > 0.95


def test_padding_is_background_and_logits_feed_the_decoder(predictor):
    mask = np.ones((600, 1200), bool)  # the whole (wide) image: the padded rows stay negative
    logits = mask_to_logits(mask)
    assert (logits[0, :120] > 0).all() and (logits[0, 140:] < 0).all()
    predictor.set_image(np.zeros((600, 1200, 3), np.uint8))
    masks, _, _ = predictor.predict(
        point_coords=[[10, 10]], point_labels=[1], mask_input=logits, multimask_output=False
    )
    assert masks.shape == (1, 600, 1200)


def test_empty_mask_is_all_negative():
    assert (mask_to_logits(np.zeros((50, 80), bool)) == -MASK_LOGIT).all()
