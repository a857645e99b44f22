"""The SAM model tying image encoder, prompt encoder and mask decoder."""

from __future__ import annotations

import threading

import torch
from torch import nn

from .cache import EmbeddingCache
from .config import PreprocessConfig, SamConfig
from .image_encoder import VisionEncoder
from .mask_decoder import MaskDecoder
from .prompt_encoder import PositionalEmbedding, PromptEncoder

DEFAULT_CACHE_BYTES = 256 * 2**20  # 64 ViT-B embeddings of 4 MiB


class Sam(nn.Module):
    """Segment Anything.

    Parameter names equal the keys of a Hugging Face ``SamModel`` checkpoint, so a
    ``model.safetensors`` loads without renames.
    """

    def __init__(self, config: SamConfig, preprocess: PreprocessConfig | None = None) -> None:
        super().__init__()
        self.config = config
        self.preprocess = preprocess or PreprocessConfig()
        self.shared_image_embedding = PositionalEmbedding(config.vision_config.num_pos_feats)
        self.vision_encoder = VisionEncoder(config.vision_config)
        self.prompt_encoder = PromptEncoder(config.prompt_encoder_config)
        self.mask_decoder = MaskDecoder(config.mask_decoder_config)
        # Where the weights came from, for logs, cache keys and the UI.
        self.source: str = ""
        # Shared by every predictor of this model; serialising encodes keeps one encoder's
        # activations in memory at a time when several users upload at once.
        self.embedding_cache: EmbeddingCache = EmbeddingCache(DEFAULT_CACHE_BYTES)
        self.encoder_lock = threading.Lock()

    def set_cache_bytes(self, max_bytes: int) -> None:
        """Replace the embedding cache with an empty one holding at most ``max_bytes``."""
        self.embedding_cache = EmbeddingCache(max_bytes)

    @property
    def device(self) -> torch.device:
        return self.mask_decoder.iou_token.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.vision_encoder.patch_embed.projection.weight.dtype

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 1024, 1024)`` normalised pixels -> ``(B, 256, 64, 64)`` embeddings."""
        weight = self.vision_encoder.patch_embed.projection.weight
        return self.vision_encoder(pixel_values.to(device=weight.device, dtype=weight.dtype))

    def image_positional_embedding(self) -> torch.Tensor:
        """Dense positional encoding of the embedding grid: ``(1, 256, 64, 64)``."""
        return self.shared_image_embedding.dense(
            self.config.prompt_encoder_config.image_embedding_size
        )

    def decode(
        self,
        image_embeddings: torch.Tensor,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run prompt encoder and mask decoder for B prompts on one image.

        Args:
            image_embeddings: ``(1, 256, 64, 64)`` from :meth:`encode_image`.
            points: ``(B, N, 2)`` float, labels ``(B, N)`` int, boxes ``(B, 4)`` float, all in the
                1024-input frame; mask_input ``(B, 1, 256, 256)`` float logits.

        Returns:
            low-res mask logits ``(B, K, 256, 256)`` float32 and predicted IoU ``(B, K)``.
        """
        batch = next((t.shape[0] for t in (points, boxes, mask_input) if t is not None), 1)
        param = self.mask_decoder.iou_token.weight
        sparse, dense = self.prompt_encoder(
            self.shared_image_embedding,
            None if points is None else points.to(param),
            None if labels is None else labels.to(param.device),
            None if boxes is None else boxes.to(param),
            None if mask_input is None else mask_input.to(param),
            batch,
        )
        masks, iou = self.mask_decoder(
            image_embeddings.to(param),
            self.image_positional_embedding(),
            sparse,
            dense,
            multimask_output,
        )
        return masks.float(), iou.float()
