"""Our engine against transformers' SamModel on the same weights and real photos."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from checkpoints import (
    SLIMSAM_77_DIMS,
    VIT_B_DIMS,
    hf_processor,
    random_hf_sam,
    save_hf_checkpoint,
)
from oracle import hf_predict

from sam import SamPredictor, load_model
from sam.transforms import preprocess

ATOL = 1e-4


def frac(image: np.ndarray, fx: float, fy: float) -> list[float]:
    """A point at a fraction of the image's width and height."""
    return [round(fx * image.shape[1]), round(fy * image.shape[0])]


def prompts_for(image: np.ndarray) -> dict[str, dict]:
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
    return predictor.predict(
        point_coords=None if "points" not in prompt else np.array(prompt["points"]),
        point_labels=None if "labels" not in prompt else np.array(prompt["labels"]),
        box=None if "box" not in prompt else np.array(prompt["box"]),
        mask_input=mask_input,
        multimask_output=multimask,
    )


def assert_matches(result, ref, atol: float = ATOL) -> None:
    masks, scores, logits = result
    k = 3 if ref.scores.shape[0] == 3 else 1
    assert masks.shape == ref.masks.shape and masks.dtype == np.bool_
    assert scores.shape == (k,) and scores.dtype == np.float32
    assert logits.shape == (k, 256, 256) and logits.dtype == np.float32
    assert np.all(np.diff(scores) <= 0), "candidates must be sorted best first"
    np.testing.assert_allclose(scores, ref.scores, atol=atol, rtol=0)
    np.testing.assert_allclose(logits, ref.logits, atol=atol, rtol=0)
    assert (masks == ref.masks).mean() >= 0.999


@pytest.fixture(scope="module")
def tiny_predictor(tiny_checkpoint):
    return SamPredictor(load_model(tiny_checkpoint, device="cpu"))


def test_preprocessing_equals_hf_processor(tiny_checkpoint, photos):
    model = load_model(tiny_checkpoint, device="cpu")
    pre = model.preprocess
    for image in photos.values():
        pixels, size = preprocess(image, pre.image_mean, pre.image_std)
        inputs = hf_processor()(images=image, return_tensors="pt")
        assert tuple(inputs["reshaped_input_sizes"][0].tolist()) == size
        torch.testing.assert_close(pixels, inputs["pixel_values"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["dog.jpg", "dogs.jpg", "groceries.jpg", "truck.jpg"])
@pytest.mark.parametrize("multimask", [True, False])
def test_prompts_match_transformers(tiny_predictor, tiny_hf_model, photos, name, multimask):
    image = photos[name]
    tiny_predictor.set_image(image)
    ref_embedding = None
    for label, prompt in prompts_for(image).items():
        ref = hf_predict(
            tiny_hf_model, image, multimask=multimask, embedding=ref_embedding, **prompt
        )
        ref_embedding = ref.embedding
        torch.testing.assert_close(
            tiny_predictor.get_image_embedding(), ref.embedding, atol=ATOL, rtol=0
        )
        assert_matches(ours(tiny_predictor, prompt, multimask), ref), label


def test_mask_input_refinement_matches(tiny_predictor, tiny_hf_model, photos):
    image = photos["truck.jpg"]
    tiny_predictor.set_image(image)
    first = {"points": [frac(image, 0.5, 0.5)], "labels": [1]}
    _, _, logits = ours(tiny_predictor, first, multimask=True)
    second = {"points": [frac(image, 0.5, 0.5), frac(image, 0.8, 0.2)], "labels": [1, 0]}
    ref = hf_predict(tiny_hf_model, image, mask_input=logits[0], multimask=False, **second)
    result = ours(tiny_predictor, second, multimask=False, mask_input=logits[:1])
    assert_matches(result, ref)
    without = ours(tiny_predictor, second, multimask=False)
    assert not np.allclose(without[2], result[2]), "mask_input must change the prediction"


def _full_size_parity(tmp_path, dims, photos, seed):
    hf = random_hf_sam(dims, seed=seed)
    folder = save_hf_checkpoint(hf, tmp_path / "ckpt")
    predictor = SamPredictor(load_model(folder, device="cpu"))
    image = photos["dogs.jpg"]
    predictor.set_image(image)
    ref_embedding = None
    for multimask in (True, False):
        for prompt in prompts_for(image).values():
            ref = hf_predict(hf, image, multimask=multimask, embedding=ref_embedding, **prompt)
            ref_embedding = ref.embedding
            assert_matches(ours(predictor, prompt, multimask), ref)
    torch.testing.assert_close(predictor.get_image_embedding(), ref_embedding, atol=ATOL, rtol=0)


@pytest.mark.slow
def test_vit_b_dims_match_transformers(tmp_path, photos):
    _full_size_parity(tmp_path, VIT_B_DIMS, photos, seed=1)


@pytest.mark.slow
def test_slimsam_77_dims_match_transformers(tmp_path, photos):
    _full_size_parity(tmp_path, SLIMSAM_77_DIMS, photos, seed=2)
