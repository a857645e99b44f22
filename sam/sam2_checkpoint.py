"""SAM 2 / 2.1 weights: recognising them, renaming Meta's ``sam2`` keys to Hugging Face's, and
deriving the config from tensor shapes when a file comes without ``config.json``.

:func:`sam.checkpoint.load_model` finds and reads the files for both families and calls into
here for SAM 2. Video-only tensors (memory attention and encoder, object pointers, ...) are
dropped: the image model does not use them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import NamedTuple

import torch

from . import checkpoint_keys
from .errors import CheckpointError
from .modeling.sam2 import (
    HieraConfig,
    Sam2Config,
    Sam2MaskDecoderConfig,
    Sam2PromptEncoderConfig,
    Sam2VisionConfig,
)

#: Top-level HF key prefixes of the image model; everything else in a SAM 2 checkpoint is video.
_IMAGE_PREFIXES = (
    "vision_encoder.",
    "prompt_encoder.",
    "mask_decoder.",
    "shared_image_embedding.",
    "no_memory_embedding",
)


class HieraSize(NamedTuple):
    """What a released Hiera's tensor shapes do not show, keyed by its blocks per stage."""

    name: str
    first_stage_heads: int
    global_attention_blocks: tuple[int, ...]
    window_size_per_stage: tuple[int, ...]


# Meta's sam2.1_hiera_{t,s,b+,l}.yaml (the same for SAM 2.0).
HIERA_SIZES: dict[tuple[int, ...], HieraSize] = {
    (1, 2, 7, 2): HieraSize("tiny", 1, (5, 7, 9), (8, 4, 14, 7)),
    (1, 2, 11, 2): HieraSize("small", 1, (7, 10, 13), (8, 4, 14, 7)),
    (2, 3, 16, 3): HieraSize("base-plus", 2, (12, 16, 20), (8, 4, 14, 7)),
    (2, 6, 36, 4): HieraSize("large", 2, (23, 33, 43), (8, 4, 16, 8)),
}


def size_name(backbone: HieraConfig) -> str:
    """``tiny``, ``small``, ``base-plus`` or ``large`` for a released layout, else ``custom``."""
    known = HIERA_SIZES.get(tuple(backbone.blocks_per_stage))
    return known.name if known else "custom"


def family_name(source: str, backbone: HieraConfig, meta_keys: Iterable[str] = ()) -> str:
    """``sam2.1-hiera-tiny`` and so on: the version from the source's name (or, for Meta files,
    the ``no_obj_embed_spatial`` tensor only 2.1 has), the size from the block layout."""
    version = "sam2"
    if re.search(r"sam2[._]1", source) or "no_obj_embed_spatial" in meta_keys:
        version = "sam2.1"
    return f"{version}-hiera-{size_name(backbone)}"


def is_sam2_state_dict(keys: Iterable[str]) -> bool:
    """Whether tensor names are SAM 2's (Meta's ``image_encoder.trunk.`` or HF's
    ``vision_encoder.backbone.``)."""
    return any(
        k.startswith(
            ("image_encoder.trunk.", "vision_encoder.backbone.", "module.image_encoder.trunk.")
        )
        for k in keys
    )


_META_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), r)
    for p, r in [
        (
            r"^image_encoder\.trunk\.patch_embed\.proj\.",
            "vision_encoder.backbone.patch_embed.projection.",
        ),
        (
            r"^image_encoder\.trunk\.blocks\.(\d+)\.norm(\d)\.",
            r"vision_encoder.backbone.blocks.\1.layer_norm\2.",
        ),
        (
            r"^image_encoder\.trunk\.blocks\.(\d+)\.mlp\.layers\.0\.",
            r"vision_encoder.backbone.blocks.\1.mlp.proj_in.",
        ),
        (
            r"^image_encoder\.trunk\.blocks\.(\d+)\.mlp\.layers\.1\.",
            r"vision_encoder.backbone.blocks.\1.mlp.proj_out.",
        ),
        (r"^image_encoder\.trunk\.", "vision_encoder.backbone."),
        (r"^image_encoder\.neck\.convs\.(\d+)\.conv\.", r"vision_encoder.neck.convs.\1."),
        (
            r"^sam_prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix$",
            checkpoint_keys.PE_KEY,
        ),
        (r"^sam_prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
        (r"^sam_prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
        (r"^sam_prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
        (r"^sam_prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
        (r"^sam_prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
        (r"^sam_prompt_encoder\.", "prompt_encoder."),
        (r"^sam_mask_decoder\.", "mask_decoder."),
        (r"^(mask_decoder\.transformer\.layers\.\d+)\.norm(\d)\.", r"\1.layer_norm\2."),
        (r"^(mask_decoder\.transformer\.layers\.\d+)\.mlp\.layers\.0\.", r"\1.mlp.proj_in."),
        (r"^(mask_decoder\.transformer\.layers\.\d+)\.mlp\.layers\.1\.", r"\1.mlp.proj_out."),
        (r"^(mask_decoder\.transformer\..*)\.out_proj\.", r"\1.o_proj."),
        (r"\.norm_final_attn\.", ".layer_norm_final_attn."),
        (r"^mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
        (r"^mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
        (r"^mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
        (r"^no_mem_embed$", "no_memory_embedding"),
    ]
]
_META_HEAD = re.compile(
    r"^sam_mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head|pred_obj_score_head)"
    r"\.layers\.(\d+)\.(.+)$"
)
_META_POINT = re.compile(r"^sam_prompt_encoder\.point_embeddings\.(\d+)\.weight$")


def meta_to_hf(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename Meta ``sam2`` keys to HF ``Sam2Model`` keys (image model only)."""
    names = checkpoint_keys.meta_key_names(sd, _META_RULES, _META_HEAD)
    out: dict[str, torch.Tensor] = {}
    points: dict[int, torch.Tensor] = {}
    for key, tensor in sd.items():
        if m := _META_POINT.match(key):
            points[int(m.group(1))] = tensor.reshape(-1)
        else:
            out[names[key]] = tensor
    if points:
        out["prompt_encoder.point_embed.weight"] = torch.stack([points[i] for i in sorted(points)])
    return out


def normalise_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """HF image-model keys from a Meta or HF (image or video) SAM 2 state dict."""
    sd = checkpoint_keys.unwrap(sd)
    if any(k.startswith("image_encoder.trunk.") for k in sd):
        sd = meta_to_hf(sd)
    checkpoint_keys.untie_positional_embedding(sd)
    return {k: v for k, v in sd.items() if k.startswith(_IMAGE_PREFIXES)}


def infer_config(sd: dict[str, torch.Tensor]) -> Sam2Config:
    """Derive a :class:`Sam2Config` from tensor shapes (HF key names).

    Widths, depths and the block layout show in the shapes; the attention heads, global blocks
    and window sizes do not, and come from the released size with that block layout.
    """
    try:
        bb = "vision_encoder.backbone."
        patch = sd[bb + "patch_embed.projection.weight"]
        depth = checkpoint_keys.count_indexed(sd, r"^vision_encoder\.backbone\.blocks\.(\d+)\.")
        starts = [0] + [i for i in range(1, depth) if f"{bb}blocks.{i}.proj.weight" in sd]
        blocks = tuple(b - a for a, b in zip(starts, [*starts[1:], depth], strict=True))
        dims = tuple(sd[f"{bb}blocks.{i}.attn.proj.weight"].shape[0] for i in starts)
        size = HIERA_SIZES.get(blocks)
        if size is None:
            raise CheckpointError(
                f"The SAM 2 checkpoint's Hiera has {list(blocks)} blocks per stage, which is none "
                "of the released sizes (tiny, small, base-plus, large), so its attention layout "
                "cannot be read from the weights alone. Use a Hugging Face folder with its "
                "config.json instead."
            )
        background = sd[bb + "pos_embed"].shape[-2:]
        backbone = HieraConfig(
            hidden_size=patch.shape[0],
            patch_kernel_size=(patch.shape[2], patch.shape[3]),
            window_positional_embedding_background_size=(background[0], background[1]),
            blocks_per_stage=blocks,
            embed_dim_per_stage=dims,
            num_attention_heads_per_stage=tuple(
                size.first_stage_heads * 2**i for i in range(len(blocks))
            ),
            window_size_per_stage=(
                sd[bb + "pos_embed_window"].shape[-1],
                *size.window_size_per_stage[1:],
            ),
            global_attention_blocks=size.global_attention_blocks,
        )
        n_convs = checkpoint_keys.count_indexed(sd, r"^vision_encoder\.neck\.convs\.(\d+)\.")
        convs = [sd[f"vision_encoder.neck.convs.{i}.weight"] for i in range(n_convs)]
        vision = Sam2VisionConfig(
            backbone_config=backbone,
            backbone_channel_list=tuple(c.shape[1] for c in convs),
            fpn_hidden_size=convs[0].shape[0],
            fpn_kernel_size=convs[0].shape[-1],
        )
        prompt = Sam2PromptEncoderConfig(
            hidden_size=sd["prompt_encoder.no_mask_embed.weight"].shape[1],
            mask_input_channels=sd["prompt_encoder.mask_embed.conv2.weight"].shape[0],
            num_point_embeddings=sd["prompt_encoder.point_embed.weight"].shape[0],
        )
        decoder = Sam2MaskDecoderConfig(**checkpoint_keys.mask_decoder_dims(sd, "proj_in"))
    except KeyError as exc:
        raise CheckpointError(
            f"The SAM 2 checkpoint lacks tensor {exc.args[0]!r}, so it is not a SAM 2 image "
            "model this app can read."
        ) from exc
    return Sam2Config(vision, prompt, decoder)
