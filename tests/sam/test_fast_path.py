"""The fast paths (bf16/fp16 image encoder, the CPU matmul attention, the rewritten decoder
pieces) against fp32, and how ``precision=auto`` chooses.

The accuracy bar for a fast path, on the same random-weight checkpoint and photo: the mask
that fp32 ranks best and the fast path's mask of the same candidate have IoU >= 0.98, and the
low-res logits are within 5 % relative error (L2) of fp32. Speed is measured by
``bench/bench_engine.py``, never here.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from checkpoints import VIT_B_DIMS, random_hf_sam, save_hf_checkpoint
from sam_cli import predict_args, run_cli

import sam.device as device_mod
import sam.modeling.image_encoder as encoder_mod
from sam import DeviceError, SamPredictor, load_model
from sam.device import auto_dtype, resolve_dtype
from sam.modeling.config import VisionConfig
from sam.modeling.image_encoder import (
    VisionEncoder,
    attention_with_rel_pos,
    relative_position_table,
)

MIN_IOU = 0.98
MAX_REL_ERR = 0.05
CPU = torch.device("cpu")
NATIVE_BF16 = device_mod.cpu_has_native_bf16()
needs_native_bf16 = pytest.mark.skipif(
    not NATIVE_BF16,
    reason="this CPU has no avx512_bf16/amx_bf16: bf16 is emulated and a full-size encode "
    "would take minutes (auto never picks it here)",
)


# -- how auto chooses ----------------------------------------------------------------------------


@pytest.fixture
def no_override(monkeypatch):
    """Let ``auto`` choose (the suite pins ``SAM_PRECISION=fp32`` in conftest)."""
    monkeypatch.delenv(device_mod.PRECISION_ENV, raising=False)


def fake_cpu(monkeypatch, flags: set[str]) -> None:
    monkeypatch.setattr(device_mod, "cpu_flags", lambda: frozenset(flags))


AVX2_ONLY = {"avx", "avx2", "fma", "f16c"}
ZEN4 = AVX2_ONLY | {"avx512f", "avx512bw", "avx512_bf16"}
SAPPHIRE_RAPIDS = ZEN4 | {"amx_tile", "amx_bf16", "avx512_fp16"}


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(AVX2_ONLY, torch.float32), (ZEN4, torch.bfloat16), (SAPPHIRE_RAPIDS, torch.bfloat16)],
    ids=["avx2-only", "avx512_bf16", "amx"],
)
def test_auto_picks_bf16_only_where_the_cpu_computes_it(
    monkeypatch, no_override, caplog, flags, expected
):
    fake_cpu(monkeypatch, flags)
    with caplog.at_level(logging.INFO, logger="sam.device"):
        assert resolve_dtype(None, CPU) == expected
        assert resolve_dtype("auto", CPU) == expected
    assert "precision=auto chose" in caplog.text
    assert ("emulated" in caplog.text) == (expected == torch.float32)


def test_auto_on_cuda(monkeypatch, no_override):
    cuda = torch.device("cuda")
    monkeypatch.setattr(device_mod, "cuda_has_bf16", lambda device: True)
    assert auto_dtype(cuda)[0] == torch.bfloat16
    monkeypatch.setattr(device_mod, "cuda_has_bf16", lambda device: False)
    assert auto_dtype(cuda)[0] == torch.float16


def test_explicit_precisions_and_the_override(monkeypatch, no_override, caplog):
    fake_cpu(monkeypatch, AVX2_ONLY)
    assert resolve_dtype("fp32", CPU) == torch.float32
    assert resolve_dtype(torch.float16, CPU) == torch.float16
    with caplog.at_level(logging.WARNING, logger="sam.device"):
        assert resolve_dtype("bf16", CPU) == torch.bfloat16  # asked for: honoured, but warned
    assert "emulated" in caplog.text
    with pytest.raises(DeviceError, match="Unknown precision"):
        resolve_dtype("int4", CPU)
    monkeypatch.setenv(device_mod.PRECISION_ENV, "fp32")
    fake_cpu(monkeypatch, ZEN4)
    assert resolve_dtype(None, CPU) == torch.float32
    assert resolve_dtype("bf16", CPU) == torch.bfloat16  # an explicit dtype wins
    monkeypatch.setenv(device_mod.PRECISION_ENV, "fast")
    with pytest.raises(DeviceError, match="SAM_PRECISION"):
        resolve_dtype(None, CPU)


@pytest.mark.parametrize(("flags", "expected"), [(AVX2_ONLY, "float32"), (ZEN4, "bfloat16")])
def test_load_model_auto_converts_the_encoder_once(
    monkeypatch, no_override, tiny_checkpoint, flags, expected
):
    fake_cpu(monkeypatch, flags)
    model = load_model(tiny_checkpoint, device="cpu").model
    assert str(model.dtype) == f"torch.{expected}"
    encoder = {p.dtype for p in model.vision_encoder.parameters()}
    rest = {p.dtype for n, p in model.named_parameters() if not n.startswith("vision_encoder.")}
    assert encoder == {getattr(torch, expected)}, "no fp32 copy of encoder weights may remain"
    assert rest == {torch.float32}, "prompt encoder and mask decoder stay fp32"


# -- attention kernels ---------------------------------------------------------------------------


def eager_attention(q, k, v, table_h, table_w, height, width):
    """SAM's reference: the full (tokens x tokens) scores plus the materialised bias."""
    batch, heads, tokens, dim = q.shape
    q_grid = q.reshape(batch, heads, height, width, dim)
    rel_h = torch.einsum("bnhwc,hkc->bnhwk", q_grid, table_h)
    rel_w = torch.einsum("bnhwc,wkc->bnhwk", q_grid, table_w)
    bias = (rel_h[..., :, None] + rel_w[..., None, :]).reshape(batch, heads, tokens, tokens)
    scores = (q * dim**-0.5) @ k.transpose(-1, -2) + bias
    return scores.softmax(-1) @ v


def attention_inputs(batch, heads, size, dim, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(batch, heads, size * size, dim, generator=gen) for _ in range(3))
    table_h = relative_position_table(size, torch.randn(2 * size - 1, dim, generator=gen) * 0.3)
    table_w = relative_position_table(size, torch.randn(2 * size - 1, dim, generator=gen) * 0.3)
    return [t.to(dtype) for t in (q, k, v, table_h, table_w)]


# Scores budgets: one query per block, blocks cutting through groups and rows, one block.
BLOCKINGS, BLOCKING_IDS = [1, 30_000, 2**30], ["one-query", "blocks", "one-block"]


@pytest.mark.parametrize(("batch", "size"), [(1, 16), (3, 7)], ids=["global", "windows"])
@pytest.mark.parametrize("kernel", ["matmuls", "sdpa"])
@pytest.mark.parametrize("chunk_bytes", BLOCKINGS, ids=BLOCKING_IDS)
@pytest.mark.parametrize("head_dim", [16, 14])
def test_fp32_attention_equals_eager(monkeypatch, batch, size, kernel, chunk_bytes, head_dim):
    """Both kernels (matmuls on the CPU, fused SDPA on CUDA, run here on the CPU), whatever the
    blocking: one query at a time, blocks cutting through groups, everything at once; head
    dims that are multiples of 16 and not (SlimSAM-77: 14)."""
    monkeypatch.setattr(encoder_mod, "_use_matmul_attention", lambda q: kernel == "matmuls")
    monkeypatch.setattr(encoder_mod, "_SCORES_CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(encoder_mod, "_BIAS_CHUNK_BYTES", chunk_bytes)
    q, k, v, th, tw = attention_inputs(batch, 4, size, head_dim)
    expected = eager_attention(q, k, v, th, tw, size, size)
    got = attention_with_rel_pos(q, k, v, th, tw, size, size)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("chunk_bytes", BLOCKINGS, ids=BLOCKING_IDS)
@pytest.mark.parametrize("fold_max_width", [0, 64], ids=["bias-written", "bias-folded"])
def test_low_precision_cpu_attention_is_close_to_fp32(
    monkeypatch, dtype, chunk_bytes, fold_max_width
):
    """Small tensors: cheap even where bf16 is emulated."""
    monkeypatch.setattr(encoder_mod, "_SCORES_CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(encoder_mod, "_FOLD_MAX_WIDTH", fold_max_width)
    inputs = attention_inputs(1, 4, 16, 16)
    expected = eager_attention(*inputs, 16, 16)
    got = attention_with_rel_pos(*[t.to(dtype) for t in inputs], 16, 16)
    assert got.dtype == dtype
    rel = ((got.float() - expected).norm() / expected.norm()).item()
    assert rel < 0.02, rel


def test_encoder_blocked_mlp_equals_whole(monkeypatch):
    """The MLP runs in place over blocks of tokens: blocks cutting through the grid's rows give
    the same embedding as one block."""
    config = VisionConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=256,
        mlp_dim=40,
        global_attn_indexes=(1,),
        output_channels=16,
    )
    torch.manual_seed(0)
    encoder = VisionEncoder(config).eval()
    with torch.no_grad():
        for p in encoder.parameters():
            p.normal_(0, 0.2)
    pixels = torch.randn(1, 3, 256, 256)
    results = []
    for chunk_bytes in (2**30, 7 * 40 * 4):  # all 256 tokens; 7 tokens a block
        monkeypatch.setattr(encoder_mod, "_MLP_CHUNK_BYTES", chunk_bytes)
        with torch.inference_mode():
            results.append(encoder(pixels))
    assert results[0].abs().mean() > 0.1
    torch.testing.assert_close(results[1], results[0], atol=1e-5, rtol=1e-5)


# -- whole-model agreement -----------------------------------------------------------------------


def prompts(image: np.ndarray) -> list[dict]:
    h, w = image.shape[:2]
    return [
        {"points": [[w * 0.5, h * 0.5]], "labels": [1], "multimask": True},
        {"points": [[w * 0.3, h * 0.6]], "labels": [1], "multimask": True},
        {"points": [[w * 0.4, h * 0.5], [w * 0.7, h * 0.3]], "labels": [1, 0], "multimask": False},
        {"box": [w * 0.1, h * 0.2, w * 0.6, h * 0.9], "multimask": False},
    ]


def decode(predictor: SamPredictor, prompt: dict):
    """Candidates in the decoder's own order, logits and full-size masks."""
    points = np.array([prompt["points"]]) if "points" in prompt else None
    labels = np.array([prompt["labels"]]) if "labels" in prompt else None
    box = np.array([prompt["box"]]) if "box" in prompt else None
    low_res, iou = predictor.decode_low_res(points, labels, box, None, prompt["multimask"])
    return low_res[0], iou[0], predictor.upscale(low_res)[0] > 0


def assert_agrees(fast: SamPredictor, ref: SamPredictor, image: np.ndarray) -> None:
    fast.set_image(image)
    ref.set_image(image)
    for prompt in prompts(image):
        low, _, masks = decode(fast, prompt)
        ref_low, ref_iou, ref_masks = decode(ref, prompt)
        best = int(ref_iou.argmax())
        a, b = masks[best], ref_masks[best]
        iou = ((a & b).sum() / (a | b).sum().clamp(min=1)).item()
        rel = ((low - ref_low).norm() / ref_low.norm()).item()
        assert iou >= MIN_IOU and rel <= MAX_REL_ERR, (prompt, iou, rel)


@pytest.fixture(scope="module")
def fp32_predictor(tiny_checkpoint):
    return SamPredictor(load_model(tiny_checkpoint, device="cpu", dtype="fp32"))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_tiny_fast_paths_meet_the_bar(tiny_checkpoint, fp32_predictor, photos, precision):
    """Tiny dims: quick even where bf16/fp16 are emulated."""
    fast = SamPredictor(load_model(tiny_checkpoint, device="cpu", dtype=precision))
    for name in ("dogs.jpg", "truck.jpg"):
        assert_agrees(fast, fp32_predictor, photos[name])
    assert fast.get_image_embedding().dtype == fast.model.dtype


def test_decoder_stays_fp32_and_outputs_keep_their_types(tiny_checkpoint, photos):
    predictor = SamPredictor(load_model(tiny_checkpoint, device="cpu", dtype="bf16"))
    predictor.set_image(photos["dog.jpg"])
    masks, scores, logits = predictor.predict(
        point_coords=np.array([[400, 260]]), point_labels=np.array([1])
    )
    assert masks.dtype == np.bool_ and masks.shape == (3, 534, 800)
    assert scores.dtype == np.float32 and logits.dtype == np.float32
    assert logits.shape == (3, 256, 256)
    assert np.all(np.diff(scores) <= 0)


@pytest.mark.slow
@needs_native_bf16
def test_vit_b_bf16_meets_the_bar(tmp_path, photos):
    folder = save_hf_checkpoint(random_hf_sam(VIT_B_DIMS, seed=2), tmp_path / "vit-b")
    ref = SamPredictor(load_model(folder, device="cpu", dtype="fp32"))
    fast = SamPredictor(load_model(folder, device="cpu", dtype="bf16"))
    assert_agrees(fast, ref, photos["dogs.jpg"])


# -- the CLI flag --------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["auto", "fp32", "bf16"])
def test_cli_precision_flag(tiny_checkpoint, example_photos, tmp_path, precision):
    out = tmp_path / "mask.png"
    env = {k: v for k, v in os.environ.items() if k != device_mod.PRECISION_ENV}
    flags = ("--point", "400", "260", "--device", "cpu", "--precision", precision)
    args = predict_args(tiny_checkpoint, example_photos / "dog.jpg", out, *flags)
    result = run_cli("-v", *args, env=env)
    assert result.returncode == 0, result.stderr
    assert out.is_file()
    if precision == "auto":
        assert "precision=auto chose" in result.stderr
    expected = {"auto": "bfloat16" if NATIVE_BF16 else "float32", "fp32": "float32"}
    expected["bf16"] = "bfloat16"
    assert f"({expected[precision]} encoder)" in result.stderr


def test_cli_rejects_an_unknown_precision(tiny_checkpoint, example_photos, tmp_path):
    flags = ("--point", "1", "1", "--precision", "int8")
    result = run_cli(
        *predict_args(tiny_checkpoint, example_photos / "dog.jpg", tmp_path / "m.png", *flags)
    )
    assert result.returncode == 2
    assert "--precision" in result.stderr


def test_app_precision_flag_reaches_load_model(tiny_checkpoint):
    import app
    from ui.models import ModelManager

    assert app.parse_args([]).precision == "auto"
    assert app.parse_args(["--precision", "bf16"]).precision == "bf16"
    with pytest.raises(SystemExit):
        app.parse_args(["--precision", "int8"])
    calls = []

    def loader(source, **kwargs):
        calls.append(kwargs)
        return load_model(source, **kwargs)

    for precision, expected in (("auto", torch.float32), ("fp16", torch.float16)):
        manager = ModelManager(
            str(tiny_checkpoint), device="cpu", precision=precision, loader=loader
        )
        assert manager.load().ok
        assert manager.predictor().model.dtype == expected  # conftest pins auto to fp32
    assert "dtype" not in calls[0] and calls[1]["dtype"] == "fp16"


@pytest.mark.parametrize(
    "size", [(1200, 1800), (1800, 1200), (534, 800), (1, 5000), (1024, 1024), (37, 41)]
)
def test_cropped_upscale_equals_upscale_then_crop(size):
    from sam.transforms import resized_shape, upscale_logits

    low = torch.randn(2, 3, 256, 256)
    input_size = resized_shape(*size)
    expected = F.interpolate(low, (1024, 1024), mode="bilinear", align_corners=False)
    expected = expected[..., : input_size[0], : input_size[1]]
    expected = F.interpolate(expected, size, mode="bilinear", align_corners=False)
    got = upscale_logits(low, input_size, size)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_decoder_pieces_equal_their_plain_forms(tiny_checkpoint):
    """The folded image-to-token attention and the matmul transposed convolutions."""
    from sam.modeling.mask_decoder import _transposed_conv_2x2

    model = load_model(tiny_checkpoint, device="cpu", dtype="fp32").model
    layer = model.mask_decoder.transformer.layers[0]
    gen = torch.Generator().manual_seed(0)
    image = torch.randn(2, 64, 64, generator=gen)
    tokens = torch.randn(2, 7, 64, generator=gen)
    attn = layer.cross_attn_image_to_token
    torch.testing.assert_close(
        attn.attend_to_few(image, tokens, tokens), attn(image, tokens, tokens), atol=1e-5, rtol=0
    )
    conv = model.mask_decoder.upscale_conv1
    x = torch.randn(2, 64, 5, 6, generator=gen)
    expected = conv(x).detach()
    pixels = x.permute(0, 2, 3, 1).reshape(-1, 64)
    for fused in (False, True):  # F.linear while gradients are on, oneDNN's linear without
        with torch.inference_mode(fused):
            rows = _transposed_conv_2x2(pixels, conv)
            with_gelu = _transposed_conv_2x2(pixels, conv, gelu=True)
        got = rows.view(2, 5, 6, 2, 2, -1).permute(0, 5, 1, 3, 2, 4).reshape(2, -1, 10, 12)
        torch.testing.assert_close(got.detach(), expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(with_gelu.detach(), F.gelu(rows.detach()), atol=1e-5, rtol=0)


def test_folded_token_to_image_attention_equals_plain(tiny_checkpoint):
    model = load_model(tiny_checkpoint, device="cpu", dtype="fp32").model
    attn = model.mask_decoder.transformer.final_attn_token_to_image
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randn(3, 7, 64, generator=gen)
    image = torch.randn(1, 50, 64, generator=gen)  # batch 1 image shared by 3 prompts
    values = torch.randn(1, 50, 64, generator=gen)
    torch.testing.assert_close(
        attn.attend_from_few(tokens, image, values),
        attn(tokens, image.expand(3, -1, -1), values.expand(3, -1, -1)),
        atol=1e-5,
        rtol=0,
    )
