"""SAM 2 configuration as frozen dataclasses read from Hugging Face ``config.json``.

Field names follow ``transformers``' ``Sam2Config`` (``model_type`` ``sam2``, and the
``sam2_video`` configs of the hub's ``facebook/sam2.1-hiera-*`` repos, which hold the same three
image sub-configs), so a checkpoint's ``config.json`` maps onto these classes without renames.
Unknown keys are ignored on read. Defaults are SAM 2.1 Hiera-Tiny.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..config import (
    JsonConfig,
    ModelConfig,
    PromptEncoderConfig,
    TwoWayDecoderConfig,
    _from_known_keys,
    image_processor_settings,
)

#: SAM 2's prompt encoder has SAM's fields and defaults.
Sam2PromptEncoderConfig = PromptEncoderConfig


def _pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    """An int or a ``(h, w)`` list from HF configs as ``(h, w)``."""
    if isinstance(value, int):
        return value, value
    return int(value[0]), int(value[1])


@dataclass(frozen=True)
class HieraConfig:
    """The Hiera backbone (HF ``Sam2HieraDetConfig``)."""

    hidden_size: int = 96
    num_channels: int = 3
    image_size: tuple[int, int] = (1024, 1024)
    patch_kernel_size: tuple[int, int] = (7, 7)
    patch_stride: tuple[int, int] = (4, 4)
    patch_padding: tuple[int, int] = (3, 3)
    query_stride: tuple[int, int] = (2, 2)
    window_positional_embedding_background_size: tuple[int, int] = (7, 7)
    num_query_pool_stages: int = 3
    blocks_per_stage: tuple[int, ...] = (1, 2, 7, 2)
    embed_dim_per_stage: tuple[int, ...] = (96, 192, 384, 768)
    num_attention_heads_per_stage: tuple[int, ...] = (1, 2, 4, 8)
    window_size_per_stage: tuple[int, ...] = (8, 4, 14, 7)
    global_attention_blocks: tuple[int, ...] = (5, 7, 9)
    mlp_ratio: float = 4.0
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6


@dataclass(frozen=True)
class Sam2VisionConfig:
    """Backbone plus FPN neck (HF ``Sam2VisionConfig``)."""

    backbone_config: HieraConfig = field(default_factory=HieraConfig)
    backbone_channel_list: tuple[int, ...] = (768, 384, 192, 96)
    backbone_feature_sizes: tuple[tuple[int, int], ...] = ((256, 256), (128, 128), (64, 64))
    fpn_hidden_size: int = 256
    fpn_kernel_size: int = 1
    fpn_stride: int = 1
    fpn_padding: int = 0
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    num_feature_levels: int = 3


@dataclass(frozen=True)
class Sam2MaskDecoderConfig(TwoWayDecoderConfig):
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    # SAM 2's two-way blocks use PyTorch's default LayerNorm eps (Meta's and HF's alike).
    layer_norm_eps: float = 1e-5


@dataclass(frozen=True)
class Sam2Config(ModelConfig):
    """The SAM 2 image model: Hiera + FPN, prompt encoder, mask decoder."""

    model_type = "sam2"
    architecture = "Sam2Model"

    vision_config: Sam2VisionConfig = field(default_factory=Sam2VisionConfig)
    prompt_encoder_config: Sam2PromptEncoderConfig = field(default_factory=Sam2PromptEncoderConfig)
    mask_decoder_config: Sam2MaskDecoderConfig = field(default_factory=Sam2MaskDecoderConfig)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sam2Config:
        vision = dict(data.get("vision_config") or {})
        backbone = _from_known_keys(HieraConfig, vision.pop("backbone_config", None) or {})
        backbone = dataclasses.replace(
            backbone,
            image_size=_pair(backbone.image_size),
            patch_kernel_size=_pair(backbone.patch_kernel_size),
            patch_stride=_pair(backbone.patch_stride),
            patch_padding=_pair(backbone.patch_padding),
            query_stride=_pair(backbone.query_stride),
            window_positional_embedding_background_size=_pair(
                backbone.window_positional_embedding_background_size
            ),
        )
        vision_config = _from_known_keys(Sam2VisionConfig, vision)
        sizes = tuple(_pair(s) for s in vision_config.backbone_feature_sizes)
        vision_config = dataclasses.replace(
            vision_config, backbone_config=backbone, backbone_feature_sizes=sizes
        )
        return cls(
            vision_config=vision_config,
            prompt_encoder_config=_from_known_keys(
                Sam2PromptEncoderConfig, data.get("prompt_encoder_config") or {}
            ),
            mask_decoder_config=_from_known_keys(
                Sam2MaskDecoderConfig, data.get("mask_decoder_config") or {}
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """The HF ``config.json`` layout (``transformers.Sam2Config`` reads it)."""
        out = super().to_dict()
        vision = out["vision_config"]
        vision["backbone_config"]["model_type"] = "sam2_hiera_det_model"
        vision["model_type"] = "sam2_vision_model"
        del out["mask_decoder_config"]["layer_norm_eps"]
        return out


@dataclass(frozen=True)
class Sam2PreprocessConfig(JsonConfig):
    """SAM 2's pixels: a square resize (aspect ratio not kept) and mean/std in 0-1 units."""

    image_size: int = 1024
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    mask_size: int = 256

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sam2PreprocessConfig:
        data, kwargs = image_processor_settings(data)
        size = data.get("size")
        if isinstance(size, dict) and size.get("height"):
            kwargs["image_size"] = int(size["height"])
        return cls(**kwargs)
