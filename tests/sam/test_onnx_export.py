"""The ONNX decoder (``python -m sam export-onnx``) against our SamPredictor, through
onnxruntime: the same masks, scores and low-res logits for clicks, boxes and a mask prompt."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from prompts import DECODER_PROMPTS, decoder_prompt

from sam import SamPredictor, load_model
from sam.onnx_export import INPUT_NAMES, OUTPUT_NAMES, OnnxExportError, export_decoder, onnx_inputs

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python -m sam export-onnx`` as a user runs it."""
    out = tmp_path_factory.mktemp("onnx")
    result = subprocess.run(
        [sys.executable, "-m", "sam", "export-onnx", "--model", str(tiny_checkpoint),
         "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "decoder.onnx" in result.stdout
    return out / "decoder.onnx"


@pytest.fixture(scope="module")
def session(exported: Path):
    return ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def predictor(tiny_checkpoint: Path, photos) -> SamPredictor:
    predictor = SamPredictor(load_model(str(tiny_checkpoint), device="cpu"))
    predictor.set_image(photos["truck.jpg"])
    return predictor


def run_onnx(session, predictor: SamPredictor, multimask: bool, **prompt):
    """The ONNX answer in the predictor's convention: candidates 1-3 sorted by score, or
    token 0 alone."""
    feeds = onnx_inputs(predictor.get_image_embedding().numpy(), predictor.original_size, **prompt)
    masks, iou, low = session.run(None, feeds)
    tokens = np.argsort(-iou[0, 1:], kind="stable") + 1 if multimask else np.array([0])
    return masks[0, tokens], iou[0, tokens], low[0, tokens]


def assert_same(predictor: SamPredictor, onnx_out, ours) -> None:
    logits, iou, low = onnx_out
    masks, scores, our_low = ours
    np.testing.assert_allclose(iou, scores, atol=1e-4)
    np.testing.assert_allclose(low, our_low, atol=1e-4)
    full = predictor.upscale(torch.from_numpy(our_low)[None])[0].numpy()
    np.testing.assert_allclose(logits, full, atol=1e-3)
    # The masks are equal except where float rounding flips a logit within 1e-3 of zero.
    differ = (logits > 0) != masks
    assert not differ[np.abs(full) > 1e-3].any()
    assert differ.mean() < 1e-5


def test_graph_has_metas_signature(exported: Path):
    import onnx

    graph = onnx.load(str(exported)).graph
    assert [i.name for i in graph.input] == list(INPUT_NAMES)
    assert [o.name for o in graph.output] == list(OUTPUT_NAMES)


@pytest.mark.parametrize("name", DECODER_PROMPTS)
def test_decoder_answers_as_the_predictor(session, predictor, name):
    multimask, prompt, answer = decoder_prompt(predictor, name)
    assert_same(predictor, run_onnx(session, predictor, multimask, **prompt), answer)


def test_missing_onnx_package_says_what_to_install(predictor, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # what find_spec reports when not installed
    with pytest.raises(OnnxExportError, match=r"pip install '\.\[onnx\]'"):
        export_decoder(predictor.model, tmp_path / "decoder.onnx")
    assert not list(tmp_path.iterdir())


def test_low_res_only_graph_answers_as_the_full_one(session, predictor, tmp_path):
    """The browser's graph (ui/browser_decode.py) ends at the scores and low-res logits."""
    path = export_decoder(predictor.model, tmp_path / "low.onnx", low_res_only=True)
    low_session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs = [name for name in INPUT_NAMES if name != "orig_im_size"]
    assert [i.name for i in low_session.get_inputs()] == inputs
    assert [o.name for o in low_session.get_outputs()] == ["iou_predictions", "low_res_masks"]
    points, labels = np.array([[500.0, 375.0], [1100.0, 300.0]]), np.array([1, 0])
    feeds = onnx_inputs(
        predictor.get_image_embedding().numpy(), predictor.original_size, points=points,
        labels=labels,
    )  # fmt: skip
    _, iou, low = session.run(None, feeds)
    low_iou, low_low = low_session.run(None, {name: feeds[name] for name in inputs})
    np.testing.assert_allclose(low_iou, iou, atol=1e-4)
    np.testing.assert_allclose(low_low, low, atol=1e-4)
