"""Loading SAM 2 / 2.1 weights through ``sam.load_model``: HF folders (``sam2`` and the hub's
``sam2_video`` configs), Meta ``.pt`` files recognised from their tensors, hub repo ids, and the
errors a user sees for files that are not what they claim."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from checkpoints import predict_once
from hub_server import FakeHub, use_hub
from safetensors.torch import load_file, save_file

from sam import CheckpointError, load_model

HUB_REPO = "facebook/sam2.1-hiera-tiny"


def copy_folder(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_meta_pt_and_hf_folder_give_identical_outputs(
    tiny_sam2_checkpoint, tiny_sam2_meta_checkpoint, photos
):
    hf = load_model(tiny_sam2_checkpoint, device="cpu")
    meta = load_model(tiny_sam2_meta_checkpoint, device="cpu")
    assert meta.config == hf.config  # every dimension recognised from Meta's tensor shapes
    hf_weights, meta_weights = hf.model.state_dict(), meta.model.state_dict()
    for (name, a), (_, b) in zip(hf_weights.items(), meta_weights.items(), strict=True):
        assert torch.equal(a, b), name
    image = photos["truck.jpg"]
    for x, y in zip(predict_once(hf, image), predict_once(meta, image), strict=True):
        np.testing.assert_array_equal(x, y)


def test_video_config_of_the_hub_repos_loads(tiny_sam2_checkpoint, tmp_path, photos):
    """The hub's facebook/sam2.1-hiera-* repos are ``sam2_video`` models: same image parts plus
    memory tensors the image model leaves out."""
    folder = copy_folder(tiny_sam2_checkpoint, tmp_path / "video")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "sam2_video"
    (folder / "config.json").write_text(json.dumps(config))
    tensors = load_file(folder / "model.safetensors")
    tensors["memory_attention.layers.0.self_attn.q_proj.weight"] = torch.zeros(8, 8)
    tensors["no_object_pointer"] = torch.zeros(1, 64)
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    image = photos["dog.jpg"]
    expected = predict_once(load_model(tiny_sam2_checkpoint, device="cpu"), image)
    for got, want in zip(
        predict_once(load_model(folder, device="cpu"), image), expected, strict=True
    ):
        np.testing.assert_array_equal(got, want)


def test_hub_repo_id_loads_sam2(tiny_sam2_checkpoint, monkeypatch, tmp_path, photos):
    with FakeHub({HUB_REPO: tiny_sam2_checkpoint}) as hub:
        use_hub(monkeypatch, endpoint=hub.endpoint, cache=tmp_path / "hub")
        engine = load_model(HUB_REPO, device="cpu")
    assert engine.family == "sam2.1-hiera-tiny"
    image = photos["dog.jpg"]
    expected = predict_once(load_model(tiny_sam2_checkpoint, device="cpu"), image)
    for got, want in zip(predict_once(engine, image), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_meta_pt_of_an_unreleased_layout_asks_for_a_config(tiny_sam2_meta_checkpoint, tmp_path):
    sd = torch.load(tiny_sam2_meta_checkpoint, weights_only=True)["model"]
    # Drop the last block of stage 3: a layout no released Hiera has.
    sd = {k: v for k, v in sd.items() if not k.startswith("image_encoder.trunk.blocks.11.")}
    path = tmp_path / "custom.pt"
    torch.save({"model": sd}, path)
    with pytest.raises(CheckpointError, match=r"\[1, 2, 7, 1\] blocks per stage.*config\.json"):
        load_model(path, device="cpu")


def test_missing_tensor_is_named(tiny_sam2_checkpoint, tmp_path):
    folder = copy_folder(tiny_sam2_checkpoint, tmp_path / "broken")
    tensors = load_file(folder / "model.safetensors")
    del tensors["mask_decoder.obj_score_token.weight"]
    save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        CheckpointError, match=r"1 missing tensor\(s\): mask_decoder\.obj_score_token"
    ):
        load_model(folder, device="cpu")


def test_sam2_config_with_sam_weights_says_so(tiny_checkpoint, tmp_path):
    folder = copy_folder(tiny_checkpoint, tmp_path / "mixed")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "sam2"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="holds no SAM 2 \\(Hiera\\) tensors"):
        load_model(folder, device="cpu")
