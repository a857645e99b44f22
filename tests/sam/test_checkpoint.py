"""Loading checkpoints from every supported source, and every way loading can fail."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoints import SLIMSAM_77_DIMS, predict_once
from safetensors.torch import load_file, save_file

from sam import CheckpointError, DeviceError, load_model
from sam.checkpoint import infer_config
from sam.modeling import Sam
from sam.modeling.config import VIT_PRESETS, SamConfig, VisionConfig


def copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_meta_pth_and_hf_folder_give_identical_outputs(
    tiny_checkpoint, tiny_meta_checkpoint, photos
):
    hf_model = load_model(tiny_checkpoint, device="cpu")
    meta_model = load_model(tiny_meta_checkpoint, device="cpu")
    assert meta_model.config == hf_model.config
    assert meta_model.preprocess.image_mean == pytest.approx(hf_model.preprocess.image_mean)
    hf_weights, meta_weights = hf_model.model.state_dict(), meta_model.model.state_dict()
    for a, b in zip(hf_weights.items(), meta_weights.items(), strict=True):
        assert a[0] == b[0] and torch.equal(a[1], b[1]), a[0]
    image = photos["groceries.jpg"]
    for x, y in zip(predict_once(hf_model, image), predict_once(meta_model, image), strict=True):
        np.testing.assert_array_equal(x, y)


def test_bare_safetensors_file_infers_its_config(tiny_checkpoint, tmp_path, photos):
    bare = tmp_path / "weights.safetensors"
    shutil.copy(tiny_checkpoint / "model.safetensors", bare)
    model = load_model(bare, device="cpu")
    reference = load_model(tiny_checkpoint, device="cpu")
    assert model.config.vision_config == reference.config.vision_config
    image = photos["dog.jpg"]
    np.testing.assert_array_equal(predict_once(model, image)[2], predict_once(reference, image)[2])


def test_folder_with_pytorch_model_bin(tiny_checkpoint, tmp_path, photos):
    folder = tmp_path / "bin"
    folder.mkdir()
    shutil.copy(tiny_checkpoint / "config.json", folder)
    torch.save(load_file(tiny_checkpoint / "model.safetensors"), folder / "pytorch_model.bin")
    model = load_model(folder, device="cpu")
    reference = load_model(tiny_checkpoint, device="cpu")
    image = photos["dog.jpg"]
    np.testing.assert_array_equal(predict_once(model, image)[2], predict_once(reference, image)[2])


def test_processor_config_json_of_transformers_5_is_read(tiny_checkpoint, tmp_path):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    pre["image_mean"] = [0.5, 0.5, 0.5]
    (folder / "preprocessor_config.json").unlink()
    (folder / "processor_config.json").write_text(json.dumps({"image_processor": pre}))
    assert load_model(folder, device="cpu").preprocess.image_mean == (0.5, 0.5, 0.5)


def test_meta_pixel_mean_and_std_are_used(tiny_meta_checkpoint, tmp_path):
    sd = torch.load(tiny_meta_checkpoint, weights_only=True)
    sd["pixel_mean"] = torch.tensor([100.0, 110.0, 120.0]).view(3, 1, 1)
    path = tmp_path / "custom.pth"
    torch.save({"model": sd}, path)  # training scripts often wrap the state dict
    model = load_model(path, device="cpu")
    assert model.preprocess.image_mean == pytest.approx((100 / 255, 110 / 255, 120 / 255))


@pytest.mark.parametrize(
    "vision",
    [
        VIT_PRESETS["vit_b"],
        VIT_PRESETS["vit_l"],
        VIT_PRESETS["vit_h"],
        VisionConfig(hidden_size=384, mlp_dim=1536),  # SlimSAM-50
        VisionConfig(**{**SLIMSAM_77_DIMS["vision_config"]}),  # SlimSAM-77: 12 heads of 14
    ],
    ids=["vit_b", "vit_l", "vit_h", "slimsam_50", "slimsam_77"],
)
def test_config_inferred_from_tensor_shapes(vision):
    config = SamConfig(vision_config=vision)
    with torch.device("meta"):
        state_dict = Sam(config).state_dict()
    inferred = infer_config(state_dict)
    assert inferred.vision_config.hidden_size == vision.hidden_size
    assert inferred.vision_config.intermediate_size == vision.intermediate_size
    assert inferred.vision_config.num_attention_heads == vision.num_attention_heads
    assert inferred.vision_config.num_hidden_layers == vision.num_hidden_layers
    assert inferred.vision_config.global_attn_indexes == vision.global_attn_indexes
    assert inferred.vision_config.window_size == vision.window_size
    assert inferred.mask_decoder_config == config.mask_decoder_config
    assert inferred.prompt_encoder_config == config.prompt_encoder_config


def test_hf_hub_repo_id_loads_from_the_local_cache_offline(
    tiny_checkpoint, tmp_path, monkeypatch, photos
):
    # The documented huggingface_hub cache layout: refs/main -> snapshot folder with the files.
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-sam"
    snapshot = repo / "snapshots" / commit
    shutil.copytree(tiny_checkpoint, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _reload_hub_constants(monkeypatch)
    model = load_model("someone/tiny-sam", device="cpu")
    reference = load_model(tiny_checkpoint, device="cpu")
    image = photos["dog.jpg"]
    np.testing.assert_array_equal(predict_once(model, image)[2], predict_once(reference, image)[2])


def _reload_hub_constants(monkeypatch) -> None:
    """huggingface_hub reads its environment at import time; re-read it for this test."""
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(Path(constants.os.environ["HF_HUB_CACHE"])))


def test_offline_and_not_cached_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _reload_hub_constants(monkeypatch)
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache") as err:
        load_model("facebook/sam-vit-base", device="cpu")
    assert "--model" in str(err.value)


def test_missing_path(tmp_path):
    with pytest.raises(CheckpointError, match="No such file or folder"):
        load_model(tmp_path / "nope" / "sam.pth")


def test_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "secret-notes.txt").write_text("x")
    with pytest.raises(
        CheckpointError, match="has no model.safetensors or pytorch_model.bin"
    ) as err:
        load_model(tmp_path)
    # The app shows this message to remote users: it must not list what the folder holds.
    assert "secret-notes.txt" not in str(err.value) and "found" not in str(err.value)


def test_hub_only_never_reads_a_local_folder_of_that_name(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _reload_hub_constants(monkeypatch)
    monkeypatch.chdir(tmp_path)
    copy_checkpoint(tiny_checkpoint, tmp_path / "someone" / "tiny-sam")
    assert load_model("someone/tiny-sam", device="cpu").config is not None  # a local folder
    with pytest.raises(CheckpointError, match="not in the local Hugging Face cache"):
        load_model("someone/tiny-sam", device="cpu", hub_only=True)
    with pytest.raises(CheckpointError, match="is not a Hugging Face repo id"):
        load_model(str(tmp_path / "someone" / "tiny-sam"), device="cpu", hub_only=True)


def test_empty_file(tmp_path):
    path = tmp_path / "sam.pth"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty \(0 bytes\)"):
        load_model(path)


def test_unknown_file_format(tmp_path):
    path = tmp_path / "sam.pth"
    path.write_bytes(b"this is not a checkpoint at all\n" * 10)
    with pytest.raises(CheckpointError, match="not a checkpoint format"):
        load_model(path)


def test_truncated_safetensors(tiny_checkpoint, tmp_path):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_model(folder)


def test_truncated_pth(tiny_meta_checkpoint, tmp_path):
    path = tmp_path / "sam.pth"
    path.write_bytes(tiny_meta_checkpoint.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="Could not read .* as a PyTorch state dict"):
        load_model(path)


def test_not_a_sam_state_dict(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 2), "fc.bias": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="not a SAM checkpoint"):
        load_model(path)


def test_missing_tensor_is_named(tiny_checkpoint, tmp_path):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    sd = load_file(folder / "model.safetensors")
    del sd["mask_decoder.iou_token.weight"]
    save_file(sd, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"1 missing tensor\(s\): mask_decoder.iou_token"):
        load_model(folder)


def test_unexpected_tensor_is_named(tiny_checkpoint, tmp_path):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    sd = load_file(folder / "model.safetensors")
    sd["mask_decoder.extra_head.weight"] = torch.zeros(3)
    save_file(sd, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match="unexpected tensor.*mask_decoder.extra_head.weight"):
        load_model(folder)


def test_shape_mismatch_names_the_tensor(tiny_checkpoint, tmp_path):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    config["vision_config"]["mlp_dim"] = 64
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        CheckpointError,
        match=r"vision_encoder\.layers\.0\.mlp\.lin1\.(weight|bias) has shape .* expects",
    ):
        load_model(folder)


def test_wrong_model_type(tiny_checkpoint, tmp_path):
    folder = copy_checkpoint(tiny_checkpoint, tmp_path / "ckpt")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "sam2"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="describes a 'sam2' model"):
        load_model(folder)


def test_cuda_requested_without_gpu(tiny_checkpoint):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        load_model(tiny_checkpoint, device="cuda")


def test_device_auto_is_inspectable(tiny_checkpoint):
    model = load_model(tiny_checkpoint)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert model.device.type == expected
    assert model.dtype == torch.float32
