"""Random-weight SAM 2 checkpoints in the real file formats, with transformers as the source.

Each checkpoint is a ``transformers.Sam2Model`` whose every tensor is randomised (HF initialises
positional embeddings and many biases to zero, which would hide a mis-mapped tensor), saved with
``save_pretrained`` or renamed to Meta's ``sam2`` keys and saved as a ``.pt``. The key mapping
to Meta's names is written independently of ``sam.checkpoint`` on purpose.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from checkpoints import randomise

# Every dimension distinct where it can be, so a swapped one fails; Hiera-Tiny's block layout
# (1, 2, 7, 2) and global blocks, so a Meta .pt of it is recognised from its shapes.
TINY_SAM2_DIMS: dict[str, Any] = {
    "backbone": {
        "hidden_size": 16,
        "embed_dim_per_stage": [16, 32, 48, 64],
        "num_attention_heads_per_stage": [1, 2, 4, 8],
        "blocks_per_stage": [1, 2, 7, 2],
        "global_attention_blocks": [5, 7, 9],
        "window_size_per_stage": [8, 4, 14, 7],
    },
    "fpn_hidden_size": 64,
    "mask_decoder": {"mlp_dim": 96, "iou_head_hidden_dim": 40},
}

# SAM 2.1 Hiera-Tiny as released (facebook/sam2.1-hiera-tiny).
HIERA_TINY_DIMS: dict[str, Any] = {
    "backbone": {},
    "fpn_hidden_size": 256,
    "mask_decoder": {},
}


def random_hf_sam2(dims: dict[str, Any], seed: int = 0):
    """A ``transformers.Sam2Model`` with every tensor randomised (eval mode, fp32)."""
    from transformers import Sam2Config, Sam2Model

    backbone = {"model_type": "sam2_hiera_det_model", **dims["backbone"]}
    channels = list(reversed(backbone.get("embed_dim_per_stage", [96, 192, 384, 768])))
    hidden = dims["fpn_hidden_size"]
    config = Sam2Config(
        vision_config={
            "backbone_config": backbone,
            "backbone_channel_list": channels,
            "fpn_hidden_size": hidden,
        },
        prompt_encoder_config={"hidden_size": hidden},
        mask_decoder_config={"hidden_size": hidden, **dims["mask_decoder"]},
    )
    torch.manual_seed(seed)
    model = Sam2Model(config).eval()
    return randomise(
        model, seed, _sam2_scale, unit_buffers=["shared_image_embedding.positional_embedding"]
    )


def _sam2_scale(name: str, p: torch.Tensor) -> tuple[float, float]:
    """(std, mean) of SAM 2 parameter ``name``."""
    last = name.split(".")[-2] if "." in name else name
    if "layer_norm" in name:
        return 0.1, 1.0 if name.endswith("weight") else 0.0
    if name.endswith("bias"):
        return 0.02, 0.0
    if "pos_embed" in name or last in ("no_memory_embedding",):
        return 0.1, 0.0
    if re.search(r"(token|embed)\.weight$", name) or name == "no_memory_embedding":
        return 1.0, 0.0
    return p[0].numel() ** -0.5, 0.0  # linear and conv weights: unit-variance outputs


def save_hf_sam2(model, folder: Path) -> Path:
    """``save_pretrained`` plus the ``preprocessor_config.json`` SAM 2 hub repos have."""
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    processor = {
        "image_processor_type": "Sam2ImageProcessorFast",
        "size": {"height": 1024, "width": 1024},
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "mask_size": {"height": 256, "width": 256},
    }
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    return folder


_HF_TO_META = [
    (
        r"^vision_encoder\.backbone\.patch_embed\.projection\.",
        "image_encoder.trunk.patch_embed.proj.",
    ),
    (
        r"^vision_encoder\.backbone\.blocks\.(\d+)\.layer_norm(\d)\.",
        r"image_encoder.trunk.blocks.\1.norm\2.",
    ),
    (
        r"^vision_encoder\.backbone\.blocks\.(\d+)\.mlp\.proj_in\.",
        r"image_encoder.trunk.blocks.\1.mlp.layers.0.",
    ),
    (
        r"^vision_encoder\.backbone\.blocks\.(\d+)\.mlp\.proj_out\.",
        r"image_encoder.trunk.blocks.\1.mlp.layers.1.",
    ),
    (r"^vision_encoder\.backbone\.", "image_encoder.trunk."),
    (r"^vision_encoder\.neck\.convs\.(\d+)\.", r"image_encoder.neck.convs.\1.conv."),
    (
        r"^shared_image_embedding\.positional_embedding$",
        "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
    ),
    (r"^prompt_encoder\.mask_embed\.conv1\.", "sam_prompt_encoder.mask_downscaling.0."),
    (r"^prompt_encoder\.mask_embed\.layer_norm1\.", "sam_prompt_encoder.mask_downscaling.1."),
    (r"^prompt_encoder\.mask_embed\.conv2\.", "sam_prompt_encoder.mask_downscaling.3."),
    (r"^prompt_encoder\.mask_embed\.layer_norm2\.", "sam_prompt_encoder.mask_downscaling.4."),
    (r"^prompt_encoder\.mask_embed\.conv3\.", "sam_prompt_encoder.mask_downscaling.6."),
    (r"^prompt_encoder\.", "sam_prompt_encoder."),
    (r"\.o_proj\.", ".out_proj."),
    (r"\.layer_norm_final_attn\.", ".norm_final_attn."),
    (r"^(mask_decoder\.transformer\.layers\.\d+)\.layer_norm(\d)\.", r"\1.norm\2."),
    (r"^(mask_decoder\.transformer\.layers\.\d+)\.mlp\.proj_in\.", r"\1.mlp.layers.0."),
    (r"^(mask_decoder\.transformer\.layers\.\d+)\.mlp\.proj_out\.", r"\1.mlp.layers.1."),
    (r"^mask_decoder\.upscale_conv1\.", "mask_decoder.output_upscaling.0."),
    (r"^mask_decoder\.upscale_layer_norm\.", "mask_decoder.output_upscaling.1."),
    (r"^mask_decoder\.upscale_conv2\.", "mask_decoder.output_upscaling.3."),
    (r"^mask_decoder\.", "sam_mask_decoder."),
    (r"^no_memory_embedding$", "no_mem_embed"),
]
_HEAD = re.compile(
    r"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head)\."
    r"(proj_in|proj_out|layers\.(\d+))\.(.+)$"
)


def hf_to_meta_sam2(model) -> dict[str, torch.Tensor]:
    """The model's weights under Meta ``sam2`` names, plus a few of the video-only tensors a
    released ``sam2.1_hiera_*.pt`` also holds (the image model must ignore them)."""
    out: dict[str, torch.Tensor] = {}
    iou_depth = model.config.mask_decoder_config.iou_head_depth
    for key, tensor in model.state_dict().items():
        if key == "prompt_encoder.shared_embedding.positional_embedding":
            continue
        if key == "prompt_encoder.point_embed.weight":
            for i, row in enumerate(tensor):
                out[f"sam_prompt_encoder.point_embeddings.{i}.weight"] = row[None].clone()
            continue
        m = _HEAD.match(key)
        if m:
            depth = iou_depth if m.group(1) == "iou_prediction_head" else 3
            idx = (
                0
                if m.group(2) == "proj_in"
                else depth - 1
                if m.group(2) == "proj_out"
                else int(m.group(3)) + 1
            )
            out[f"sam_mask_decoder.{m.group(1)}.layers.{idx}.{m.group(4)}"] = tensor.clone()
            continue
        for pattern, repl in _HF_TO_META:
            key = re.sub(pattern, repl, key)
        out[key] = tensor.clone()
    hidden = model.config.vision_config.fpn_hidden_size
    out["no_mem_pos_enc"] = torch.zeros(1, 1, hidden)
    out["maskmem_tpos_enc"] = torch.zeros(7, 1, 1, 64)
    out["memory_attention.layers.0.self_attn.q_proj.weight"] = torch.zeros(hidden, hidden)
    out["obj_ptr_proj.layers.0.weight"] = torch.zeros(hidden, hidden)
    out["no_obj_embed_spatial"] = torch.zeros(1, 64)
    return out


def save_meta_sam2(model, path: Path) -> Path:
    """As Meta releases them: ``{"model": state_dict}`` saved with ``torch.save``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": hf_to_meta_sam2(model)}, path)
    return path
