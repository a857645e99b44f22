"""Prompt encoder: random-Fourier positional encoding, point/box embeddings and the dense mask
embedding. Names mirror the HF checkpoint keys under ``prompt_encoder.`` and
``shared_image_embedding.``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .common import LayerNorm2d, activation
from .config import PromptEncoderConfig

# Label values understood by the prompt encoder.
LABEL_BACKGROUND = 0
LABEL_FOREGROUND = 1
LABEL_NOT_A_POINT = -1


class PositionalEmbedding(nn.Module):
    """Random Fourier features of 2-D coordinates.

    ``positional_embedding``: ``(2, F)`` Gaussian matrix; output has ``2F`` channels.
    """

    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.positional_embedding = nn.Parameter(torch.randn(2, num_pos_feats))

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """``(..., 2)`` (x, y) in ``[0, 1]`` -> ``(..., 2F)``."""
        coords = (2 * coords - 1).to(self.positional_embedding.dtype)
        coords = 2 * math.pi * (coords @ self.positional_embedding)
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def dense(self, size: int) -> torch.Tensor:
        """Encoding of every cell centre of a ``size x size`` grid: ``(1, 2F, size, size)``."""
        param = self.positional_embedding
        centres = (torch.arange(size, device=param.device, dtype=param.dtype) + 0.5) / size
        y, x = torch.meshgrid(centres, centres, indexing="ij")
        return self(torch.stack([x, y], dim=-1)).permute(2, 0, 1).unsqueeze(0)


class MaskEmbedding(nn.Module):
    """``(B, 1, 256, 256)`` mask logits -> ``(B, C, 64, 64)`` dense embedding."""

    def __init__(self, config: PromptEncoderConfig) -> None:
        super().__init__()
        mid = config.mask_input_channels // 4
        self.conv1 = nn.Conv2d(1, mid, kernel_size=2, stride=2)
        self.layer_norm1 = LayerNorm2d(mid, eps=config.layer_norm_eps)
        self.conv2 = nn.Conv2d(mid, config.mask_input_channels, kernel_size=2, stride=2)
        self.layer_norm2 = LayerNorm2d(config.mask_input_channels, eps=config.layer_norm_eps)
        self.conv3 = nn.Conv2d(config.mask_input_channels, config.hidden_size, kernel_size=1)
        self.activation = activation(config.hidden_act)

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.layer_norm1(self.conv1(masks)))
        x = self.activation(self.layer_norm2(self.conv2(x)))
        return self.conv3(x)


class PromptEncoder(nn.Module):
    """SAM's prompt encoder. SAM 2's
    (:class:`~sam.modeling.sam2.prompt_encoder.Sam2PromptEncoder`) overrides the point-embedding
    table, what a label adds and the box tokens."""

    def __init__(self, config: PromptEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.mask_embed = MaskEmbedding(config)
        self.no_mask_embed = nn.Embedding(1, config.hidden_size)
        self.point_embed = self._point_embed_table()
        self.not_a_point_embed = nn.Embedding(1, config.hidden_size)

    def _point_embed_table(self) -> nn.Module:
        """One ``(1, C)`` embedding per point label and box corner (HF ``point_embed.<i>``)."""
        hidden = self.config.hidden_size
        return nn.ModuleList(
            nn.Embedding(1, hidden) for _ in range(self.config.num_point_embeddings)
        )

    def _point_label_embed(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``(B, N, C)`` positional encodings of points plus what their ``(B, N)`` labels add."""
        lab = labels[..., None]
        embedding = torch.where(
            lab == LABEL_BACKGROUND, embedding + self.point_embed[0].weight, embedding
        )
        return torch.where(
            lab == LABEL_FOREGROUND, embedding + self.point_embed[1].weight, embedding
        )

    def _points_without_prompt(
        self, batch_size: int
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The points and labels decoded when a prompt has neither: none in SAM."""
        return None, None

    def _corner_embed(self) -> torch.Tensor:
        """The ``(2, C)`` embeddings added to a box's top-left and bottom-right corners."""
        return torch.cat([self.point_embed[2].weight, self.point_embed[3].weight])

    def _embed_points(
        self, pe: PositionalEmbedding, points: torch.Tensor, labels: torch.Tensor, pad: bool
    ) -> torch.Tensor:
        points = points + 0.5  # centre of the pixel
        if pad:
            # Without a box, SAM (and SAM 2) appends a "not a point" token in the box's place.
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        embedding = pe(points / self.config.image_size)
        lab = labels[..., None]
        embedding = torch.where(lab == LABEL_NOT_A_POINT, self.not_a_point_embed.weight, embedding)
        return self._point_label_embed(embedding, labels)

    def _embed_boxes(self, pe: PositionalEmbedding, boxes: torch.Tensor) -> torch.Tensor:
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        embedding = pe(corners / self.config.image_size)
        return embedding + self._corner_embed()

    def forward(
        self,
        pe: PositionalEmbedding,
        points: torch.Tensor | None,
        labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
        batch_size: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed a batch of ``batch_size`` prompts for one image.

        Args:
            pe: the model's shared positional embedding.
            points: ``(B, N, 2)`` float (x, y) in pixels of the resized 1024 input.
            labels: ``(B, N)`` int, 1 foreground, 0 background, -1 ignored.
            boxes: ``(B, 4)`` float (x0, y0, x1, y1), same frame as points.
            masks: ``(B, 1, 256, 256)`` float mask logits.

        Returns:
            sparse ``(B, T, C)`` and dense ``(B, C, 64, 64)`` embeddings.
        """
        weight = self.no_mask_embed.weight
        if points is None and boxes is None:
            points, labels = self._points_without_prompt(batch_size)
        parts = []
        if points is not None and labels is not None:
            parts.append(self._embed_points(pe, points, labels, pad=boxes is None))
        if boxes is not None:
            parts.append(self._embed_boxes(pe, boxes))
        if parts:
            sparse = torch.cat(parts, dim=1)
        else:
            sparse = weight.new_zeros(batch_size, 0, self.config.hidden_size)
        if masks is not None:
            dense = self.mask_embed(masks)
        else:
            size = self.config.image_embedding_size
            dense = weight.reshape(1, -1, 1, 1).expand(batch_size, -1, size, size)
        return sparse, dense
