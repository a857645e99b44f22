"""The simulated annotator: the first click at the object's most interior point, then clicks
at the deepest point of the largest error, positive where missed and negative where spilled."""

from __future__ import annotations

import numpy as np
import pytest

from sam.evaluation.clicks import first_click, interior_distance, next_click


def rectangle(shape=(40, 60), rows=(5, 25), cols=(10, 50)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[rows[0] : rows[1], cols[0] : cols[1]] = True
    return mask


def test_first_click_is_the_point_farthest_from_the_border():
    # An L shape: the thick vertical bar's centre is farther from any border than the thin arm.
    mask = np.zeros((50, 50), bool)
    mask[5:45, 5:25] = True  # 40 x 20 bar
    mask[35:45, 25:48] = True  # 10-pixel arm
    click = first_click(mask)
    assert click.positive
    assert 14 <= click.x <= 15 and 14 <= click.y <= 35
    assert interior_distance(mask)[click.y, click.x] == interior_distance(mask).max()


def test_the_image_border_counts_as_outside():
    # An object touching the left edge: its most interior point is not on the edge.
    mask = np.zeros((21, 40), bool)
    mask[:, :20] = True
    click = first_click(mask)
    assert 9 <= click.y <= 11 and 9 <= click.x <= 10
    assert interior_distance(mask)[10, 0] == 1.0


def test_missed_region_gets_a_positive_click_at_its_centre():
    target = rectangle()
    predicted = target.copy()
    predicted[5:25, 30:50] = False  # right half missed
    click = next_click(target, predicted)
    assert click is not None and click.positive
    assert 39 <= click.x <= 40 and 14 <= click.y <= 15


def test_spilled_region_larger_than_missed_gets_a_negative_click():
    target = rectangle()
    predicted = target.copy()
    predicted[26:40, 0:60] = True  # a wide spill below the object
    predicted[5:8, 10:50] = False  # a thin miss at the top
    click = next_click(target, predicted)
    assert click is not None and not click.positive
    assert not target[click.y, click.x] and predicted[click.y, click.x]


def test_exact_prediction_needs_no_click():
    target = rectangle()
    assert next_click(target, target.copy()) is None


def test_empty_mask_has_no_first_click():
    with pytest.raises(ValueError, match="empty"):
        first_click(np.zeros((5, 5), bool))
