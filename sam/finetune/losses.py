"""Training losses: a class-balanced focal term + dice on the mask logits, and the mean squared
error between the predicted IoU and the IoU each candidate really has.

SAM's paper weighs focal:dice 20:1 with alpha 0.25; on objects covering a few percent of the
low-res grid that mix is minimised first by predicting background everywhere, a plateau that
few-hundred-step fine-tuning runs never leave (bench/README.md, "Fine-tuning throughput").
So the focal term is balanced (alpha 0.5) and weighted 1:1 with dice, as fine-tuning tools do
(micro-sam trains masks with dice alone).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FOCAL_WEIGHT = 1.0
DICE_WEIGHT = 1.0
IOU_WEIGHT = 1.0


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, alpha: float = 0.5, gamma: float = 2.0
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


def mask_losses(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mask loss of each candidate: logits ``(B, K, H, W)``, target ``(B, H, W)`` 0/1 float ->
    ``(B, K)``: focal + dice."""
    target = target[:, None].expand_as(logits)
    return FOCAL_WEIGHT * focal_loss(logits, target) + DICE_WEIGHT * dice_loss(logits, target)


def iou_loss(
    logits: torch.Tensor, predicted_iou: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """Mean squared error of the predicted IoU over every candidate (``(B, K, H, W)`` logits,
    ``(B, K)`` predictions, ``(B, H, W)`` target) -> ``()``: the IoU head ranks the candidates
    at prediction time, so it learns all of them, not only the one the mask loss trains."""
    return ((predicted_iou - binary_iou(logits, target[:, None].expand_as(logits))) ** 2).mean()


def ambiguity_aware_loss(
    logits: torch.Tensor, predicted_iou: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """SAM's loss over K candidates: only the best candidate of each prompt gets the mask loss
    (an ambiguous prompt may rightly give another valid mask in the others), every candidate
    the IoU loss. Shapes as :func:`mask_losses` -> (scalar loss, ``(B,)`` index of each
    prompt's best candidate)."""
    losses = mask_losses(logits, target)
    best = losses.detach().argmin(dim=1)
    mask = losses.min(dim=1).values.mean()
    return mask + IOU_WEIGHT * iou_loss(logits, predicted_iou, target), best
