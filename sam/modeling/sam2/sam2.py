"""The SAM 2 image model tying the Hiera image encoder, prompt encoder and mask decoder."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from ..mask_decoder import DecoderImage
from ..prompt_encoder import PositionalEmbedding
from ..sam import PromptableModel
from .config import Sam2Config, Sam2PreprocessConfig
from .image_encoder import Sam2VisionEncoder, conv_channels_last
from .mask_decoder import Sam2DecoderImage, Sam2MaskDecoder, high_res_blocks
from .prompt_encoder import Sam2PromptEncoder

#: What :meth:`Sam2.encode_image` returns: ``conv_s0`` of the 256x256 FPN map
#: ``(B, C/8, 256, 256)``, ``conv_s1`` of the 128x128 map ``(B, C/4, 128, 128)`` and the
#: 64x64 image embedding ``(B, C, 64, 64)``.
Sam2Features = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class Sam2(PromptableModel):
    """SAM 2 / 2.1 image segmentation (no video memory).

    Parameter names equal the keys of a Hugging Face ``Sam2Model`` checkpoint. The module holds
    weights and configs only; caches and memos live in :class:`sam.engine.Sam2Engine`.
    :meth:`forward` returns the object score too.
    """

    forward_options: ClassVar[dict[str, Any]] = {"object_score": True}

    def __init__(self, config: Sam2Config, preprocess: Sam2PreprocessConfig | None = None) -> None:
        super().__init__()
        self.config = config
        self.preprocess = preprocess or Sam2PreprocessConfig()
        prompt = config.prompt_encoder_config
        self.shared_image_embedding = PositionalEmbedding(prompt.hidden_size // 2)
        self.vision_encoder = Sam2VisionEncoder(config.vision_config)
        self.prompt_encoder = Sam2PromptEncoder(prompt)
        self.mask_decoder = Sam2MaskDecoder(config.mask_decoder_config)
        # Added to the image embedding when there are no memories (always, for images).
        self.no_memory_embedding = nn.Parameter(
            torch.zeros(1, 1, config.vision_config.fpn_hidden_size)
        )

    @property
    def dtype(self) -> torch.dtype:
        """The image encoder's dtype (the rest runs at fp32)."""
        return self.vision_encoder.backbone.patch_embed.projection.weight.dtype

    def encode_image(
        self, pixel_values: torch.Tensor, pos_embed: torch.Tensor | None = None
    ) -> Sam2Features:
        """``(B, 3, 1024, 1024)`` normalised pixels -> :data:`Sam2Features` in the encoder's
        dtype. ``pos_embed``: the backbone's :meth:`~Hiera.position_embedding` for this input
        size when the caller keeps it (else computed here)."""
        weight = self.vision_encoder.backbone.patch_embed.projection.weight
        dtype = weight.dtype
        pixels = pixel_values.to(device=weight.device, dtype=dtype)
        high, mid, low = self.vision_encoder(pixels, pos_embed)
        decoder = self.mask_decoder
        param = decoder.conv_s0.weight
        # The neck's maps are channels-last (B, C, H, W) views: the 1x1 convolutions run as
        # linear layers on them, as in the neck.
        feat_s0 = conv_channels_last(decoder.conv_s0, high.to(param.dtype).permute(0, 2, 3, 1))
        feat_s1 = conv_channels_last(decoder.conv_s1, mid.to(param.dtype).permute(0, 2, 3, 1))
        feat_s0, feat_s1 = feat_s0.to(dtype), feat_s1.to(dtype)
        embedding = low + self.no_memory_embedding.reshape(1, -1, 1, 1).to(dtype)
        return feat_s0, feat_s1, embedding

    def image_embedding(self, image_input: Sam2Features) -> torch.Tensor:
        """The 64x64 map of :data:`Sam2Features`, the one the two-way transformer attends to."""
        return image_input[-1]

    def prepare_image(self, image_input: Sam2Features, key_pe: torch.Tensor) -> Sam2DecoderImage:
        """:meth:`PromptableModel.prepare_image` plus the two high-resolution maps in the
        upscaling's block order (:func:`high_res_blocks`), reused by every click on the image."""
        image = super().prepare_image(image_input, key_pe)
        feat_s0, feat_s1 = (f.to(self.mask_decoder.iou_token.weight) for f in image_input[:2])
        return Sam2DecoderImage(
            image.keys,
            image.first_key_value,
            image.size,
            high_res_blocks(feat_s0, feat_s1, image.size),
        )

    def decode(
        self,
        features: Sam2Features,
        points: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        *,
        key_pe: torch.Tensor | None = None,
        image: DecoderImage | None = None,
        object_score: bool = False,
    ) -> tuple[torch.Tensor, ...]:
        """Run prompt encoder and mask decoder for B prompts on one image (or one each).

        Args:
            features: from :meth:`encode_image` (batch 1 or B).
            points: ``(B, N, 2)`` float, labels ``(B, N)`` int, boxes ``(B, 4)`` float, all in the
                1024-input frame; mask_input ``(B, 1, 256, 256)`` float logits.
            key_pe, image: :meth:`key_pe` and :meth:`prepare_image` computed earlier; ``image``
                only without ``mask_input``.
            object_score: also return the object-score logits.

        Returns:
            low-res mask logits ``(B, K, 256, 256)`` float32 and predicted IoU ``(B, K)``, then
            the object-score logit ``(B, 1)`` when ``object_score``.
        """
        sparse, key_pe, image = self.decoder_inputs(
            features, points, labels, boxes, mask_input, key_pe, image
        )
        masks, iou, score = self.mask_decoder(
            image, key_pe, sparse, multimask_output, (features[0], features[1])
        )
        if object_score:
            return masks.float(), iou.float(), score.float()
        return masks.float(), iou.float()
