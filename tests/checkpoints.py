"""Build random-weight SAM checkpoints in the real file formats, with transformers as the source.

No weights can be downloaded in tests, so each checkpoint is a ``transformers.SamModel`` with
random weights saved with ``save_pretrained`` (config.json + model.safetensors +
preprocessor_config.json), or the same weights renamed to Meta's ``segment_anything`` keys and
saved as a ``.pth``. Loading goes through ``sam.load_model`` exactly as a user's would.

``SamVisionConfig`` initialises with std 1e-10, which would make every embedding ~0 and parity
meaningless; here every tensor gets a scale that keeps activations alive (biases and LayerNorm
affine parameters included, so a mis-mapped tensor cannot hide behind a zero or one).
The inverse key mapping below is written independently of ``sam.checkpoint`` on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Small enough for fast unit tests, but every dimension distinct so a swapped dim fails.
TINY_DIMS: dict[str, dict[str, Any]] = {
    "vision_config": {
        "hidden_size": 48,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "output_channels": 64,
        "mlp_dim": 80,
        "global_attn_indexes": [1],
        "num_pos_feats": 32,
    },
    "prompt_encoder_config": {"hidden_size": 64, "mask_input_channels": 8},
    "mask_decoder_config": {
        "hidden_size": 64,
        "mlp_dim": 96,
        "num_attention_heads": 8,  # every SAM uses 8; Meta .pth files cannot state it
        "iou_head_hidden_dim": 40,
    },
}

VIT_B_DIMS: dict[str, dict[str, Any]] = {
    "vision_config": {},
    "prompt_encoder_config": {},
    "mask_decoder_config": {},
}

# SlimSAM-77: pruned widths that are not the usual ratios (12 heads of 14).
SLIMSAM_77_DIMS: dict[str, dict[str, Any]] = {
    "vision_config": {"hidden_size": 168, "mlp_dim": 696, "num_attention_heads": 12},
    "prompt_encoder_config": {},
    "mask_decoder_config": {},
}


_EMBEDDING_TABLES = re.compile(
    r"(point_embed\.\d+|not_a_point_embed|no_mask_embed|iou_token|mask_tokens)\.weight$"
)


def random_hf_sam(dims: dict[str, dict[str, Any]], seed: int = 0):
    """A ``transformers.SamModel`` with every parameter randomised (eval mode, fp32)."""
    from transformers import SamConfig, SamModel

    torch.manual_seed(seed)
    vision = {"initializer_range": 0.02, **dims["vision_config"]}
    config = SamConfig(
        vision_config=vision,
        prompt_encoder_config=dict(dims["prompt_encoder_config"]),
        mask_decoder_config=dict(dims["mask_decoder_config"]),
        initializer_range=0.02,
    )
    return randomise(SamModel(config).eval(), seed, _sam_scale)


def _sam_scale(name: str, p: torch.Tensor) -> tuple[float, float]:
    """(std, mean) of SAM parameter ``name``."""
    if name.endswith("positional_embedding"):
        return 1.0, 0.0  # Meta's Fourier matrix is unit Gaussian
    if "layer_norm" in name or "norm" in name.split(".")[-2]:
        return 0.1, 1.0 if name.endswith("weight") else 0.0
    if name.endswith("bias"):
        return 0.02, 0.0
    if "pos_embed" in name or "rel_pos" in name:
        return 0.1, 0.0
    if _EMBEDDING_TABLES.search(name):
        return 1.0, 0.0
    return p[0].numel() ** -0.5, 0.0  # linear and conv weights: unit-variance outputs


def randomise(
    model: Any,
    seed: int,
    scale: Callable[[str, torch.Tensor], tuple[float, float]],
    unit_buffers: Sequence[str] = (),
) -> Any:
    """Draw every parameter of a transformers SAM / SAM 2 model, in ``named_parameters`` order,
    from a normal with ``(std, mean) = scale(name, tensor)``, then each buffer named in
    ``unit_buffers`` from a unit normal, all from one generator seeded with ``seed``; the prompt
    encoder's Fourier matrix is then tied to the image's, as in released checkpoints. Returns
    ``model``."""
    generator = torch.Generator().manual_seed(seed)

    def normal(t: torch.Tensor, std: float, mean: float = 0.0) -> None:
        t.copy_(torch.randn(t.shape, generator=generator) * std + mean)

    with torch.no_grad():
        for name, p in model.named_parameters():
            normal(p, *scale(name, p))
        for name in unit_buffers:
            normal(model.get_buffer(name), 1.0)
        model.prompt_encoder.shared_embedding.positional_embedding.copy_(
            model.shared_image_embedding.positional_embedding
        )
    return model


def save_hf_checkpoint(model, folder: Path) -> Path:
    """``save_pretrained`` the model plus ``preprocessor_config.json``, as hub repos have them."""
    from transformers import SamImageProcessorPil

    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    SamImageProcessorPil().save_pretrained(folder)
    return folder


def hf_processor():
    from transformers import SamImageProcessorPil, SamProcessor

    return SamProcessor(image_processor=SamImageProcessorPil())


_HF_TO_META = [
    (r"^vision_encoder\.patch_embed\.projection\.", "image_encoder.patch_embed.proj."),
    (r"^vision_encoder\.layers\.(\d+)\.layer_norm(\d)\.", r"image_encoder.blocks.\1.norm\2."),
    (r"^vision_encoder\.layers\.", "image_encoder.blocks."),
    (r"^vision_encoder\.neck\.conv1\.", "image_encoder.neck.0."),
    (r"^vision_encoder\.neck\.layer_norm1\.", "image_encoder.neck.1."),
    (r"^vision_encoder\.neck\.conv2\.", "image_encoder.neck.2."),
    (r"^vision_encoder\.neck\.layer_norm2\.", "image_encoder.neck.3."),
    (r"^vision_encoder\.", "image_encoder."),
    (
        r"^shared_image_embedding\.positional_embedding$",
        "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
    ),
    (r"^prompt_encoder\.point_embed\.", "prompt_encoder.point_embeddings."),
    (r"^prompt_encoder\.mask_embed\.conv1\.", "prompt_encoder.mask_downscaling.0."),
    (r"^prompt_encoder\.mask_embed\.layer_norm1\.", "prompt_encoder.mask_downscaling.1."),
    (r"^prompt_encoder\.mask_embed\.conv2\.", "prompt_encoder.mask_downscaling.3."),
    (r"^prompt_encoder\.mask_embed\.layer_norm2\.", "prompt_encoder.mask_downscaling.4."),
    (r"^prompt_encoder\.mask_embed\.conv3\.", "prompt_encoder.mask_downscaling.6."),
    (r"\.layer_norm_final_attn\.", ".norm_final_attn."),
    (r"^(mask_decoder\.transformer\.layers\.\d+)\.layer_norm(\d)\.", r"\1.norm\2."),
    (r"^mask_decoder\.upscale_conv1\.", "mask_decoder.output_upscaling.0."),
    (r"^mask_decoder\.upscale_layer_norm\.", "mask_decoder.output_upscaling.1."),
    (r"^mask_decoder\.upscale_conv2\.", "mask_decoder.output_upscaling.3."),
]


def hf_to_meta_state_dict(model) -> dict[str, torch.Tensor]:
    """The model's weights under Meta ``segment_anything`` names, with pixel mean/std buffers."""
    out: dict[str, torch.Tensor] = {}
    depth = {"iou_prediction_head": model.config.mask_decoder_config.iou_head_depth}
    for key, tensor in model.state_dict().items():
        if key == "prompt_encoder.shared_embedding.positional_embedding":
            continue
        m = re.match(
            r"^mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)\."
            r"(proj_in|proj_out|layers\.(\d+))\.(.+)$",
            key,
        )
        if m:
            n = depth.get(m.group(1), 3)
            idx = (
                0
                if m.group(2) == "proj_in"
                else n - 1
                if m.group(2) == "proj_out"
                else (int(m.group(3)) + 1)
            )
            out[f"mask_decoder.{m.group(1)}.layers.{idx}.{m.group(4)}"] = tensor.clone()
            continue
        for pattern, repl in _HF_TO_META:
            key = re.sub(pattern, repl, key)
        out[key] = tensor.clone()
    out["pixel_mean"] = torch.tensor(IMAGENET_MEAN).view(-1, 1, 1) * 255
    out["pixel_std"] = torch.tensor(IMAGENET_STD).view(-1, 1, 1) * 255
    return out


def save_meta_checkpoint(model, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(hf_to_meta_state_dict(model), path)
    return path


GROUNDING_VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    ".",
    "dog",
    "cat",
    "truck",
    "wheel",
    "person",
    "bag",
    "a",
    "the",
]


def save_random_grounding_dino(folder: Path, seed: int = 0) -> Path:
    """A small random-weight Grounding DINO with its own tiny BERT vocabulary, saved with
    ``save_pretrained`` (model + processor + tokenizer) as a hub repo holds it."""
    from transformers import (
        BertConfig,
        BertTokenizer,
        GroundingDinoConfig,
        GroundingDinoForObjectDetection,
        GroundingDinoImageProcessorPil,
        GroundingDinoProcessor,
        SwinConfig,
    )

    torch.manual_seed(seed)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(
            embed_dim=24, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2], out_indices=[2, 3, 4]
        ),
        text_config=BertConfig(
            vocab_size=len(GROUNDING_VOCAB),
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=64,
        ),
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        num_queries=30,
        num_feature_levels=3,
        encoder_n_points=2,
        decoder_n_points=2,
        max_text_len=32,
        use_timm_backbone=False,
    )
    model = GroundingDinoForObjectDetection(config).eval()
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(GROUNDING_VOCAB)})
    processor = GroundingDinoProcessor(
        image_processor=GroundingDinoImageProcessorPil(
            size={"shortest_edge": 256, "longest_edge": 400}
        ),
        tokenizer=tokenizer,
    )
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def predict_once(model, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One fixed prompt (two points and a box) through our predictor: a fingerprint of the
    weights a loader produced, to compare two ways of loading the same checkpoint."""
    from sam import SamPredictor

    predictor = SamPredictor(model)
    predictor.set_image(image)
    h, w = image.shape[:2]
    return predictor.predict(
        point_coords=np.array([[w * 0.5, h * 0.5], [w * 0.2, h * 0.3]]),
        point_labels=np.array([1, 0]),
        box=np.array([w * 0.1, h * 0.1, w * 0.8, h * 0.9]),
    )
