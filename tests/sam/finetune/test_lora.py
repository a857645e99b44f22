"""``--train encoder-lora``: low-rank adapters on the image encoder's attention, trained with
the decoder and merged into the weights when saved, so the folder loads in our engine and in
transformers with the adapted model's outputs."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image
from synthetic_shapes import make_dataset

from sam import load_model
from sam.cache import EmbeddingCache
from sam.disk_cache import EmbeddingDiskCache
from sam.errors import FinetuneError
from sam.evaluation import read_coco
from sam.finetune import FinetuneConfig, save_model, train
from sam.finetune.data import EmbeddedImages
from sam.finetune.trainer import interactive_loss, trainable_copy, trainable_parameters

LORA = FinetuneConfig(
    train="encoder-lora", epochs=1, lr=1e-3, batch_size=2, val_fraction=0.34, val_max_clicks=1,
    corrections=0,
)  # fmt: skip


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("shapes-lora"), n_images=3, seed=11)


@pytest.fixture(scope="module")
def pixels(tiny_checkpoint, dataset):
    engine = load_model(tiny_checkpoint, device="cpu")
    image = np.asarray(Image.open(next(dataset[1].glob("*.png"))).convert("RGB"))
    return engine.prepare_pixels(image)[0]


def encode(model, pixels: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model.encode_image(pixels)


def test_saved_merge_equals_the_adapted_forward_in_ours_and_transformers(
    tiny_checkpoint, pixels, tmp_path
):
    from transformers import SamModel

    original = load_model(tiny_checkpoint, device="cpu").model
    adapted = trainable_copy(original, "encoder-lora")
    # Adapters start at zero: the adapted encoder is the original one.
    torch.testing.assert_close(encode(adapted, pixels), encode(original, pixels))
    with torch.no_grad():
        for name, param in adapted.named_parameters():
            if name.endswith(".up"):
                param.normal_(0, 0.2)
    expected = encode(adapted, pixels)
    assert not torch.allclose(expected, encode(original, pixels), atol=1e-3)

    folder = save_model(adapted, tmp_path / "merged")
    torch.testing.assert_close(
        encode(load_model(folder, device="cpu").model, pixels), expected, atol=1e-5, rtol=1e-5
    )
    hf = SamModel.from_pretrained(folder).eval()
    with torch.no_grad():
        reference = hf.get_image_embeddings(pixels)
    torch.testing.assert_close(reference, expected, atol=1e-4, rtol=1e-4)


def test_a_training_step_moves_the_adapters_not_the_base_weights(
    tiny_checkpoint, dataset, tmp_path
):
    engine = load_model(tiny_checkpoint, device="cpu")
    images = read_coco(*dataset)
    data = EmbeddedImages(
        engine, images, EmbeddingDiskCache(tmp_path, engine), EmbeddingCache(2**26)
    )
    flags = {k: p.requires_grad for k, p in engine.model.named_parameters()}
    model = trainable_copy(engine.model, "encoder-lora").train()
    params = trainable_parameters(model, "encoder-lora")
    assert any(p.shape[0] == 4 or p.shape[1] == 4 for p in params)  # rank-4 adapters included
    pixels, rows = data.pixel_batch(data.objects[:2])
    before = encode(model, pixels)
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    with torch.enable_grad():
        features = model.encode_image(pixels)[rows]
        loss = interactive_loss(model, features, data.targets(data.objects[:2]), 0,
                                torch.Generator().manual_seed(0))  # fmt: skip
        loss.backward()
    optimizer.step()
    assert not torch.allclose(encode(model, pixels), before, atol=1e-5)  # the encoder moved
    # ... through its adapters: the base weights and the caller's model are as loaded.
    base = dict(model.named_parameters())
    for name, value in engine.model.vision_encoder.named_parameters():
        if name.endswith(("attn.qkv.weight", "attn.proj.weight")):
            stem = name.removesuffix(".weight")
            assert torch.equal(
                base[f"vision_encoder.{stem}.parametrizations.weight.original"], value
            )
        else:
            assert torch.equal(base[f"vision_encoder.{name}"], value)
    assert {k: p.requires_grad for k, p in engine.model.named_parameters()} == flags


def test_encoder_lora_run_writes_a_loadable_folder(tiny_checkpoint, dataset, tmp_path):
    engine = load_model(tiny_checkpoint, device="cpu")
    stop = threading.Event()

    def progress(event):
        if event.phase == "train":
            stop.set()

    result = train(
        engine, read_coco(*dataset), tmp_path / "out", LORA, progress=progress, stop=stop
    )
    assert result.stopped_by == "stop" and result.history[1].steps == 1
    assert load_model(tmp_path / "out", device="cpu") is not None


def test_sam2_encoder_lora_is_refused(tiny_sam2_checkpoint, dataset, tmp_path):
    engine = load_model(tiny_sam2_checkpoint, device="cpu")
    with pytest.raises(FinetuneError, match="SAM 2"):
        train(engine, read_coco(*dataset), tmp_path / "out", LORA)
    assert not (tmp_path / "out").exists()
