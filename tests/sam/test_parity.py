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
from prompts import ATOL, assert_matches, frac, ours, prompts_for

from sam import SamPredictor, load_model
from sam.transforms import preprocess


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
        assert_matches(ours(tiny_predictor, prompt, multimask), ref.answer), label


def test_mask_input_refinement_matches(tiny_predictor, tiny_hf_model, photos):
    image = photos["truck.jpg"]
    tiny_predictor.set_image(image)
    first = {"points": [frac(image, 0.5, 0.5)], "labels": [1]}
    _, _, logits = ours(tiny_predictor, first, multimask=True)
    second = {"points": [frac(image, 0.5, 0.5), frac(image, 0.8, 0.2)], "labels": [1, 0]}
    ref = hf_predict(tiny_hf_model, image, mask_input=logits[0], multimask=False, **second)
    result = ours(tiny_predictor, second, multimask=False, mask_input=logits[:1])
    assert_matches(result, ref.answer)
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
            assert_matches(ours(predictor, prompt, multimask), ref.answer)
    torch.testing.assert_close(predictor.get_image_embedding(), ref_embedding, atol=ATOL, rtol=0)


@pytest.mark.slow
def test_vit_b_dims_match_transformers(tmp_path, photos):
    _full_size_parity(tmp_path, VIT_B_DIMS, photos, seed=1)


@pytest.mark.slow
def test_slimsam_77_dims_match_transformers(tmp_path, photos):
    _full_size_parity(tmp_path, SLIMSAM_77_DIMS, photos, seed=2)
