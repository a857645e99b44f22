"""Tensor-name work that SAM's and SAM 2's checkpoint readers share: unwrapping, the tied
positional embedding, Meta's MLP heads, and the mask decoder's dimensions read from shapes.

Both families name their mask decoders alike in Hugging Face checkpoints (``mask_decoder.``), so
one reading serves :mod:`sam.checkpoint` and :mod:`sam.sam2_checkpoint`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch

#: Where HF keeps the prompt encoder's Gaussian matrix, and where older HF files tie a copy.
PE_KEY = "shared_image_embedding.positional_embedding"
TIED_PE_KEY = "prompt_encoder.shared_embedding.positional_embedding"


def unwrap(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict without the ``module.`` prefix DataParallel training puts on every key."""
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def untie_positional_embedding(sd: dict[str, torch.Tensor]) -> None:
    """Move the tied copy of the positional embedding to :data:`PE_KEY` (in place) unless the
    file has that key too."""
    tied = sd.pop(TIED_PE_KEY, None)
    if tied is not None:
        sd.setdefault(PE_KEY, tied)


def count_indexed(keys: Iterable[str], pattern: str) -> int:
    """How many numbered modules ``pattern``'s group 1 finds among ``keys`` (highest index + 1)."""
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in keys if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def meta_key_names(
    keys: Iterable[str], rules: list[tuple[re.Pattern[str], str]], head: re.Pattern[str]
) -> dict[str, str]:
    """HF names of Meta tensor names: ``rules`` applied in turn, except for the tensors of
    Meta's ``MLP`` heads.

    ``head`` matches a head's tensor with groups (head, layer index, rest); Meta numbers the
    layers ``layers.0 .. n-1`` where HF has ``proj_in``, ``layers.0 .. n-3`` and ``proj_out``.
    """
    keys = list(keys)
    matches = {key: m for key in keys if (m := head.match(key))}
    depth: dict[str, int] = {}
    for m in matches.values():
        depth[m.group(1)] = max(depth.get(m.group(1), 0), int(m.group(2)) + 1)
    names = {}
    for key in keys:
        if m := matches.get(key):
            idx, last = int(m.group(2)), depth[m.group(1)] - 1
            layer = "proj_in" if idx == 0 else "proj_out" if idx == last else f"layers.{idx - 1}"
            names[key] = f"mask_decoder.{m.group(1)}.{layer}.{m.group(3)}"
            continue
        name = key
        for pattern, replacement in rules:
            name = pattern.sub(replacement, name)
        names[key] = name
    return names


def mask_decoder_dims(sd: dict[str, torch.Tensor], mlp_in: str) -> dict[str, Any]:
    """The mask-decoder config fields that tensor shapes show (HF key names), as keyword
    arguments. ``mlp_in``: the name of the two-way blocks' first MLP layer (``lin1`` in SAM,
    ``proj_in`` in SAM 2). Raises ``KeyError`` naming a missing tensor."""
    # HF's heads hold proj_in, layers.0 .. n-3 and proj_out: depth n is the layers plus 2.
    iou_head_layers = count_indexed(sd, r"^mask_decoder\.iou_prediction_head\.layers\.(\d+)\.")
    return {
        "hidden_size": sd["mask_decoder.iou_token.weight"].shape[1],
        "mlp_dim": sd[f"mask_decoder.transformer.layers.0.mlp.{mlp_in}.weight"].shape[0],
        "num_hidden_layers": count_indexed(sd, r"^mask_decoder\.transformer\.layers\.(\d+)\."),
        "num_multimask_outputs": sd["mask_decoder.mask_tokens.weight"].shape[0] - 1,
        "iou_head_depth": iou_head_layers + 2,
        "iou_head_hidden_dim": sd["mask_decoder.iou_prediction_head.proj_in.weight"].shape[0],
    }
