"""Prompt sampling on low-res targets and SAM's losses, on hand-made masks."""

from __future__ import annotations

import pytest
import torch

from sam.finetune.losses import (
    ambiguity_aware_loss,
    binary_iou,
    dice_loss,
    focal_loss,
    iou_loss,
    mask_losses,
)
from sam.finetune.prompts import (
    BOX_NOISE_MAX,
    Prompts,
    cells_to_input,
    sample_boxes,
    sample_corrections,
    sample_points,
)

SCALE = 4.0  # 256 low-res cells over a 1024 input


def square_targets() -> torch.Tensor:
    targets = torch.zeros(2, 32, 32, dtype=torch.bool)
    targets[0, 4:12, 6:20] = True
    targets[1, 20:30, 2:8] = True
    return targets


def to_cells(points: torch.Tensor) -> torch.Tensor:
    return ((points + 0.5) / SCALE - 0.5).round().long()


def test_points_fall_inside_their_targets():
    targets = square_targets()
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        prompts = sample_points(targets, SCALE, generator)
        assert prompts.boxes is None and prompts.labels.tolist() == [[1], [1]]
        cells = to_cells(prompts.points[:, 0])
        assert all(targets[b, cells[b, 1], cells[b, 0]] for b in range(2))


def test_boxes_are_the_mask_extent_with_bounded_noise():
    targets = square_targets()
    generator = torch.Generator().manual_seed(0)
    exact = torch.tensor([[6, 4, 20, 12], [2, 20, 8, 30]], dtype=torch.float32) * SCALE
    for _ in range(20):
        boxes = sample_boxes(targets, SCALE, generator).boxes
        assert (boxes - exact).abs().max() <= BOX_NOISE_MAX + 1e-4
        assert (boxes[:, 2:] > boxes[:, :2]).all() and (boxes >= 0).all()


def test_corrections_click_the_error_with_the_right_sign():
    targets = square_targets()
    predicted = torch.zeros_like(targets)
    predicted[0] = targets[0]
    predicted[0, 0:2, 0:2] = True  # image 0: only a spill
    generator = torch.Generator().manual_seed(0)
    points, labels = sample_corrections(targets, predicted, SCALE, generator)
    cells = to_cells(points[:, 0])
    assert labels.tolist() == [[0], [1]]  # spilled -> negative; missed -> positive
    assert cells[0].tolist()[0] < 2 and cells[0].tolist()[1] < 2
    assert targets[1, cells[1, 1], cells[1, 0]]


def test_prompts_grow_by_one_point_per_correction():
    first = Prompts(None, None, torch.zeros(2, 4))
    grown = first.with_point(torch.ones(2, 1, 2), torch.ones(2, 1, dtype=torch.int64))
    grown = grown.with_point(torch.ones(2, 1, 2), torch.zeros(2, 1, dtype=torch.int64))
    assert grown.points.shape == (2, 2, 2) and grown.labels.tolist() == [[1, 0], [1, 0]]
    assert grown.boxes is first.boxes


def test_cell_centres_in_the_input_frame():
    # The prompt encoder adds half a pixel: cell 0 covers input pixels 0-3, centre 2.0.
    assert cells_to_input(torch.tensor([0, 1]), SCALE).tolist() == [1.5, 5.5]


def test_losses_reward_the_right_mask():
    target = torch.zeros(1, 8, 8)
    target[0, 2:6, 2:6] = 1
    right = target * 20 - 10  # confident and right
    wrong = -right
    for loss in (focal_loss, dice_loss):
        assert loss(right, target).item() < 0.01 < loss(wrong, target).item()
    assert binary_iou(right, target).item() == 1.0 and binary_iou(wrong, target).item() == 0.0


def test_iou_head_is_trained_towards_the_real_iou():
    target = torch.zeros(1, 8, 8)
    target[0, 2:6, 2:6] = 1
    logits = (target * 20 - 10)[:, None]  # one candidate, IoU 1
    honest = iou_loss(logits, torch.tensor([[1.0]]), target)
    overconfident = iou_loss(logits, torch.tensor([[0.0]]), target)
    assert honest.item() == 0.0 and overconfident.item() == pytest.approx(1.0)


def test_only_the_best_candidate_gets_the_mask_loss_but_every_one_the_iou_loss():
    target = torch.zeros(2, 8, 8)
    target[:, 2:6, 2:6] = 1
    right, wrong = target * 20 - 10, -(target * 20 - 10)
    # Prompt 0: candidate 1 is right; prompt 1: candidate 0 is.
    first = torch.stack([wrong[0], right[0], wrong[0]])
    second = torch.stack([right[1], wrong[1], wrong[1]])
    logits = torch.stack([first, second]).requires_grad_()
    predicted = torch.full((2, 3), 0.5, requires_grad=True)
    total, best = ambiguity_aware_loss(logits, predicted, target)
    total.backward()
    assert best.tolist() == [1, 0]
    # Mask gradients reach only the best candidate of each prompt ...
    reached = logits.grad.flatten(2).abs().sum(-1) > 0
    assert reached.tolist() == [[False, True, False], [True, False, False]]
    # ... while the IoU head is pulled towards each candidate's real IoU (1 right, 0 wrong).
    assert (predicted.grad[0, 1] < 0) and (predicted.grad[0, 0] > 0) and (predicted.grad[1, 2] > 0)
    expected_iou = ((0.5 - torch.tensor([[0.0, 1, 0], [1, 0, 0]])) ** 2).mean()
    assert total.item() == pytest.approx(
        mask_losses(logits, target).min(1).values.mean().item() + expected_iou.item(), rel=1e-5
    )
