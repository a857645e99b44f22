"""Model configuration as frozen dataclasses that read and write Hugging Face ``config.json``.

Field names follow the keys of ``transformers``' ``SamConfig`` so that a checkpoint's
``config.json`` maps onto these classes without renames. Unknown keys (HF adds many generic
ones) are ignored on read. Every dimension is read from the config: pruned models such as
SlimSAM have MLP widths that are not a fixed ratio of the hidden size.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

T = TypeVar("T")
C = TypeVar("C", bound="JsonConfig")


def _from_known_keys(cls: type[T], data: dict[str, Any]) -> T:
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs = {k: v for k, v in data.items() if k in names and v is not None}
    for key, value in kwargs.items():
        if isinstance(value, list):
            kwargs[key] = tuple(value)
    return cls(**kwargs)


def plain(value: Any) -> Any:
    """A config dataclass as JSON-ready data: nested dicts, tuples as lists."""
    if dataclasses.is_dataclass(value):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    return value


class JsonConfig:
    """Reading a config class from a JSON file; the class reads the parsed dict in its
    ``from_dict`` classmethod."""

    @classmethod
    def from_json_file(cls: type[C], path: str | Path) -> C:
        with open(path, encoding="utf-8") as fh:
            return cls.from_dict(json.load(fh))  # type: ignore[attr-defined]


class ModelConfig(JsonConfig):
    """A whole model's config as in HF ``config.json``: ``model_type``, ``architectures``,
    then the dataclass fields (sub-configs as nested dicts)."""

    model_type: ClassVar[str]
    architecture: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return {"model_type": self.model_type, "architectures": [self.architecture], **plain(self)}

    def to_json_file(self, path: str | Path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            json.dump(self.to_dict(), fh, indent=2)


@dataclass(frozen=True)
class VisionConfig:
    """ViT image encoder. Defaults are ViT-B."""

    hidden_size: int = 768
    output_channels: int = 256
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int = 1024
    patch_size: int = 16
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6
    qkv_bias: bool = True
    mlp_ratio: float = 4.0
    use_abs_pos: bool = True
    use_rel_pos: bool = True
    window_size: int = 14
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    num_pos_feats: int = 128
    mlp_dim: int | None = None

    @property
    def intermediate_size(self) -> int:
        """Width of the MLP: ``mlp_dim`` when the checkpoint states it, else ratio × hidden."""
        return self.mlp_dim if self.mlp_dim is not None else int(self.hidden_size * self.mlp_ratio)

    @property
    def grid_size(self) -> int:
        """Side of the patch grid (64 for 1024-pixel inputs and 16-pixel patches)."""
        return self.image_size // self.patch_size

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass(frozen=True)
class PromptEncoderConfig:
    """The prompt encoder; SAM 2's has the same fields and defaults."""

    hidden_size: int = 256
    image_size: int = 1024
    patch_size: int = 16
    mask_input_channels: int = 16
    num_point_embeddings: int = 4
    hidden_act: str = "gelu"
    layer_norm_eps: float = 1e-6

    @property
    def image_embedding_size(self) -> int:
        return self.image_size // self.patch_size


@dataclass(frozen=True)
class TwoWayDecoderConfig:
    """The mask-decoder fields SAM's and SAM 2's configs share (same names and defaults)."""

    hidden_size: int = 256
    mlp_dim: int = 2048
    num_hidden_layers: int = 2
    num_attention_heads: int = 8
    attention_downsample_rate: int = 2
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256


@dataclass(frozen=True)
class MaskDecoderConfig(TwoWayDecoderConfig):
    hidden_act: str = "relu"
    layer_norm_eps: float = 1e-6


@dataclass(frozen=True)
class SamConfig(ModelConfig):
    """The whole model: vision encoder, prompt encoder and mask decoder."""

    model_type = "sam"
    architecture = "SamModel"
    vision_config: VisionConfig = field(default_factory=VisionConfig)
    prompt_encoder_config: PromptEncoderConfig = field(default_factory=PromptEncoderConfig)
    mask_decoder_config: MaskDecoderConfig = field(default_factory=MaskDecoderConfig)
    initializer_range: float = 0.02

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SamConfig:
        return cls(
            vision_config=_from_known_keys(VisionConfig, data.get("vision_config") or {}),
            prompt_encoder_config=_from_known_keys(
                PromptEncoderConfig, data.get("prompt_encoder_config") or {}
            ),
            mask_decoder_config=_from_known_keys(
                MaskDecoderConfig, data.get("mask_decoder_config") or {}
            ),
            initializer_range=data.get("initializer_range", 0.02),
        )

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["vision_config"]["mlp_dim"] = self.vision_config.intermediate_size
        return out


def image_processor_settings(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The image settings of a preprocessor config (transformers 5 writes
    processor_config.json with them nested) and the mean/std they give, as config kwargs."""
    if isinstance(data.get("image_processor"), dict):
        data = data["image_processor"]
    kwargs: dict[str, Any] = {}
    for key in ("image_mean", "image_std"):
        if data.get(key) is not None:
            kwargs[key] = tuple(float(v) for v in data[key])
    return data, kwargs


@dataclass(frozen=True)
class PreprocessConfig(JsonConfig):
    """How pixels are prepared: HF ``preprocessor_config.json`` (mean/std in 0-1 units)."""

    longest_edge: int = 1024
    pad_size: int = 1024
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    image_std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    mask_size: int = 256

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        data, kwargs = image_processor_settings(data)
        size = data.get("size")
        if isinstance(size, dict) and size.get("longest_edge"):
            kwargs["longest_edge"] = int(size["longest_edge"])
        pad = data.get("pad_size")
        if isinstance(pad, dict) and pad.get("height"):
            kwargs["pad_size"] = int(pad["height"])
        return cls(**kwargs)


VIT_PRESETS: dict[str, VisionConfig] = {
    "vit_b": VisionConfig(),
    "vit_l": VisionConfig(
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        global_attn_indexes=(5, 11, 17, 23),
    ),
    "vit_h": VisionConfig(
        hidden_size=1280,
        num_hidden_layers=32,
        num_attention_heads=16,
        global_attn_indexes=(7, 15, 23, 31),
    ),
}
