"""SAM 2's prompt encoder. It differs from SAM's in the point-embedding table (one
``point_embed`` of 4 rows) and in boxes, which are two corner tokens plus a "not a point" token.
Names mirror the HF checkpoint keys under ``prompt_encoder.``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..prompt_encoder import LABEL_NOT_A_POINT, MaskEmbedding, PositionalEmbedding
from .config import Sam2PromptEncoderConfig

# Points with this label are padding: they contribute a zero token (HF's convention).
LABEL_PADDING = -10


class Sam2PromptEncoder(nn.Module):
    def __init__(self, config: Sam2PromptEncoderConfig) -> None:
        super().__init__()
        self.config = config
        self.mask_embed = MaskEmbedding(config)  # type: ignore[arg-type]  # same fields
        self.no_mask_embed = nn.Embedding(1, config.hidden_size)
        self.point_embed = nn.Embedding(config.num_point_embeddings, config.hidden_size)
        self.not_a_point_embed = nn.Embedding(1, config.hidden_size)

    def _embed_points(
        self, pe: PositionalEmbedding, points: torch.Tensor, labels: torch.Tensor, pad: bool
    ) -> torch.Tensor:
        points = points + 0.5  # centre of the pixel
        if pad:
            # Without a box, SAM 2 appends a "not a point" token in the box's place.
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, labels.new_full((labels.shape[0], 1), -1)], dim=1)
        embedding = pe(points / self.config.image_size)
        lab = labels[..., None]
        embedding = torch.where(lab == LABEL_NOT_A_POINT, self.not_a_point_embed.weight, embedding)
        embedding = torch.where(lab == LABEL_PADDING, torch.zeros_like(embedding), embedding)
        return embedding + self.point_embed(labels.clamp(min=0)) * (lab >= 0)

    def _embed_boxes(self, pe: PositionalEmbedding, boxes: torch.Tensor) -> torch.Tensor:
        corners = pe((boxes + 0.5).reshape(-1, 2, 2) / self.config.image_size)
        corners = corners + self.point_embed.weight[2:4]
        pad = self.not_a_point_embed.weight.expand(corners.shape[0], 1, -1)
        return torch.cat([corners, pad], dim=1)

    def forward(
        self,
        pe: PositionalEmbedding,
        points: torch.Tensor | None,
        labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
        batch_size: int,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed ``batch_size`` prompts for one image.

        Args:
            pe: the model's shared positional embedding.
            points: ``(B, N, 2)`` float (x, y) in pixels of the 1024 input; labels ``(B, N)``
                int (1 foreground, 0 background, 2/3 box corners, -1 not a point, -10 padding).
            boxes: ``(B, 4)`` float (x0, y0, x1, y1), same frame.
            masks: ``(B, 1, 256, 256)`` float mask logits.

        Returns:
            sparse ``(B, T, C)`` and dense ``(B, C, 64, 64)`` embeddings.
        """
        weight = self.no_mask_embed.weight
        if points is None and boxes is None:
            # A mask alone: SAM 2 still decodes with one "not a point" token (as HF does).
            points = weight.new_zeros(batch_size, 1, 2)
            labels = torch.full((batch_size, 1), -1, dtype=torch.int64, device=weight.device)
        parts = []
        if points is not None and labels is not None:
            parts.append(self._embed_points(pe, points, labels, pad=boxes is None))
        if boxes is not None:
            parts.append(self._embed_boxes(pe, boxes))
        sparse = torch.cat(parts, dim=1)
        if masks is not None:
            dense = self.mask_embed(masks)
        else:
            size = self.config.image_embedding_size
            dense = weight.reshape(1, -1, 1, 1).expand(batch_size, -1, size, size)
        return sparse, dense
