"""Text prompts: Grounding DINO boxes -> SAM masks, on a random-weight detector saved locally."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from checkpoints import save_random_grounding_dino
from PIL import Image

from sam import SamPredictor, TextPromptError, load_model
from sam.predictor import MAX_BOXES
from sam.text_prompt import (
    Detection,
    GroundingDetector,
    TextPromptConfig,
    normalise_prompt,
    segment_by_text,
)

# Random weights: every query scores low, so the tests use thresholds that keep a few.
LOOSE = TextPromptConfig(box_threshold=0.05, text_threshold=0.0, nms_threshold=0.5)


@pytest.fixture(scope="module")
def detector_dir(tmp_path_factory):
    return save_random_grounding_dino(tmp_path_factory.mktemp("grounding-dino"))


@pytest.fixture(scope="module")
def detector(detector_dir):
    return GroundingDetector(str(detector_dir), device="cpu")


def oracle_boxes(detector_dir, image: np.ndarray, text: str, threshold: float):
    """transformers' own documented detection, boxes in image pixels, before our NMS."""
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    processor = AutoProcessor.from_pretrained(detector_dir)
    model = AutoModelForZeroShotObjectDetection.from_pretrained(detector_dir).eval()
    inputs = processor(images=Image.fromarray(image), text=text, return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    result = processor.post_process_grounded_object_detection(
        outputs,
        inputs["input_ids"],
        threshold=threshold,
        text_threshold=0.0,
        target_sizes=[image.shape[:2]],
    )[0]
    return result["boxes"].numpy(), result["scores"].numpy()


def box_iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


def test_boxes_are_the_detectors_boxes_in_image_pixels(detector, detector_dir, photos):
    image = photos["truck.jpg"]
    detections = detector.detect(image, "Truck, wheel", LOOSE)
    assert detections, "the loose threshold should keep some boxes"
    ref_boxes, ref_scores = oracle_boxes(detector_dir, image, "truck. wheel.", LOOSE.box_threshold)
    h, w = image.shape[:2]
    clipped = np.clip(ref_boxes, 0, [w, h, w, h])
    for d in detections:
        i = int(np.argmin(np.abs(ref_scores - d.score)))
        np.testing.assert_allclose(d.box, clipped[i], atol=1e-3)
        assert 0 <= d.box[0] < d.box[2] <= w and 0 <= d.box[1] < d.box[3] <= h
        assert d.score >= LOOSE.box_threshold
    scores = [d.score for d in detections]
    assert scores == sorted(scores, reverse=True)
    for i, a in enumerate(detections):
        for b in detections[i + 1 :]:
            assert box_iou(a.box, b.box) <= LOOSE.nms_threshold


def test_thresholds_apply(detector, photos):
    image = photos["truck.jpg"]
    loose = detector.detect(image, "truck.", LOOSE)
    strict = detector.detect(image, "truck.", TextPromptConfig(box_threshold=0.2))
    assert {d.box for d in strict} <= {d.box for d in loose}
    assert all(d.score >= 0.2 for d in strict)
    assert detector.detect(image, "truck.", TextPromptConfig(box_threshold=1.01)) == []


def test_segment_by_text_masks_equal_box_prompts(detector, tiny_checkpoint, photos):
    image = photos["truck.jpg"]
    predictor = SamPredictor(load_model(tiny_checkpoint, device="cpu"))
    proposals = segment_by_text(predictor, detector, image, "truck. wheel.", LOOSE)
    assert proposals
    for p in proposals[:3]:
        masks, scores, _ = predictor.predict(box=np.array(p.detection.box), multimask_output=False)
        assert (masks[0] == p.mask).mean() > 0.9999
        assert p.mask_score == pytest.approx(float(scores[0]), abs=1e-5)
        assert p.detection.phrase  # the phrase travels with the box to label the object
    strict = TextPromptConfig(box_threshold=1.01)
    assert segment_by_text(predictor, detector, image, "dog.", strict) == []


class ManyBoxes:
    """A detector that finds more boxes than one predict_boxes call takes."""

    def detect(self, image, text, config=None):
        return [Detection((i, i, i + 20.0, i + 30.0), 0.5, "thing") for i in range(MAX_BOXES + 3)]


def test_more_boxes_than_one_decoder_batch_are_all_segmented(tiny_checkpoint):
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    predictor = SamPredictor(load_model(tiny_checkpoint, device="cpu"))
    proposals = segment_by_text(predictor, ManyBoxes(), image, "thing.")
    assert len(proposals) == MAX_BOXES + 3
    last = proposals[-1]
    masks, _, _ = predictor.predict(box=np.array(last.detection.box), multimask_output=False)
    assert (masks[0] == last.mask).all()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("dog", "dog."), ("Dog, Cat", "dog. cat."), (" a dog . the cat.", "a dog. the cat.")],
)
def test_normalise_prompt(text, expected):
    assert normalise_prompt(text) == expected


def test_empty_prompt():
    with pytest.raises(TextPromptError, match="Type what to find"):
        normalise_prompt(" . , ")


def test_detector_that_cannot_be_loaded(tmp_path):
    with pytest.raises(TextPromptError, match="folder .*missing-detector does not exist"):
        GroundingDetector(str(tmp_path / "missing-detector"), device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(TextPromptError, match="Could not load the text detector"):
        GroundingDetector(str(tmp_path / "empty"), device="cpu")


def test_unreachable_hub_fails_at_once(monkeypatch):
    import time

    monkeypatch.setattr("sam.text_prompt._hub_reachable", lambda: False)
    start = time.perf_counter()
    with pytest.raises(TextPromptError, match="Could not load the text detector"):
        GroundingDetector("IDEA-Research/no-such-detector", device="cpu")
    assert time.perf_counter() - start < 10, "no minutes of retries when offline"


def test_without_the_optional_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)  # import raises ImportError
    with pytest.raises(TextPromptError, match=r"pip install '\.\[text\]'"):
        GroundingDetector("anything", device="cpu")
