"""SAM 2's prompt encoder. It differs from SAM's in the point-embedding table (one
``point_embed`` of 4 rows), in padding points, and in boxes, which are two corner tokens plus a
"not a point" token. Names mirror the HF checkpoint keys under ``prompt_encoder.``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..prompt_encoder import PositionalEmbedding, PromptEncoder

# Points with this label are padding: they contribute a zero token (HF's convention).
LABEL_PADDING = -10


class Sam2PromptEncoder(PromptEncoder):
    """SAM's prompt encoder with SAM 2's point table, padding label and box tokens: labels may
    also be 2/3 (box corners) and -10 (padding)."""

    def _point_embed_table(self) -> nn.Module:
        """One row per point label and box corner (HF ``point_embed.weight``)."""
        return nn.Embedding(self.config.num_point_embeddings, self.config.hidden_size)

    def _point_label_embed(self, embedding: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        lab = labels[..., None]
        embedding = torch.where(lab == LABEL_PADDING, torch.zeros_like(embedding), embedding)
        return embedding + self.point_embed(labels.clamp(min=0)) * (lab >= 0)

    def _corner_embed(self) -> torch.Tensor:
        return self.point_embed.weight[2:4]

    def _embed_boxes(self, pe: PositionalEmbedding, boxes: torch.Tensor) -> torch.Tensor:
        corners = super()._embed_boxes(pe, boxes)
        pad = self.not_a_point_embed.weight.expand(corners.shape[0], 1, -1)
        return torch.cat([corners, pad], dim=1)

    def _points_without_prompt(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One "not a point" per prompt: SAM 2 decodes a mask alone with it (as HF does)."""
        weight = self.no_mask_embed.weight
        points = weight.new_zeros(batch_size, 1, 2)
        labels = torch.full((batch_size, 1), -1, dtype=torch.int64, device=weight.device)
        return points, labels
