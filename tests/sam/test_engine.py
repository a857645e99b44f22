"""The runtime around the network: ``load_model`` gives a SamEngine whose predictors share its
cache and memos, while ``sam.modeling.Sam`` stays a plain module with a real ``forward``."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch

from sam import SamEngine, SamPredictor, load_model
from sam.modeling import Sam
from sam.transforms import preprocess

POINTS = torch.tensor([[[300.0, 200.0], [500.0, 600.0]], [[100.0, 900.0], [700.0, 50.0]]])
LABELS = torch.tensor([[1, 0], [1, 1]])


@pytest.fixture(scope="module")
def engine(tiny_checkpoint) -> SamEngine:
    return load_model(tiny_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def pixels(engine, photos) -> torch.Tensor:
    pre = engine.preprocess
    return preprocess(
        photos["dog.jpg"], pre.image_mean, pre.image_std, pre.longest_edge, pre.pad_size
    )[0]


def test_load_model_wraps_the_network(engine):
    assert isinstance(engine.model, Sam)
    assert engine.device == engine.model.device and engine.dtype == engine.model.dtype
    assert not hasattr(engine.model, "embedding_cache"), "runtime state stays out of the module"


def test_predictor_model_is_the_network_as_in_metas_api(engine):
    """``predictor.model`` is the nn.Module (Meta's name); the shared runtime is ``.engine``."""
    predictor = SamPredictor(engine)
    assert predictor.engine is engine
    assert predictor.model is engine.model and isinstance(predictor.model, Sam)


def test_a_bare_network_gets_an_engine_of_its_own(engine, photos):
    """Meta-style ``SamPredictor(sam)`` with the nn.Module works; anything else is refused."""
    bare = SamPredictor(engine.model)
    assert bare.engine is not engine and bare.model is engine.model
    bare.set_image(photos["dog.jpg"])
    ours = SamPredictor(engine)
    ours.set_image(photos["dog.jpg"])
    point = np.array([[320, 240]])
    assert np.array_equal(
        bare.predict(point, np.array([1]))[0], ours.predict(point, np.array([1]))[0]
    )
    with pytest.raises(TypeError, match="load_model"):
        SamPredictor("facebook/sam-vit-base")


def test_forward_equals_encode_then_decode(engine, pixels):
    """The module's forward (image -> low-res masks, IoU) is what the predictor's path gives."""
    with torch.inference_mode():
        masks, iou = engine.model(pixels, POINTS, LABELS)
        embedding = engine.encode_image(pixels)
        expected_masks, expected_iou = engine.decode(embedding, POINTS, LABELS)
        again = engine.decode(embedding, POINTS, LABELS)  # from the engine's memo
    assert masks.shape == (2, 3, 256, 256) and iou.shape == (2, 3)
    torch.testing.assert_close(masks, expected_masks, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(iou, expected_iou, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(again[0], expected_masks, rtol=0, atol=0)


def test_decoder_trains_on_frozen_embeddings(engine, pixels):
    """With gradients the decoder gives the same masks and its weights get gradients."""
    with torch.inference_mode():
        embedding = engine.encode_image(pixels)
        expected, _ = engine.decode(embedding, POINTS, LABELS, multimask_output=False)
    model = engine.model
    masks, iou = model.decode(embedding.clone(), POINTS, LABELS, multimask_output=False)
    (masks.mean() + iou.mean()).backward()
    try:
        torch.testing.assert_close(masks.detach(), expected, rtol=1e-4, atol=1e-4)
        assert model.mask_decoder.iou_token.weight.grad is not None
        assert model.prompt_encoder.point_embed[1].weight.grad is not None
    finally:
        model.zero_grad(set_to_none=True)


def test_the_decoder_memo_does_not_keep_an_embedding_alive(tiny_checkpoint, photos):
    """Once the cache drops an embedding and no predictor holds it, it is freed: the engine's
    per-image memo holds no embedding outside the cache's budget."""
    engine = load_model(tiny_checkpoint, device="cpu")
    predictor = SamPredictor(engine)
    predictor.set_image(photos["dog.jpg"])
    masks, _, _ = predictor.predict(point_coords=np.array([[100, 80]]), point_labels=[1])
    assert masks.any()
    freed = weakref.ref(predictor.get_image_embedding())
    engine.embedding_cache.clear()
    del predictor
    gc.collect()
    assert freed() is None
    assert engine._image_memo is None
