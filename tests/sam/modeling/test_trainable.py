"""The network trains: under autograd every parameter gets a gradient, and the differentiable
paths compute what the inference fast paths compute."""

from __future__ import annotations

import torch
from checkpoints import TINY_DIMS

from sam.modeling import Sam, SamConfig

# The tiny test model at a 256-pixel input (16x16 embedding grid), so a backward pass through
# the encoder takes a fraction of a second.
SMALL_INPUT = {
    "vision_config": {**TINY_DIMS["vision_config"], "image_size": 256, "window_size": 6},
    "prompt_encoder_config": {**TINY_DIMS["prompt_encoder_config"], "image_size": 256},
    "mask_decoder_config": TINY_DIMS["mask_decoder_config"],
}


def small_model() -> Sam:
    torch.manual_seed(0)
    model = Sam(SamConfig.from_dict(SMALL_INPUT))
    with torch.no_grad():
        for name, param in model.named_parameters():
            scale = 1.0 if "embed" in name else param[0].numel() ** -0.5
            param.normal_(0.0, scale if param.ndim > 1 else 0.1)
    return model


def test_backward_gives_every_parameter_a_finite_nonzero_gradient():
    model = small_model().train()
    pixels = torch.randn(2, 3, 256, 256)
    points = torch.tensor([[[100.0, 80.0], [20.0, 30.0]], [[200.0, 150.0], [60.0, 90.0]]])
    labels = torch.tensor([[1, 0], [1, 1]])
    boxes = torch.tensor([[10.0, 20.0, 180.0, 200.0], [30.0, 40.0, 250.0, 220.0]])
    mask_input = torch.randn(2, 1, 64, 64)
    with torch.enable_grad():
        multi, iou_multi = model(pixels, points, labels, boxes, mask_input, multimask_output=True)
        # The single-mask token is used without a box: the "not a point" padding token.
        single, iou_single = model(pixels, points, labels, None, None, multimask_output=False)
        loss = sum(t.square().mean() for t in (multi, iou_multi, single, iou_single))
        loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert missing == []
    bad = [
        n
        for n, p in model.named_parameters()
        if not torch.isfinite(p.grad).all() or not p.grad.abs().sum() > 0
    ]
    assert bad == []


def test_differentiable_encoder_computes_what_the_inference_path_computes():
    model = small_model().eval()
    pixels = torch.randn(1, 3, 256, 256)
    with torch.inference_mode():
        fast = model.encode_image(pixels)
    with torch.enable_grad():
        trained = model.encode_image(pixels.requires_grad_())
    assert trained.requires_grad
    torch.testing.assert_close(trained.detach(), fast, rtol=1e-4, atol=1e-4)
