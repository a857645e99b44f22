"""SAM's training losses: focal + dice on the mask logits (20:1) and the mean squared error
between the predicted IoU and the IoU the mask really has."""

from __future__ import annotations

import torch
import torch.nn.functional as F

FOCAL_WEIGHT = 20.0
DICE_WEIGHT = 1.0
IOU_WEIGHT = 1.0


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Sigmoid focal loss (RetinaNet) per mask: ``(..., H, W)`` logits and 0/1 float target ->
    ``(...)`` mean over pixels."""
    prob = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = prob * target + (1 - prob) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.flatten(-2).mean(-1)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """Soft dice loss per mask: ``(..., H, W)`` -> ``(...)``."""
    prob = torch.sigmoid(logits).flatten(-2)
    target = target.flatten(-2)
    intersection = (prob * target).sum(-1)
    return 1 - (2 * intersection + eps) / (prob.sum(-1) + target.sum(-1) + eps)


def binary_iou(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """IoU of ``logits > 0`` with the 0/1 target per mask: ``(..., H, W)`` -> ``(...)``, no
    gradient (it is the regression target of the IoU head)."""
    with torch.no_grad():
        predicted = (logits > 0).flatten(-2)
        truth = target.flatten(-2) > 0.5
        intersection = (predicted & truth).sum(-1).float()
        union = (predicted | truth).sum(-1).float()
        return torch.where(union > 0, intersection / union.clamp(min=1), torch.ones_like(union))


def mask_losses(
    logits: torch.Tensor, predicted_iou: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Loss of each candidate mask: logits ``(B, K, H, W)``, predicted IoU ``(B, K)``, target
    ``(B, H, W)`` 0/1 float -> ``(B, K)``: 20 focal + dice + (IoU error)²."""
    target = target[:, None].expand_as(logits)
    iou_error = (predicted_iou - binary_iou(logits, target)) ** 2
    return (
        FOCAL_WEIGHT * focal_loss(logits, target)
        + DICE_WEIGHT * dice_loss(logits, target)
        + IOU_WEIGHT * iou_error
    )


def ambiguity_aware_loss(losses: torch.Tensor) -> torch.Tensor:
    """SAM's loss over K candidates: only the best candidate of each prompt is trained (an
    ambiguous prompt may rightly give another valid mask in the others). ``(B, K)`` -> ``()``."""
    return losses.min(dim=1).values.mean()
