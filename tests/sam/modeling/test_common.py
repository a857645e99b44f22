"""sam.modeling.common.linear: the fused oneDNN path gives what F.linear (+ GELU) gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sam.modeling import common as layers
from sam.modeling.common import MLPBlock, linear


@pytest.fixture
def layer() -> nn.Linear:
    torch.manual_seed(0)
    return nn.Linear(48, 80)


def reference(x: torch.Tensor, layer: nn.Linear, gelu: bool) -> torch.Tensor:
    out = F.linear(x.double(), layer.weight.double(), layer.bias.double())
    return F.gelu(out) if gelu else out


@pytest.mark.parametrize("gelu", [False, True])
@pytest.mark.parametrize(
    "shape, strided", [((7, 48), False), ((2, 5, 6, 48), False), ((2, 6, 5, 48), True)]
)
def test_fp32_matches_nn_linear(layer, gelu, shape, strided):
    x = torch.randn(shape)
    if strided:  # a permuted view, as attention hands over
        x = x.transpose(1, 2)
    with torch.inference_mode():
        out = linear(x, layer.weight, layer.bias, gelu=gelu)
    assert out.shape == (*x.shape[:-1], 80) and out.dtype == torch.float32
    torch.testing.assert_close(out.double(), reference(x, layer, gelu), rtol=1e-5, atol=1e-5)


def test_without_bias(layer):
    no_bias = nn.Linear(48, 80, bias=False)
    x = torch.randn(9, 48)
    with torch.inference_mode():
        out = linear(x, no_bias.weight)
    torch.testing.assert_close(out, x @ no_bias.weight.T, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(
    not layers._onednn_linear(torch.bfloat16), reason="oneDNN has no native bf16 on this CPU"
)
@pytest.mark.parametrize("gelu", [False, True])
def test_bf16_within_bf16_rounding(layer, gelu):
    layer = layer.to(torch.bfloat16)
    x = torch.randn(64, 48).to(torch.bfloat16)
    with torch.inference_mode():
        out = linear(x, layer.weight, layer.bias, gelu=gelu)
    assert out.dtype == torch.bfloat16
    ref = reference(x, layer, gelu)
    # bf16 keeps 8 bits of mantissa: one rounding of the output, relative to its scale.
    assert (out.double() - ref).abs().max() <= 2**-7 * ref.abs().max()


def test_with_gradients_falls_back_to_autograd(layer):
    x = torch.randn(5, 48, requires_grad=True)
    out = linear(x, layer.weight, layer.bias, gelu=True)
    out.sum().backward()
    assert x.grad is not None and layer.weight.grad is not None
    torch.testing.assert_close(
        out.detach().double(), reference(x.detach(), layer, True), rtol=1e-5, atol=1e-5
    )


def test_fallback_gives_the_same_result(layer, monkeypatch):
    x = torch.randn(33, 48)
    with torch.inference_mode():
        fused = linear(x, layer.weight, layer.bias, gelu=True)
        monkeypatch.setattr(layers, "_onednn_linear", lambda dtype: False)
        plain = linear(x, layer.weight, layer.bias, gelu=True)
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("act", ["gelu", "relu"])
def test_mlp_block_matches_its_layers(act):
    torch.manual_seed(1)
    mlp = MLPBlock(32, 64, act)
    x = torch.randn(3, 10, 32)
    expected = mlp.lin2(mlp.act(mlp.lin1(x)))
    with torch.inference_mode():
        out = mlp(x)
    torch.testing.assert_close(out, expected.detach(), rtol=1e-5, atol=1e-5)


def test_a_torch_without_the_fused_op_falls_back(monkeypatch):
    def missing(*args, **kwargs):
        raise RuntimeError("No such operator mkldnn::_linear_pointwise")

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", missing)
    assert not layers._onednn_linear_available(torch.float32)
    assert not layers._onednn_linear_available(torch.bfloat16)


REPO = Path(__file__).resolve().parents[3]
PROBE_COUNT = """
import torch

calls = []
fused = torch.ops.mkldnn._linear_pointwise
torch.ops.mkldnn._linear_pointwise = lambda *a: calls.append(a) or fused(*a)
import sam.modeling
from sam import load_model, SamPredictor
from sam.modeling.common import linear

print(len(calls))
with torch.inference_mode():
    x, w = torch.ones(2, 3), torch.ones(4, 3)
    linear(x, w)
    after_first = len(calls)
    linear(x, w)
print(after_first, len(calls) - after_first)
"""


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="a PyTorch without oneDNN")
def test_importing_the_model_runs_no_probe():
    """The oneDNN probe runs kernels: it waits for the first linear layer, then runs once."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE_COUNT], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    at_import, after_first, after_second = (int(n) for n in out)
    assert at_import == 0
    # The probe's own call, plus the layer's call if the fused op is usable here.
    assert after_first >= 1
    assert after_second == (1 if after_first == 2 else 0)
