"""Loading hub repo ids through ``sam.load_model`` against a fake hub on 127.0.0.1.

Nothing of ours is mocked: ``huggingface_hub.hf_hub_download`` makes its real HTTP requests to
``tests/hub_server.FakeHub`` and fills a real (temporary) cache, exactly as it would from
huggingface.co, and every failure goes through ``sam.checkpoint._hub_files``' error mapping.
"""

from __future__ import annotations

import logging
import shutil
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from checkpoints import predict_once
from hub_server import FakeHub, unused_endpoint, use_hub
from safetensors.torch import load_file, save_file

from sam import CheckpointError, load_model

REPO = "someone/tiny-sam"
BIN_REPO = "someone/tiny-sam-bin"
NO_WEIGHTS_REPO = "someone/not-a-model"
GATED_REPO = "someone/gated-sam"
CHANGED_TENSOR = "mask_decoder.mask_tokens.weight"  # feeds the mask logits directly


def assert_predicts(model, expected: tuple, image: np.ndarray) -> None:
    for got, want in zip(predict_once(model, image), expected, strict=True):
        np.testing.assert_array_equal(got, want)


def record_hub_retry_waits(monkeypatch) -> list[float]:
    """Record instead of sleep huggingface_hub's retry backoff (1+2+4+8+8 s per failing file)."""
    import huggingface_hub.utils._http as hf_http

    waits: list[float] = []
    monkeypatch.setattr(hf_http, "time", types.SimpleNamespace(sleep=waits.append))
    return waits


@pytest.fixture(scope="module")
def repo_folders(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Local folders the fake hub serves: the tiny checkpoint, a variant, a .bin-only copy..."""
    root = tmp_path_factory.mktemp("hub-repos")
    variant = root / "v2"
    shutil.copytree(tiny_checkpoint, variant)
    tensors = load_file(variant / "model.safetensors")
    tensors[CHANGED_TENSOR] = tensors[CHANGED_TENSOR] + 0.5
    save_file(tensors, variant / "model.safetensors", metadata={"format": "pt"})

    bin_only = root / "bin"
    bin_only.mkdir()
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copy(tiny_checkpoint / name, bin_only)
    torch.save(load_file(tiny_checkpoint / "model.safetensors"), bin_only / "pytorch_model.bin")

    no_weights = root / "no-weights"
    no_weights.mkdir()
    shutil.copy(tiny_checkpoint / "config.json", no_weights)
    (no_weights / "README.md").write_text("# Not a model\n")
    return {"main": tiny_checkpoint, "v2": variant, "bin": bin_only, "no-weights": no_weights}


def fake_hub(folders: dict) -> FakeHub:
    return FakeHub(
        {
            REPO: {"main": folders["main"], "v2": folders["v2"], "v1.0": folders["main"]},
            BIN_REPO: folders["bin"],
            NO_WEIGHTS_REPO: folders["no-weights"],
            GATED_REPO: folders["main"],
        },
        gated=[GATED_REPO],
    )


@pytest.fixture
def hub(repo_folders, tmp_path, monkeypatch):
    """A running fake hub, with huggingface_hub pointed at it and at an empty cache."""
    with fake_hub(repo_folders) as running:
        use_hub(monkeypatch, endpoint=running.endpoint, cache=tmp_path / "hf-cache")
        yield running


@pytest.fixture(scope="module")
def image(photos) -> np.ndarray:
    return photos["dog.jpg"]


@pytest.fixture(scope="module")
def expected(tiny_checkpoint, image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What loading the local folder predicts: masks, scores and logits."""
    return predict_once(load_model(tiny_checkpoint, device="cpu"), image)


def test_repo_id_downloads_then_loads_offline_from_the_cache(
    repo_folders, expected, image, tmp_path, monkeypatch
):
    cache = tmp_path / "hf-cache"
    with fake_hub(repo_folders) as hub:
        use_hub(monkeypatch, endpoint=hub.endpoint, cache=cache)
        online = load_model(REPO, device="cpu")
        requested = list(hub.requests)
    assert_predicts(online, expected, image)
    # The weights came through the hub (LFS redirect to the "CDN") into the empty cache.
    assert ("hub", "HEAD", f"/{REPO}/resolve/main/model.safetensors") in requested
    assert any(role == "cdn" and method == "GET" for role, method, _ in requested)
    snapshot = cache / "models--someone--tiny-sam" / "snapshots" / hub.commit(REPO)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json"):
        assert (snapshot / name).read_bytes() == (repo_folders["main"] / name).read_bytes()

    # A later session of a user who went offline: the server is gone, HF_HUB_OFFLINE=1.
    use_hub(monkeypatch, endpoint=hub.endpoint, cache=cache, offline=True)
    offline = load_model(REPO, device="cpu")
    assert_predicts(offline, expected, image)

    # Offline without saying so (HF_HUB_OFFLINE unset, nothing listening): the cache is used
    # too, at once (no retries: every file asked for is in the snapshot).
    use_hub(monkeypatch, endpoint=hub.endpoint, cache=cache, offline=False)
    waits = record_hub_retry_waits(monkeypatch)
    unreachable = load_model(REPO, device="cpu")
    assert waits == []
    assert_predicts(unreachable, expected, image)


def test_revision_selects_a_branch_tag_or_commit(hub, repo_folders, expected, image):
    variant = load_file(repo_folders["v2"] / "model.safetensors")[CHANGED_TENSOR]
    original = load_file(repo_folders["main"] / "model.safetensors")[CHANGED_TENSOR]
    assert not torch.equal(variant, original)

    main = load_model(REPO, device="cpu")
    v2 = load_model(REPO, device="cpu", revision="v2")
    tagged = load_model(REPO, device="cpu", revision="v1.0")
    by_commit = load_model(REPO, device="cpu", revision=hub.commit(REPO, "v2"))

    assert torch.equal(main.model.state_dict()[CHANGED_TENSOR], original)
    assert torch.equal(tagged.model.state_dict()[CHANGED_TENSOR], original)
    assert torch.equal(v2.model.state_dict()[CHANGED_TENSOR], variant)
    assert torch.equal(by_commit.model.state_dict()[CHANGED_TENSOR], variant)
    v2_logits = predict_once(v2, image)[2]
    assert not np.array_equal(v2_logits, expected[2])  # main predicts `expected`
    np.testing.assert_array_equal(predict_once(by_commit, image)[2], v2_logits)
    assert ("hub", "HEAD", f"/{REPO}/resolve/v2/model.safetensors") in hub.requests


def test_repo_with_only_pytorch_model_bin_loads(hub, expected, image):
    model = load_model(BIN_REPO, device="cpu")
    assert_predicts(model, expected, image)
    heads = [path for role, method, path in hub.requests if method == "HEAD"]
    assert heads.index(f"/{BIN_REPO}/resolve/main/model.safetensors") < heads.index(
        f"/{BIN_REPO}/resolve/main/pytorch_model.bin"
    )


def test_repo_with_only_pytorch_model_bin_loads_offline_from_the_cache(
    repo_folders, expected, image, tmp_path, monkeypatch
):
    cache = tmp_path / "hf-cache"
    with fake_hub(repo_folders) as hub:
        use_hub(monkeypatch, endpoint=hub.endpoint, cache=cache)
        load_model(BIN_REPO, device="cpu")
    use_hub(monkeypatch, endpoint=hub.endpoint, cache=cache, offline=True)
    model = load_model(BIN_REPO, device="cpu")
    assert_predicts(model, expected, image)


def test_cached_bin_repo_loads_without_retries_when_the_hub_is_down(
    repo_folders, tmp_path, monkeypatch
):
    cache = tmp_path / "hf-cache"
    with fake_hub(repo_folders) as hub:
        use_hub(monkeypatch, endpoint=hub.endpoint, cache=cache)
        load_model(BIN_REPO, device="cpu")
    # The hub is gone but HF_HUB_OFFLINE is not set (a laptop that lost its network).
    use_hub(monkeypatch, endpoint=hub.endpoint, cache=cache, offline=False)
    waits = record_hub_retry_waits(monkeypatch)
    load_model(BIN_REPO, device="cpu")
    assert waits == [], f"the user waited {sum(waits)} s of retries before loading"


@pytest.mark.parametrize(
    ("repo_id", "revision", "message"),
    [
        ("someone/no-such-repo", None, r"'someone/no-such-repo' does not exist .*spelling"),
        (REPO, "no-such-branch", r"'someone/tiny-sam' has no revision 'no-such-branch'"),
        (GATED_REPO, None, r"'someone/gated-sam' is gated: accept its terms .*hf auth login"),
        (NO_WEIGHTS_REPO, None, r"has no model\.safetensors or pytorch_model\.bin; is it a SAM"),
    ],
    ids=["missing-repo", "missing-revision", "gated", "no-weights"],
)
def test_hub_errors_say_what_to_do(hub, repo_id, revision, message):
    with pytest.raises(CheckpointError, match=message):
        load_model(repo_id, device="cpu", revision=revision)
    assert any(path.startswith(f"/{repo_id}/resolve/") for _, _, path in hub.requests)


def test_unreachable_hub_says_what_to_do(tmp_path, monkeypatch, caplog):
    endpoint = unused_endpoint()
    use_hub(monkeypatch, endpoint=endpoint, cache=tmp_path / "hf-cache", offline=False)
    waits = record_hub_retry_waits(monkeypatch)
    with (
        caplog.at_level(logging.INFO, logger="sam.checkpoint"),
        pytest.raises(CheckpointError) as err,
    ):
        load_model(REPO, device="cpu")
    # The log names the address as the user set it (HF_ENDPOINT), not a parsed object.
    assert f"The Hugging Face hub ({endpoint}) cannot be reached" in caplog.text
    assert waits == [], "an unreachable hub must fail at once, not after retries"
    message = str(err.value)
    assert "'someone/tiny-sam' is not in the local Hugging Face cache" in message
    assert "the hub cannot be reached" in message
    assert "Connect once to download it, or pass a local folder or .pth file" in message
