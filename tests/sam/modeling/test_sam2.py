"""Our SAM 2 network against ``transformers.Sam2Model`` on the same random weights and the same
``pixel_values`` (its image processor needs torchvision; our preprocessing is tested apart)."""

from __future__ import annotations

import pytest
import torch
from sam2_checkpoints import HIERA_TINY_DIMS, random_hf_sam2

from sam.modeling.mask_decoder import DecoderImage
from sam.modeling.sam2 import Sam2, Sam2Config
from sam.modeling.sam2.mask_decoder import Sam2DecoderImage, high_res_blocks

ATOL = 1e-4
POINTS = [[512.0, 400.0], [200.0, 700.0], [800.0, 150.0]]


def ours_from(hf) -> Sam2:
    """Our model built from the HF model's config.json dict, with its weights."""
    model = Sam2(Sam2Config.from_dict(hf.config.to_dict())).eval()
    weights = dict(hf.state_dict())
    del weights["prompt_encoder.shared_embedding.positional_embedding"]  # a tied copy
    model.load_state_dict(weights, strict=True)
    return model


def prompts() -> dict[str, dict]:
    mask = torch.randn(1, 1, 256, 256, generator=torch.Generator().manual_seed(3)) * 4
    return {
        "one point": {"points": POINTS[:1], "labels": [1]},
        "negative points": {"points": POINTS, "labels": [1, 0, 0]},
        "box": {"box": [100.0, 200.0, 700.0, 900.0]},
        "box and points": {
            "box": [250.0, 250.0, 750.0, 750.0],
            "points": POINTS[:2],
            "labels": [1, 0],
        },
        "mask input": {"points": POINTS[:2], "labels": [1, 1], "mask": mask},
        "mask alone": {"mask": mask},
    }


def run_both(hf, ours: Sam2, hf_features, features, prompt: dict, multimask: bool):
    points = None if "points" not in prompt else torch.tensor([prompt["points"]])
    labels = None if "labels" not in prompt else torch.tensor([prompt["labels"]])
    box = None if "box" not in prompt else torch.tensor([prompt["box"]])
    mask = prompt.get("mask")
    with torch.no_grad():
        ref = hf(
            image_embeddings=hf_features,
            input_points=None if points is None else points[None],
            input_labels=None if labels is None else labels[None],
            input_boxes=None if box is None else box[None],
            input_masks=mask,
            multimask_output=multimask,
        )
        got = ours.decode(features, points, labels, box, mask, multimask, object_score=True)
    return got, (ref.pred_masks[0], ref.iou_scores[0], ref.object_score_logits[0])


def assert_close(got, ref) -> None:
    (masks, iou, score), (ref_masks, ref_iou, ref_score) = got, ref
    assert masks.shape == ref_masks.shape and iou.shape == ref_iou.shape
    torch.testing.assert_close(iou, ref_iou, atol=ATOL, rtol=0)
    torch.testing.assert_close(score, ref_score, atol=ATOL, rtol=0)
    torch.testing.assert_close(masks, ref_masks, atol=ATOL, rtol=0)
    assert ((masks > 0) == (ref_masks > 0)).float().mean() >= 0.999


@pytest.fixture(scope="module")
def encoded(tiny_hf_sam2):
    ours = ours_from(tiny_hf_sam2)
    pixels = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        return ours, ours.encode_image(pixels), tiny_hf_sam2.get_image_embeddings(pixels)


def test_feature_maps_match_transformers(encoded):
    _, features, hf_features = encoded
    assert [tuple(f.shape) for f in features] == [
        (1, 8, 256, 256),
        (1, 16, 128, 128),
        (1, 64, 64, 64),
    ]
    for got, ref in zip(features, hf_features, strict=True):
        torch.testing.assert_close(got, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("multimask", [True, False])
@pytest.mark.parametrize("name", list(prompts()))
def test_prompts_match_transformers(tiny_hf_sam2, encoded, name, multimask):
    ours, features, hf_features = encoded
    got, ref = run_both(tiny_hf_sam2, ours, hf_features, features, prompts()[name], multimask)
    assert got[0].shape[1] == (3 if multimask else 1)
    assert_close(got, ref)


def test_single_mask_falls_back_to_the_best_candidate_when_unstable(encoded):
    """dynamic_multimask_via_stability: with the threshold out of reach, the single output is
    the multimask candidate with the highest IoU; at 0 it is the single-mask token's."""
    ours, features, _ = encoded
    prompt = (torch.tensor([POINTS[:1]]), torch.tensor([[1]]))
    with torch.no_grad():
        multi, multi_iou = ours.decode(features, *prompt, multimask_output=True)
        for thresh, expect_best in ((1.01, True), (0.0, False)):
            config = ours.mask_decoder.config
            ours.mask_decoder.config = type(config)(
                **{**config.__dict__, "dynamic_multimask_stability_thresh": thresh}
            )
            try:
                single, single_iou = ours.decode(features, *prompt, multimask_output=False)
            finally:
                ours.mask_decoder.config = config
            best = int(multi_iou[0].argmax())
            if expect_best:
                torch.testing.assert_close(single[0, 0], multi[0, best])
                assert float(single_iou[0, 0]) == float(multi_iou[0, best])
            else:
                assert not torch.equal(single[0, 0], multi[0, best])


def test_forward_runs_image_and_prompts(encoded):
    ours, features, _ = encoded
    pixels = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        masks, iou, score = ours(pixels, torch.tensor([POINTS[:1]]), torch.tensor([[1]]))
        ref = ours.decode(
            features, torch.tensor([POINTS[:1]]), torch.tensor([[1]]), object_score=True
        )
    for got, want in zip((masks, iou, score), ref, strict=True):
        torch.testing.assert_close(got, want)


def test_training_path_matches_inference_and_backpropagates(tiny_hf_sam2):
    """The encoder's inference shortcuts (the neck's 1x1 convolutions as linear layers, the
    in-place MLP residual, the unpadded windowed blocks run a chunk of windows at a time: 4
    chunks in stage 1 here) compute what it computes under autograd, where gradients reach
    every weight."""
    ours = ours_from(tiny_hf_sam2)
    pixels = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        fast = ours.vision_encoder(pixels)
    trained = ours.vision_encoder(pixels)
    for got, want in zip(trained, fast, strict=True):
        torch.testing.assert_close(got.detach(), want, atol=ATOL, rtol=0)
    sum(f.square().mean() for f in trained).backward()
    missing = [n for n, p in ours.vision_encoder.named_parameters() if p.grad is None]
    assert not missing
    assert all(p.grad.isfinite().all() for p in ours.vision_encoder.parameters())


def test_decoder_training_path_matches_inference_and_backpropagates(encoded):
    """The decoder's upscaling shortcut (transposed convolutions as oneDNN matmuls in 2x2-block
    order, the high-resolution maps read in that order) equals its autograd path, for a batch of
    prompts on one image, and gradients reach the upscaling weights and the high-res maps."""
    ours, features, _ = encoded
    points = torch.tensor([POINTS[:2], POINTS[1:]])
    labels = torch.tensor([[1, 0], [1, 1]])
    with torch.inference_mode():
        fast = ours.decode(features, points, labels, object_score=True)
    high_res = [f.clone().requires_grad_() for f in features[:2]]
    trained = ours.decode((*high_res, features[2]), points, labels, object_score=True)
    for got, want in zip(trained, fast, strict=True):
        torch.testing.assert_close(got.detach(), want, atol=ATOL, rtol=0)
    ours.zero_grad()
    trained[0].square().mean().backward()
    decoder = ours.mask_decoder
    for module in (decoder.upscale_conv1, decoder.upscale_conv2, decoder.upscale_layer_norm):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert all(f.grad.abs().sum() > 0 for f in high_res)


def test_high_res_blocks_hold_each_map_pixel_where_the_upscaling_reads_it():
    feat_s0 = torch.randn(2, 3, 16, 20)
    feat_s1 = torch.randn(2, 5, 8, 10)
    s0, s1 = high_res_blocks(feat_s0, feat_s1, (4, 5))
    assert s0.shape == (2, 4, 5, 2, 2, 2, 2, 3) and s0.is_contiguous()
    assert s1.shape == (2, 4, 5, 2, 2, 5) and s1.is_contiguous()
    for b, i, j, di, dj, ei, ej in [
        (0, 0, 0, 0, 0, 0, 0),
        (1, 3, 4, 1, 0, 1, 1),
        (1, 2, 1, 0, 1, 1, 0),
    ]:
        assert torch.equal(s1[b, i, j, di, dj], feat_s1[b, :, 2 * i + di, 2 * j + dj])
        y, x = 4 * i + 2 * di + ei, 4 * j + 2 * dj + ej
        assert torch.equal(s0[b, i, j, di, dj, ei, ej], feat_s0[b, :, y, x])


def test_prepared_image_keeps_the_high_res_maps_and_decodes_as_the_raw_maps(encoded):
    """The per-image work keeps the high-resolution maps in block order (one copy per image
    instead of a strided read per click); masks are the same as read from the raw maps."""
    ours, features, _ = encoded
    key_pe = ours.key_pe()
    with torch.inference_mode():
        prepared = ours.prepare_image(features, key_pe)
        assert isinstance(prepared, Sam2DecoderImage) and prepared.high_res is not None
        plain = DecoderImage(prepared.keys, prepared.first_key_value, prepared.size)
        points, labels = torch.tensor([POINTS[:2]]), torch.tensor([[1, 0]])
        sparse, _, _ = ours.decoder_inputs(features, points, labels, None, None, key_pe, prepared)
        high_res = (features[0], features[1])
        got = ours.mask_decoder(prepared, key_pe, sparse, True, high_res)
        want = ours.mask_decoder(plain, key_pe, sparse, True, high_res)
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.slow
def test_hiera_tiny_dims_match_transformers():
    hf = random_hf_sam2(HIERA_TINY_DIMS, seed=4)
    ours = ours_from(hf)
    pixels = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        features, hf_features = ours.encode_image(pixels), hf.get_image_embeddings(pixels)
    for got, ref in zip(features, hf_features, strict=True):
        torch.testing.assert_close(got, ref, atol=ATOL, rtol=0)
    for prompt in prompts().values():
        for multimask in (True, False):
            assert_close(*run_both(hf, ours, hf_features, features, prompt, multimask))
