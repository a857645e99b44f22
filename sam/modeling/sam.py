"""The SAM model tying image encoder, prompt encoder and mask decoder."""

from __future__ import annotations

import threading

import torch
from torch import nn

from ..cache import EmbeddingCache
from .config import PreprocessConfig, SamConfig
from .image_encoder import VisionEncoder
from .mask_decoder import DecoderImage, MaskDecoder
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
        # Prompt-independent decoder inputs, computed once: the dense positional encoding
        # (per weights) and the last image's DecoderImage (per embedding tensor).
        self._pe_memo: tuple[tuple, torch.Tensor] | None = None
        self._image_memo: tuple[torch.Tensor, DecoderImage] | None = None

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

    def _key_pe(self) -> torch.Tensor:
        """:meth:`image_positional_embedding` as contiguous tokens ``(1, h*w, C)``, computed
        once per weights (recomputed if the Fourier matrix is moved or changed)."""
        param = self.shared_image_embedding.positional_embedding
        key = (param.device, param.dtype, param.data_ptr(), _version(param))
        memo = self._pe_memo
        if memo is None or memo[0] != key:
            with torch.inference_mode():
                pe = self.image_positional_embedding().flatten(2).transpose(1, 2).contiguous()
            memo = (key, pe)
            self._pe_memo = memo
        return memo[1]

    def _decoder_image(self, image_embeddings: torch.Tensor, key_pe: torch.Tensor) -> DecoderImage:
        """The decoder's per-image work without a mask prompt, reused while the same embedding
        tensor comes back (every click on the image a predictor holds)."""
        memo = self._image_memo
        if memo is not None and memo[0] is image_embeddings:
            return memo[1]
        param = self.mask_decoder.iou_token.weight
        no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        image = self.mask_decoder.prepare(image_embeddings.to(param), no_mask, key_pe)
        self._image_memo = (image_embeddings, image)
        return image

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
        key_pe = self._key_pe()
        if mask_input is None:
            image = self._decoder_image(image_embeddings, key_pe)
        else:
            # The mask prompt makes the image keys prompt-dependent: nothing to reuse.
            image = self.mask_decoder.prepare(
                image_embeddings.to(param), dense, key_pe, precompute_first_layer=False
            )
        masks, iou = self.mask_decoder(image, key_pe, sparse, multimask_output)
        return masks.float(), iou.float()


def _version(tensor: torch.Tensor) -> int:
    """The tensor's in-place version counter (inference tensors have none: -1)."""
    try:
        return tensor._version
    except RuntimeError:
        return -1
