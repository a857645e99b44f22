"""Prompts simulated as in SAM's training, on low-res target masks.

Targets are ``(B, h, w)`` bool masks on the decoder's low-res grid over the padded input
square (256x256 for SAM); prompts are returned in the model's input frame (1024 pixels), each
low-res cell standing for its centre. A first prompt is a box from the mask with noise or one
point inside it; each correction is a point drawn uniformly from the current error region,
positive where the prediction missed and negative where it spilled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# Box noise: a normal offset per coordinate with std 10 % of the box side, at most 20 input
# pixels (SAM paper, appendix A).
BOX_NOISE = 0.1
BOX_NOISE_MAX = 20.0


@dataclass(frozen=True)
class Prompts:
    """``points`` ``(B, N, 2)`` float and ``labels`` ``(B, N)`` int64 (1 on the object, 0
    not), or None; ``boxes`` ``(B, 4)`` float (x0, y0, x1, y1) or None; input frame."""

    points: torch.Tensor | None
    labels: torch.Tensor | None
    boxes: torch.Tensor | None

    def with_point(self, points: torch.Tensor, labels: torch.Tensor) -> Prompts:
        """These prompts plus one point each: ``(B, 1, 2)``, ``(B, 1)``."""
        if self.points is None or self.labels is None:
            return Prompts(points, labels, self.boxes)
        return Prompts(
            torch.cat([self.points, points], dim=1),
            torch.cat([self.labels, labels], dim=1),
            self.boxes,
        )


def cells_to_input(cells: torch.Tensor, scale: float) -> torch.Tensor:
    """``(..., 2)`` (x, y) low-res cell indices -> input-frame pixel coordinates of the cell
    centres (the prompt encoder adds half a pixel: it takes pixel indices)."""
    return (cells.float() + 0.5) * scale - 0.5


def _uniform_cells(region: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One cell drawn uniformly from each ``(B, h, w)`` bool region -> ``(B, 2)`` (x, y);
    an empty region gives the centre cell."""
    batch, height, width = region.shape
    flat = region.reshape(batch, -1).float()
    empty = flat.sum(dim=1) == 0
    flat[empty, (height // 2) * width + width // 2] = 1.0
    index = torch.multinomial(flat, 1, generator=generator)[:, 0]
    return torch.stack([index % width, index // width], dim=1)


def sample_points(targets: torch.Tensor, scale: float, generator: torch.Generator) -> Prompts:
    """One positive point drawn uniformly inside each target."""
    points = cells_to_input(_uniform_cells(targets, generator), scale)[:, None]
    labels = torch.ones(targets.shape[0], 1, dtype=torch.int64)
    return Prompts(points, labels, None)


def sample_boxes(targets: torch.Tensor, scale: float, generator: torch.Generator) -> Prompts:
    """Each target's bounding box in the input frame with SAM's noise, kept inside the input
    square and non-empty."""
    batch, height, width = targets.shape
    rows, cols = targets.any(dim=2), targets.any(dim=1)
    limit = torch.tensor([width, height], dtype=torch.float32) * scale

    def extent(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = torch.arange(mask.shape[1]).expand_as(mask)
        low = torch.where(mask, index, mask.shape[1]).min(dim=1).values
        high = torch.where(mask, index, -1).max(dim=1).values
        return low.float() * scale, (high.float() + 1) * scale

    x0, x1 = extent(cols)
    y0, y1 = extent(rows)
    boxes = torch.stack([x0, y0, x1, y1], dim=1)
    sides = torch.stack([x1 - x0, y1 - y0, x1 - x0, y1 - y0], dim=1)
    noise = torch.randn(batch, 4, generator=generator) * BOX_NOISE * sides
    boxes = boxes + noise.clamp(-BOX_NOISE_MAX, BOX_NOISE_MAX)
    boxes = torch.minimum(boxes.clamp(min=0), limit.repeat(2))
    # Keep at least one cell between the corners whatever the noise did.
    boxes[:, 2:] = torch.maximum(boxes[:, 2:], boxes[:, :2] + scale)
    return Prompts(None, None, boxes)


def sample_first_prompts(
    targets: torch.Tensor, scale: float, generator: torch.Generator
) -> Prompts:
    """A box or a single point for the whole batch, with equal chance (SAM's first prompt)."""
    if torch.rand(1, generator=generator).item() < 0.5:
        return sample_boxes(targets, scale, generator)
    return sample_points(targets, scale, generator)


def sample_corrections(
    targets: torch.Tensor, predicted: torch.Tensor, scale: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """One correction click per prompt, uniform over the error region of ``predicted``
    ``(B, h, w)`` bool: ``(B, 1, 2)`` input-frame points and ``(B, 1)`` labels (1 where the
    cell was missed, 0 where it was spilled). Without errors, a positive point inside."""
    errors = targets ^ predicted
    exact = ~errors.flatten(1).any(dim=1)
    errors[exact] = targets[exact]
    cells = _uniform_cells(errors, generator)
    rows = torch.arange(targets.shape[0])
    labels = targets[rows, cells[:, 1], cells[:, 0]].long()
    return cells_to_input(cells, scale)[:, None], labels[:, None]
