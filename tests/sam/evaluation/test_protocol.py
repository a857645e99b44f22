"""The click loop against a predictor whose answer is known (a disc around each positive
click, minus discs around negative ones), and the evaluation over a dataset with a model."""

from __future__ import annotations

import numpy as np
import pytest
from synthetic_shapes import make_dataset

from sam import load_model
from sam.evaluation import check_dataset, evaluate, read_coco
from sam.evaluation.protocol import box_iou, click_ious


class DiscPredictor:
    """Answers each prompt with discs of radius 6 around the clicks; records the calls."""

    def __init__(self, shape: tuple[int, int]) -> None:
        self.shape = shape
        self.calls: list[dict] = []

    def predict(
        self, point_coords=None, point_labels=None, box=None, mask_input=None, multimask_output=True
    ):
        self.calls.append(
            {
                "points": point_coords,
                "labels": point_labels,
                "box": box,
                "mask_input": mask_input,
                "multimask": multimask_output,
            }
        )
        yy, xx = np.mgrid[0 : self.shape[0], 0 : self.shape[1]]
        mask = np.zeros(self.shape, bool)
        if box is not None:
            x0, y0, x1, y1 = box
            mask[int(y0) : int(y1), int(x0) : int(x1)] = True
        for (x, y), label in zip(
            point_coords if point_coords is not None else [],
            point_labels if point_labels is not None else [],
            strict=True,
        ):
            disc = (xx - x) ** 2 + (yy - y) ** 2 <= 36
            mask = mask | disc if label == 1 else mask & ~disc
        logits = np.full((1, 256, 256), float(len(self.calls)), np.float32)
        return mask[None], np.ones(1, np.float32), logits


def test_clicks_accumulate_and_feed_back_the_previous_logits():
    target = np.zeros((40, 40), bool)
    target[10:30, 5:35] = True  # 20 x 30: discs of radius 6 need several clicks
    predictor = DiscPredictor(target.shape)
    ious = click_ious(predictor, target, max_clicks=6)
    assert len(ious) == 6 and ious[0] < ious[-1]
    assert [c["multimask"] for c in predictor.calls] == [True] + [False] * 5
    assert predictor.calls[0]["mask_input"] is None
    for k, call in enumerate(predictor.calls[1:], start=1):
        assert len(call["points"]) == k + 1
        assert call["mask_input"][0, 0, 0] == k  # the logits of the call before
        assert all(
            target[int(y), int(x)]
            for (x, y), lab in zip(call["points"], call["labels"], strict=True)
            if lab == 1
        )


def test_run_stops_once_the_mask_is_exact():
    target = np.zeros((40, 40), bool)
    yy, xx = np.mgrid[0:40, 0:40]
    target[(xx - 20) ** 2 + (yy - 20) ** 2 <= 36] = True  # exactly the first click's disc
    ious = click_ious(DiscPredictor(target.shape), target, max_clicks=20)
    assert ious == (1.0,)


def test_box_prompt_is_the_bounding_box():
    target = np.zeros((40, 40), bool)
    target[10:30, 5:35] = True
    predictor = DiscPredictor(target.shape)
    assert box_iou(predictor, target) == 1.0
    assert predictor.calls[0]["box"].tolist() == [5, 10, 35, 30]


def test_evaluate_a_model_on_a_synthetic_dataset(tiny_checkpoint, tmp_path):
    annotations, images_dir = make_dataset(tmp_path, n_images=2, seed=3)
    images = read_coco(annotations, images_dir)
    check_dataset(images)
    engine = load_model(tiny_checkpoint, device="cpu")
    seen = []
    result = evaluate(engine, images, max_clicks=3, progress=lambda d, t: seen.append((d, t)))
    n_objects = sum(len(image.objects) for image in images)
    assert result.overall.n_objects == n_objects == len(result.objects)
    assert seen[-1] == (n_objects, n_objects)
    for obj in result.objects:
        assert 1 <= len(obj.ious) <= 3 and all(0.0 <= v <= 1.0 for v in obj.ious)
        assert 0.0 <= obj.box_iou <= 1.0
    assert 1.0 <= result.overall.noc85 <= 3.0
    assert set(result.per_label) <= {"circle", "rectangle", "triangle"}
    # Each image is encoded once: the engine's cache holds one embedding per image.
    assert len(engine.embedding_cache) == len(images)


def test_max_clicks_must_be_positive(tiny_checkpoint):
    with pytest.raises(ValueError, match="max_clicks"):
        evaluate(load_model(tiny_checkpoint, device="cpu"), [], max_clicks=0)
