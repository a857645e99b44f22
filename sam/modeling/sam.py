"""The SAM model tying image encoder, prompt encoder and mask decoder."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from .config import PreprocessConfig, SamConfig
from .image_encoder import VisionEncoder
from .mask_decoder import DecoderImage, MaskDecoder
from .prompt_encoder import PositionalEmbedding, PromptEncoder


class PromptableModel(nn.Module):
    """What :class:`Sam` and SAM 2's ``Sam2`` share around their prompt encoder and mask
    decoder (modules ``shared_image_embedding``, ``prompt_encoder`` and ``mask_decoder``).

    ``image_input`` below is what the model's ``encode_image`` returns: SAM's embedding, SAM 2's
    feature maps.
    """

    #: Extra keyword arguments :meth:`forward` passes to ``decode``.
    forward_options: ClassVar[dict[str, Any]] = {}

    config: Any
    shared_image_embedding: PositionalEmbedding
    prompt_encoder: nn.Module
    mask_decoder: nn.Module

    @property
    def device(self) -> torch.device:
        return self.mask_decoder.iou_token.weight.device

    def forward(
        self,
        pixel_values: torch.Tensor,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
    ) -> tuple[torch.Tensor, ...]:
        """Image and prompts to low-res masks: ``encode_image``, then ``decode`` (with
        :attr:`forward_options`).

        Args:
            pixel_values: ``(1 or B, 3, 1024, 1024)`` normalised pixels (one image shared by
                B prompts, or one image per prompt).
            points, labels, boxes, mask_input: B prompts as in ``decode``.

        Returns:
            low-res mask logits ``(B, K, 256, 256)`` float32 and predicted IoU ``(B, K)`` (SAM 2
            then its object-score logit ``(B, 1)``).
        """
        image_input = self.encode_image(pixel_values)
        return self.decode(
            image_input, points, labels, boxes, mask_input, multimask_output,
            **self.forward_options,
        )  # fmt: skip

    def image_embedding(self, image_input: Any) -> torch.Tensor:
        """The ``(1 or B, C, 64, 64)`` image embedding in ``image_input``."""
        return image_input

    def image_positional_embedding(self) -> torch.Tensor:
        """Dense positional encoding of the embedding grid: ``(1, C, 64, 64)``."""
        return self.shared_image_embedding.dense(
            self.config.prompt_encoder_config.image_embedding_size
        )

    def key_pe(self) -> torch.Tensor:
        """:meth:`image_positional_embedding` as contiguous tokens ``(1, h*w, C)``."""
        return self.image_positional_embedding().flatten(2).transpose(1, 2).contiguous()

    def prepare_image(self, image_input: Any, key_pe: torch.Tensor) -> DecoderImage:
        """The decoder's prompt-independent work on the image embedding without a mask prompt:
        the same for every click on the image."""
        param = self.mask_decoder.iou_token.weight
        no_mask = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        return self.mask_decoder.prepare(
            self.image_embedding(image_input).to(param), no_mask, key_pe
        )

    def decoder_inputs(
        self,
        image_input: Any,
        points: torch.Tensor | None,
        labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        key_pe: torch.Tensor | None,
        image: DecoderImage | None,
    ) -> tuple[torch.Tensor, torch.Tensor, DecoderImage]:
        """What the mask decoder takes for B prompts: the sparse prompt tokens ``(B, n, C)``, the
        key positions and the prepared image (``key_pe`` and ``image`` computed unless given);
        prompts as in :meth:`Sam.decode`.
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
        if key_pe is None:
            key_pe = self.key_pe()
        if mask_input is not None:
            # The mask prompt makes the image keys prompt-dependent: nothing to reuse.
            image = self.mask_decoder.prepare(
                self.image_embedding(image_input).to(param), dense, key_pe,
                precompute_first_layer=False,
            )  # fmt: skip
        elif image is None:
            image = self.prepare_image(image_input, key_pe)
        return sparse, key_pe, image


class Sam(PromptableModel):
    """Segment Anything: image encoder, prompt encoder and mask decoder.

    Parameter names equal the keys of a Hugging Face ``SamModel`` checkpoint, so a
    ``model.safetensors`` loads without renames. The module holds weights and configs only;
    caches, locks and memos live in :class:`sam.engine.SamEngine`.
    """

    def __init__(self, config: SamConfig, preprocess: PreprocessConfig | None = None) -> None:
        super().__init__()
        self.config = config
        self.preprocess = preprocess or PreprocessConfig()
        self.shared_image_embedding = PositionalEmbedding(config.vision_config.num_pos_feats)
        self.vision_encoder = VisionEncoder(config.vision_config)
        self.prompt_encoder = PromptEncoder(config.prompt_encoder_config)
        self.mask_decoder = MaskDecoder(config.mask_decoder_config)

    @property
    def dtype(self) -> torch.dtype:
        """The image encoder's dtype (the rest runs at fp32)."""
        return self.vision_encoder.patch_embed.projection.weight.dtype

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, 1024, 1024)`` normalised pixels -> ``(B, 256, 64, 64)`` embeddings."""
        weight = self.vision_encoder.patch_embed.projection.weight
        return self.vision_encoder(pixel_values.to(device=weight.device, dtype=weight.dtype))

    def decode(
        self,
        image_embeddings: torch.Tensor,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        *,
        key_pe: torch.Tensor | None = None,
        image: DecoderImage | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Run prompt encoder and mask decoder for B prompts on one image (or one each).

        Args:
            image_embeddings: ``(1 or B, 256, 64, 64)`` from :meth:`encode_image`.
            points: ``(B, N, 2)`` float, labels ``(B, N)`` int, boxes ``(B, 4)`` float, all in the
                1024-input frame; mask_input ``(B, 1, 256, 256)`` float logits.
            key_pe, image: :meth:`key_pe` and :meth:`prepare_image` computed earlier (a caller
                decoding many prompts on one image keeps them); ``image`` only without
                ``mask_input``.

        Returns:
            low-res mask logits ``(B, K, 256, 256)`` float32 and predicted IoU ``(B, K)``.
        """
        sparse, key_pe, image = self.decoder_inputs(
            image_embeddings, points, labels, boxes, mask_input, key_pe, image
        )
        masks, iou = self.mask_decoder(image, key_pe, sparse, multimask_output)
        return masks.float(), iou.float()
