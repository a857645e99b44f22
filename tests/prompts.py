"""The prompts the parity tests give our predictor and transformers (SAM and SAM 2 alike), and
how the two answers are compared."""

from __future__ import annotations

import numpy as np

from sam import SamPredictor

ATOL = 1e-4


def frac(image: np.ndarray, fx: float, fy: float) -> list[float]:
    """A point at a fraction of the image's width and height."""
    return [round(fx * image.shape[1]), round(fy * image.shape[0])]


def prompts_for(image: np.ndarray) -> dict[str, dict]:
    """Clicks, a box and both, in image pixels: ``points`` (N, 2) x/y, ``labels`` (N,) 1/0,
    ``box`` x0 y0 x1 y1."""
    h, w = image.shape[:2]
    return {
        "one point": {"points": [frac(image, 0.5, 0.5)], "labels": [1]},
        "positive and negative": {
            "points": [frac(image, 0.4, 0.5), frac(image, 0.7, 0.3), frac(image, 0.2, 0.8)],
            "labels": [1, 0, 1],
        },
        "box": {"box": [0.1 * w, 0.2 * h, 0.6 * w, 0.9 * h]},
        "box and points": {
            "box": [0.25 * w, 0.25 * h, 0.75 * w, 0.75 * h],
            "points": [frac(image, 0.5, 0.5), frac(image, 0.3, 0.3)],
            "labels": [1, 0],
        },
    }


def ours(predictor: SamPredictor, prompt: dict, multimask: bool, mask_input=None):
    """``predictor.predict`` for one of :func:`prompts_for`'s prompts."""
    return predictor.predict(
        point_coords=None if "points" not in prompt else np.array(prompt["points"]),
        point_labels=None if "labels" not in prompt else np.array(prompt["labels"]),
        box=None if "box" not in prompt else np.array(prompt["box"]),
        mask_input=mask_input,
        multimask_output=multimask,
    )


def assert_matches(result, ref) -> None:
    """``result`` and ``ref`` are (masks (K, H, W) bool, scores (K,) float32, logits
    (K, 256, 256) float32), best first: the same K, scores and logits within ``ATOL``, masks
    equal on 99.9 % of the pixels."""
    masks, scores, logits = result
    ref_masks, ref_scores, ref_logits = ref
    k = ref_scores.shape[0]
    assert masks.shape == ref_masks.shape and masks.dtype == np.bool_
    assert scores.shape == (k,) and scores.dtype == np.float32
    assert logits.shape == (k, 256, 256) and logits.dtype == np.float32
    assert np.all(np.diff(scores) <= 0), "candidates must be sorted best first"
    np.testing.assert_allclose(scores, ref_scores, atol=ATOL, rtol=0)
    np.testing.assert_allclose(logits, ref_logits, atol=ATOL, rtol=0)
    assert (masks == ref_masks).mean() >= 0.999


#: The prompts both ONNX decoders (SAM's and SAM 2's) are checked on, in truck.jpg's pixels.
DECODER_PROMPTS = ("one click", "points, box and mask prompt", "box alone")


def decoder_prompt(predictor: SamPredictor, name: str) -> tuple[bool, dict, tuple]:
    """One of :data:`DECODER_PROMPTS` as (multimask, the prompt as ``onnx_inputs`` takes it,
    ``predictor.predict``'s answer to it)."""
    points, labels = np.array([[500.0, 375.0], [1100.0, 300.0]]), np.array([1, 0])
    if name == "one click":
        multimask, prompt = True, {"points": points[:1], "labels": labels[:1]}
    elif name == "points, box and mask prompt":
        first = predictor.predict(points[:1], labels[:1], multimask_output=True)
        box = np.array([75.0, 275.0, 1725.0, 850.0])
        multimask = False
        prompt = {"points": points, "labels": labels, "box": box, "mask_input": first[2][:1]}
    elif name == "box alone":
        multimask, prompt = False, {"box": np.array([300.0, 200.0, 1200.0, 900.0])}
    else:
        raise KeyError(f"no decoder prompt named {name!r}")
    answer = predictor.predict(
        prompt.get("points"), prompt.get("labels"), box=prompt.get("box"),
        mask_input=prompt.get("mask_input"), multimask_output=multimask,
    )  # fmt: skip
    return multimask, prompt, answer
