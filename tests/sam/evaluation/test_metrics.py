"""IoU, NoC and the summaries on hand-made masks and IoU sequences."""

from __future__ import annotations

import numpy as np
import pytest

from sam.evaluation.metrics import (
    EvaluationResult,
    ObjectResult,
    Summary,
    mask_iou,
    number_of_clicks,
)


def test_mask_iou_of_hand_made_masks():
    a = np.zeros((10, 10), bool)
    b = np.zeros((10, 10), bool)
    a[0:4, 0:5] = True  # 20 px
    b[2:6, 0:5] = True  # 20 px, 10 shared
    assert mask_iou(a, b) == pytest.approx(10 / 30)
    assert mask_iou(a, a) == 1.0
    assert mask_iou(a, ~a) == 0.0


def test_number_of_clicks_counts_until_the_threshold_or_gives_the_maximum():
    ious = [0.5, 0.86, 0.88, 0.91]
    assert number_of_clicks(ious, 0.85) == 2
    assert number_of_clicks(ious, 0.90) == 4
    assert number_of_clicks([0.1, 0.2], 0.85, max_clicks=20) == 20


def test_summary_means_and_early_stopped_runs():
    results = [
        ObjectResult("cat", (0.5, 0.7, 0.9, 0.92, 0.95), 0.8),
        # Stopped after 2 clicks (exact mask): later clicks read the last IoU.
        ObjectResult("dog", (0.8, 1.0), 0.6),
    ]
    summary = Summary.of(results, max_clicks=20)
    assert summary.n_objects == 2
    assert summary.miou_1click == pytest.approx(0.65)
    assert summary.miou_3click == pytest.approx(0.95)
    assert summary.miou_5click == pytest.approx(0.975)
    assert summary.miou_box == pytest.approx(0.7)
    assert summary.noc85 == pytest.approx((3 + 2) / 2)
    assert summary.noc90 == pytest.approx((3 + 2) / 2)


def test_result_dict_has_the_documented_keys_per_label_and_overall():
    results = [ObjectResult("cat", (0.2,), 0.5), ObjectResult("", (0.4,), 0.1)]
    data = EvaluationResult.of(results, max_clicks=1).to_dict()
    for key in ("miou_1click", "miou_3click", "miou_5click", "miou_box", "noc85", "noc90"):
        assert key in data
    assert data["n_objects"] == 2
    assert set(data["per_label"]) == {"cat", ""}
    assert data["per_label"]["cat"]["miou_1click"] == pytest.approx(0.2)
    assert data["noc85"] == 1.0  # never reached within the single allowed click
