"""Pure coordinate and mask transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sam.transforms import (
    normalize_and_pad,
    resize_longest_side,
    resized_shape,
    scale_boxes,
    scale_coords,
    upscale_logits,
)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1200, 1800), (683, 1024)),
        ((1800, 1200), (1024, 683)),
        ((1024, 1024), (1024, 1024)),
        ((1, 5000), (1, 1024)),
        ((3, 2), (1024, 683)),
        ((534, 800), (684, 1024)),
    ],
)
def test_resized_shape_rounds_half_up(size, expected):
    assert resized_shape(*size) == expected


def test_resize_keeps_uint8_and_aspect():
    image = np.random.default_rng(0).integers(0, 256, (300, 450, 3), dtype=np.uint8)
    out = resize_longest_side(image)
    assert out.shape == (683, 1024, 3) and out.dtype == np.uint8


def test_normalize_and_pad_pads_bottom_right_with_zeros():
    image = np.full((10, 20, 3), 255, dtype=np.uint8)
    x = normalize_and_pad(image, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), pad_size=32)
    assert x.shape == (1, 3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x[0, :, :10, :20], torch.full((3, 10, 20), 2.0))
    assert x[0, :, 10:, :].abs().sum() == 0 and x[0, :, :, 20:].abs().sum() == 0


def test_scale_coords_and_boxes():
    coords = np.array([[0.0, 0.0], [1800.0, 1200.0], [900.0, 600.0]])
    np.testing.assert_allclose(
        scale_coords(coords, (1200, 1800)), [[0, 0], [1024, 683], [512, 341.5]]
    )
    np.testing.assert_allclose(
        scale_boxes(np.array([0, 0, 1800, 1200]), (1200, 1800)), [0, 0, 1024, 683]
    )
    assert coords[1, 0] == 1800.0, "input must not be modified"


def test_upscale_logits_crops_padding_and_restores_size():
    # A logit map that is positive only in the region covering the real (unpadded) image.
    low = torch.full((1, 1, 256, 256), -10.0)
    low[..., :171, :] = 10.0  # 683/1024 of 256 rows hold the image
    out = upscale_logits(low, (683, 1024), (1200, 1800))
    assert out.shape == (1, 1, 1200, 1800)
    assert (out > 0).float().mean() > 0.99
