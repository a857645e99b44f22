"""Embeddings on disk, background prefetch, and folder precompute: no waiting for the encoder."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from checkpoints import TINY_DIMS, random_hf_sam, save_hf_checkpoint
from PIL import Image

from sam import SamPredictor, load_model
from sam.disk_cache import EmbeddingDiskCache
from sam.prefetch import Prefetcher


def count_encodes(model, monkeypatch) -> list:
    calls = []
    original = model.encode_image

    def counting(pixels):
        calls.append(1)
        return original(pixels)

    monkeypatch.setattr(model, "encode_image", counting)
    return calls


@pytest.fixture
def folder(tmp_path, example_photos):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("dog.jpg", "truck.jpg", "groceries.jpg"):
        shutil.copy(example_photos / name, images / name)
    return images


def test_reopening_reads_embeddings_from_disk(tiny_checkpoint, folder, tmp_path, monkeypatch):
    first = load_model(tiny_checkpoint, device="cpu")
    predictor = SamPredictor(first, EmbeddingDiskCache(tmp_path / "emb", first))
    predictor.set_image(folder / "dog.jpg")
    assert predictor.embedding_source == "encoder"
    expected = predictor.predict(np.array([[400, 260]]), np.array([1]))

    # A new app session: new model object, empty memory cache, same disk cache.
    second = load_model(tiny_checkpoint, device="cpu")
    calls = count_encodes(second, monkeypatch)
    predictor = SamPredictor(second, EmbeddingDiskCache(tmp_path / "emb", second))
    predictor.set_image(folder / "dog.jpg")
    assert predictor.embedding_source == "disk" and calls == []
    for a, b in zip(
        expected, predictor.predict(np.array([[400, 260]]), np.array([1])), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    predictor.set_image(folder / "dog.jpg")
    assert predictor.embedding_source == "memory"


def test_other_weights_use_another_folder(tiny_checkpoint, tmp_path):
    other = save_hf_checkpoint(random_hf_sam(TINY_DIMS, seed=5), tmp_path / "other")
    a = EmbeddingDiskCache(tmp_path / "emb", load_model(tiny_checkpoint, device="cpu"))
    b = EmbeddingDiskCache(tmp_path / "emb", load_model(other, device="cpu"))
    assert a.folder != b.folder
    assert a.folder == EmbeddingDiskCache(tmp_path / "emb", load_model(tiny_checkpoint)).folder


def test_corrupt_cache_file_is_re_encoded(tiny_checkpoint, folder, tmp_path, monkeypatch):
    model = load_model(tiny_checkpoint, device="cpu")
    cache = EmbeddingDiskCache(tmp_path / "emb", model)
    SamPredictor(model, cache).set_image(folder / "truck.jpg")
    (stored,) = cache.folder.glob("*.safetensors")
    stored.write_bytes(stored.read_bytes()[:100])
    fresh = load_model(tiny_checkpoint, device="cpu")
    calls = count_encodes(fresh, monkeypatch)
    predictor = SamPredictor(fresh, EmbeddingDiskCache(tmp_path / "emb", fresh))
    predictor.set_image(folder / "truck.jpg")
    assert calls == [1] and predictor.embedding_source == "encoder"


def test_prefetched_image_opens_without_encoder(tiny_checkpoint, folder, monkeypatch, tmp_path):
    model = load_model(tiny_checkpoint, device="cpu")
    calls = count_encodes(model, monkeypatch)
    broken = folder / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    prefetcher = Prefetcher(model)
    try:
        prefetcher.request([folder / "truck.jpg", broken, folder / "groceries.jpg"])
        assert prefetcher.wait_idle(timeout=120)
        status = prefetcher.status()
        assert status.done == 3 and status.failed == (str(broken),) and status.idle
    finally:
        prefetcher.close()
    assert len(calls) == 2
    predictor = SamPredictor(model)
    predictor.set_image(np.asarray(Image.open(folder / "groceries.jpg").convert("RGB")))
    assert predictor.cache_hit and len(calls) == 2  # the click path ran no encoder


def test_precompute_cli_is_resumable(tiny_checkpoint, folder):
    (folder / "notes.png").write_text("not an image")
    command = [
        sys.executable,
        "-m",
        "sam.precompute",
        "--model",
        str(tiny_checkpoint),
        "--images",
        str(folder),
        "--device",
        "cpu",
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "encoded 3, skipped 0, failed 1 (notes.png)" in first.stdout
    assert "could not read notes.png" in first.stderr
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert "encoded 0, skipped 3, failed 1" in second.stdout
    assert len(list((folder / ".sam-annotator" / "embeddings").rglob("*.safetensors"))) == 3
