"""SAM 2's cut ONNX decoder (``export_decoder(low_res_only=True)``, the graph the page runs)
against our Sam2 predictor through onnxruntime: the same scores and low-res logits for clicks,
boxes, a mask prompt and SAM 2's single-mask choice."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from prompts import DECODER_PROMPTS, decoder_prompt

from sam import SamPredictor, load_model
from sam.onnx_export import (
    SAM2_INPUT_NAMES,
    SAM2_OUTPUT_NAMES,
    OnnxExportError,
    embedding_bytes,
    embedding_dims,
    export_decoder,
    sam2_onnx_inputs,
)

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")


@pytest.fixture(scope="module")
def predictor(tiny_sam2_checkpoint: Path, photos) -> SamPredictor:
    predictor = SamPredictor(load_model(str(tiny_sam2_checkpoint), device="cpu"))
    predictor.set_image(photos["truck.jpg"])
    return predictor


@pytest.fixture(scope="module")
def session(predictor: SamPredictor, tmp_path_factory: pytest.TempPathFactory):
    path = export_decoder(
        predictor.model, tmp_path_factory.mktemp("onnx2") / "decoder.onnx", low_res_only=True
    )
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def run_onnx(session, predictor: SamPredictor, multimask: bool, **prompt):
    """The ONNX answer in the predictor's convention: candidates 1-3 sorted by score, or
    token 0 (SAM 2's single-mask choice) alone."""
    features = tuple(f.numpy() for f in predictor.get_image_embedding())
    feeds = sam2_onnx_inputs(features, predictor.original_size, **prompt)
    iou, low = session.run(None, feeds)
    tokens = np.argsort(-iou[0, 1:], kind="stable") + 1 if multimask else np.array([0])
    return iou[0, tokens], low[0, tokens]


def assert_same(predictor: SamPredictor, onnx_out, ours) -> None:
    iou, low = onnx_out
    masks, scores, our_low = ours
    np.testing.assert_allclose(iou, scores, atol=1e-4)
    np.testing.assert_allclose(low, our_low, atol=1e-4)
    full = predictor.upscale(torch.from_numpy(low)[None])[0].numpy()
    differ = (full > 0) != masks
    assert not differ[np.abs(full) > 1e-3].any()


def test_graph_signature(session):
    assert [i.name for i in session.get_inputs()] == list(SAM2_INPUT_NAMES)
    assert [o.name for o in session.get_outputs()] == list(SAM2_OUTPUT_NAMES)


@pytest.mark.parametrize("name", DECODER_PROMPTS)
def test_decoder_answers_as_the_predictor(session, predictor, name):
    multimask, prompt, answer = decoder_prompt(predictor, name)
    assert_same(predictor, run_onnx(session, predictor, multimask, **prompt), answer)


def test_single_mask_is_sam2s_stability_choice(session, predictor):
    """Without candidates SAM 2 answers token 0 only where it is stable, else the best
    candidate: token 0 of the graph is that choice, for clicks where either happens."""
    for spot in ([500.0, 375.0], [1100.0, 300.0], [200.0, 900.0], [1600.0, 600.0]):
        points, labels = np.array([spot]), np.array([1])
        ours = predictor.predict(points, labels, multimask_output=False)
        onnx_out = run_onnx(session, predictor, False, points=points, labels=labels)
        assert_same(predictor, onnx_out, ours)


def test_single_mask_where_the_single_token_is_stable(predictor, photos, tmp_path):
    """The other side of SAM 2's choice: with every single mask counted stable (threshold 0)
    token 0 itself is the answer, as in the engine."""
    model = copy.deepcopy(predictor.model)
    config = model.mask_decoder.config
    model.mask_decoder.config = dataclasses.replace(config, dynamic_multimask_stability_thresh=0.0)
    stable = SamPredictor(model)
    stable.set_image(photos["truck.jpg"])
    path = export_decoder(model, tmp_path / "stable.onnx", low_res_only=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    points, labels = np.array([[500.0, 375.0]]), np.array([1])
    ours = stable.predict(points, labels, multimask_output=False)
    best = predictor.predict(points, labels, multimask_output=False)
    assert not np.allclose(ours[2], best[2])  # token 0, not the best candidate
    assert_same(stable, run_onnx(session, stable, False, points=points, labels=labels), ours)


def test_the_full_size_signature_is_sams_only(predictor, tmp_path):
    with pytest.raises(OnnxExportError, match="low-res"):
        export_decoder(predictor.model, tmp_path / "decoder.onnx")
    assert not list(tmp_path.iterdir())


def test_the_three_maps_go_to_the_browser_as_float16_embedding_first(predictor):
    feat_s0, feat_s1, embedding = predictor.get_image_embedding()
    dims = embedding_dims((feat_s0, feat_s1, embedding))
    assert dims == (*embedding.shape[1:], *feat_s0.shape[1:], *feat_s1.shape[1:])
    data = np.frombuffer(embedding_bytes((feat_s0, feat_s1, embedding)), dtype="<f2")
    sizes = [embedding.numel(), feat_s0.numel(), feat_s1.numel()]
    assert data.size == sum(sizes)
    parts = np.split(data, np.cumsum(sizes)[:-1])
    for part, tensor in zip(parts, (embedding, feat_s0, feat_s1), strict=True):
        np.testing.assert_array_equal(part, tensor.numpy().astype(np.float16).ravel())
