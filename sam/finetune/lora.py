"""Low-rank adapters (LoRA) on the image encoder's attention projections, merged into the
weights when saved.

Each adapted ``nn.Linear`` (every attention block's ``qkv`` and ``proj``) gets a weight
parametrisation ``W + (up @ down) * alpha / rank``: the encoder reads ``.weight`` as before, so
its fused attention code runs unchanged, and the saved weight is the parametrisation's value.
``up`` starts at zero, so an adapted model starts equal to the original.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

#: Attention projections adapted in each encoder block.
ADAPTED = ("attn.qkv", "attn.proj")
RANK = 4
ALPHA = 4.0


class LowRankDelta(nn.Module):
    """``weight (out, in)`` -> ``weight + up (out, r) @ down (r, in) * alpha / r``."""

    def __init__(self, weight: torch.Tensor, rank: int = RANK, alpha: float = ALPHA) -> None:
        super().__init__()
        out_features, in_features = weight.shape
        self.down = nn.Parameter(weight.new_empty(rank, in_features))
        nn.init.kaiming_uniform_(self.down, a=math.sqrt(5))  # as nn.Linear and the LoRA paper
        self.up = nn.Parameter(weight.new_zeros(out_features, rank))
        self.scale = alpha / rank

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.up @ self.down) * self.scale


def add_adapters(encoder: nn.Module, rank: int = RANK) -> list[nn.Parameter]:
    """Adapt every attention ``qkv`` and ``proj`` of ``encoder`` in place; the base weights
    stop requiring gradients. Returns the adapters' parameters."""
    params: list[nn.Parameter] = []
    for name, module in list(encoder.named_modules()):
        if isinstance(module, nn.Linear) and name.endswith(ADAPTED):
            module.weight.requires_grad_(False)
            delta = LowRankDelta(module.weight.detach(), rank)
            parametrize.register_parametrization(module, "weight", delta)
            params += [delta.down, delta.up]
    return params


def is_adapter_parameter(name: str) -> bool:
    """Whether a ``named_parameters`` name is an adapter's (not the frozen base weight)."""
    return ".parametrizations.weight." in name and not name.endswith(".original")


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """``model``'s state dict with every adapter folded into its weight, under the plain
    module's keys (what checkpoints hold); a model without adapters gives its state dict."""
    state = {k: v for k, v in model.state_dict().items() if ".parametrizations." not in k}
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            state[f"{name}.weight"] = module.weight.detach()
    return state
