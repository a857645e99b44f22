"""Fine-tuning end to end on a small synthetic dataset with the tiny random-weight model: the
command line writes a folder that our engine and transformers load with identical outputs,
plus training.json and curves.png; stopping or Ctrl+C keeps a valid checkpoint; a bad dataset
is refused before any training."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch
from oracle import hf_predict
from PIL import Image
from synthetic_shapes import make_dataset

from sam import SamPredictor, load_model
from sam.errors import DatasetError, FinetuneError
from sam.evaluation import evaluate, read_coco
from sam.finetune import FinetuneConfig, train
from sam.finetune.__main__ import main
from sam.finetune.data import split_by_image

# Enough steps at a from-scratch learning rate for the fresh tiny model to learn (bench/README.md).
EPOCHS = "12"

QUICK = FinetuneConfig(
    epochs=2, lr=1e-4, batch_size=4, val_fraction=0.25, val_max_clicks=2, corrections=1
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    annotations, images_dir = make_dataset(root, n_images=4, seed=7)
    return annotations, images_dir


@pytest.fixture(scope="module")
def cli_run(tiny_checkpoint, dataset, tmp_path_factory):
    annotations, images_dir = dataset
    out = tmp_path_factory.mktemp("finetuned") / "model"
    args = [
        "--model", str(tiny_checkpoint), "--device", "cpu",
        "--coco", str(annotations), "--images", str(images_dir), "--out", str(out),
        "--epochs", "2", "--lr", "1e-4", "--batch-size", "4", "--val-fraction", "0.25",
        "--val-max-clicks", "2", "--seed", "3",
    ]  # fmt: skip
    assert main(args) == 0
    return out


def predict_logits(source, image: np.ndarray) -> np.ndarray:
    predictor = SamPredictor(load_model(source, device="cpu"))
    predictor.set_image(image)
    _, _, logits = predictor.predict(
        point_coords=[[60, 50], [150, 120]], point_labels=[1, 0], multimask_output=True
    )
    return logits


def test_cli_writes_a_folder_ours_and_transformers_load_identically(cli_run, dataset):
    from transformers import SamModel

    image = np.asarray(Image.open(next(dataset[1].glob("*.png"))).convert("RGB"))
    ours = predict_logits(cli_run, image)
    reference = hf_predict(
        SamModel.from_pretrained(cli_run).eval(),
        image,
        points=[[60, 50], [150, 120]],
        labels=[1, 0],
    )
    np.testing.assert_allclose(ours, reference.logits, atol=1e-4, rtol=1e-4)


def test_cli_writes_training_json_and_curves(cli_run):
    report = json.loads((cli_run / "training.json").read_text())
    assert report["data"]["train_images"] == 3 and report["data"]["val_images"] == 1
    assert report["settings"]["seed"] == 3 and report["settings"]["train"] == "prompt-decoder"
    epochs = report["epochs"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert epochs[0]["train_loss"] is None
    assert all(np.isfinite(e["train_loss"]) and e["steps"] >= 1 for e in epochs[1:])
    assert report["best_epoch"] in (0, 1, 2) and report["stopped_by"] == "epochs"
    for epoch in epochs:
        assert 0.0 <= epoch["val"]["miou_1click"] <= 1.0 and epoch["val"]["n_objects"] >= 1
    with Image.open(cli_run / "curves.png") as curves:
        assert curves.size == (1080, 260)
        assert len(curves.getcolors(maxcolors=10000) or []) > 3  # lines were drawn


def test_stop_event_keeps_the_best_checkpoint_and_leaves_the_model_alone(
    tiny_checkpoint, dataset, tmp_path
):
    engine = load_model(tiny_checkpoint, device="cpu")
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    flags = {k: p.requires_grad for k, p in engine.model.named_parameters()}
    stop = threading.Event()
    phases = []

    def progress(event):
        phases.append(event.phase)
        if event.phase == "train":
            stop.set()  # after the first step

    images = read_coco(*dataset)
    result = train(engine, images, tmp_path / "out", QUICK, progress=progress, stop=stop)
    assert result.stopped_by == "stop"
    assert [r.epoch for r in result.history] == [0, 1] and result.history[1].steps == 1
    assert {"encode", "validate", "train"} <= set(phases)
    # The caller's model was not trained (annotation goes on with it meanwhile).
    for key, value in engine.model.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert {k: p.requires_grad for k, p in engine.model.named_parameters()} == flags
    assert load_model(tmp_path / "out", device="cpu") is not None


def test_curves_are_drawn_after_each_epoch_while_the_run_goes_on(
    tiny_checkpoint, dataset, tmp_path
):
    """A page polling the run shows the curves as soon as epoch 1 is measured."""
    stop = threading.Event()
    seen = []

    def progress(event):
        if event.phase == "train" and event.epoch == 2 and not seen:
            curves = tmp_path / "out" / "curves.png"
            seen.append(curves.is_file() and Image.open(curves).size)
            stop.set()

    engine = load_model(tiny_checkpoint, device="cpu")
    result = train(
        engine, read_coco(*dataset), tmp_path / "out", QUICK, progress=progress, stop=stop
    )
    assert result.stopped_by == "stop"
    assert seen and seen[0] and seen[0][0] > 0
    assert not list((tmp_path / "out").glob(".*partial"))


def test_ctrl_c_keeps_the_starting_checkpoint(tiny_checkpoint, dataset, tmp_path):
    def progress(event):
        if event.phase == "train":
            raise KeyboardInterrupt

    images = read_coco(*dataset)
    engine = load_model(tiny_checkpoint, device="cpu")
    result = train(engine, images, tmp_path / "out", QUICK, progress=progress)
    assert result.stopped_by == "interrupt" and result.best_epoch == 0
    image = np.asarray(Image.open(images[0].path).convert("RGB"))
    np.testing.assert_allclose(
        predict_logits(tmp_path / "out", image), predict_logits(tiny_checkpoint, image), atol=1e-5
    )
    assert json.loads((tmp_path / "out" / "training.json").read_text())["stopped_by"] == (
        "interrupt"
    )


def test_bad_dataset_is_refused_before_training(tiny_checkpoint, dataset, tmp_path):
    engine = load_model(tiny_checkpoint, device="cpu")
    images = read_coco(*dataset)
    with pytest.raises(DatasetError, match="at least 2 annotated images"):
        train(engine, images[:1], tmp_path / "one", QUICK)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / images[0].name).write_bytes(b"garbage")
    moved = [type(images[0])(broken / images[0].name, images[0].name, images[0].objects)]
    with pytest.raises(DatasetError, match="cannot be read"):
        train(engine, moved + images[1:], tmp_path / "bad", QUICK)
    with pytest.raises(FinetuneError, match="encoder-lora"):
        train(engine, images, tmp_path / "mode", FinetuneConfig(train="encoder-full"))
    assert not any((tmp_path / name).exists() for name in ("one", "bad", "mode"))


def test_split_is_by_image_and_follows_the_seed(dataset):
    images = read_coco(*dataset)
    train_a, val_a = split_by_image(images, 0.25, seed=1)
    _, val_b = split_by_image(images, 0.25, seed=1)
    assert [i.name for i in val_a] == [i.name for i in val_b]
    assert {i.name for i in train_a}.isdisjoint(i.name for i in val_a)
    assert len(train_a) + len(val_a) == len(images) and len(val_a) == 1
    with pytest.raises(FinetuneError, match="val-fraction"):
        split_by_image(images, 1.0, seed=1)


@pytest.fixture(scope="module")
def fresh_checkpoint(tmp_path_factory):
    """A random-weight tiny SAM as a training run would start from: transformers' own
    initialisation (std 0.02) for the prompt encoder and mask decoder, and the test model's
    random image encoder (transformers initialises that one to ~0, which would make every
    embedding alike). ``tiny_checkpoint`` scales every decoder weight to unit-variance outputs for
    the parity tests, a start no training run has."""
    from checkpoints import TINY_DIMS, random_hf_sam, save_hf_checkpoint
    from transformers import SamModel

    parity = random_hf_sam(TINY_DIMS, seed=0)
    torch.manual_seed(0)
    model = SamModel(parity.config).eval()
    model.vision_encoder.load_state_dict(parity.vision_encoder.state_dict())
    model.shared_image_embedding.load_state_dict(parity.shared_image_embedding.state_dict())
    model.prompt_encoder.shared_embedding.load_state_dict(
        parity.shared_image_embedding.state_dict()
    )
    return save_hf_checkpoint(model, tmp_path_factory.mktemp("fresh-tiny"))


def test_training_improves_held_out_one_click_miou(fresh_checkpoint, tmp_path):
    annotations, images_dir = make_dataset(tmp_path / "data", n_images=8, seed=0)
    out = tmp_path / "model"
    args = [
        "--model", str(fresh_checkpoint), "--device", "cpu",
        "--coco", str(annotations), "--images", str(images_dir), "--out", str(out),
        "--epochs", EPOCHS, "--lr", "3e-3", "--batch-size", "4", "--val-fraction", "0.25",
        "--val-max-clicks", "1", "--corrections", "0", "--seed", "0",
    ]  # fmt: skip
    assert main(args) == 0
    report = json.loads((out / "training.json").read_text())
    before = report["epochs"][0]["val"]["miou_1click"]
    best = report["epochs"][report["best_epoch"]]["val"]["miou_1click"]
    assert best - before >= 0.10, [e["val"]["miou_1click"] for e in report["epochs"]]
    # The folder holds that better model: the held-out images measured again with it.
    held_out = [
        image
        for image in read_coco(annotations, images_dir)
        if image.name in report["data"]["val_image_names"]
    ]
    again = evaluate(load_model(out, device="cpu"), held_out, max_clicks=1).overall
    assert again.miou_1click == pytest.approx(best, abs=1e-4)


def test_images_the_engine_already_holds_are_trained_on(tiny_checkpoint, dataset, tmp_path):
    """The app's engine has the images it showed in memory: training still finds them (they
    used to be missing from the training cache: 'A cached embedding disappeared')."""
    engine = load_model(tiny_checkpoint, device="cpu")
    images = read_coco(*dataset)
    predictor = SamPredictor(engine)
    for image in images:
        predictor.set_image(np.asarray(Image.open(image.path).convert("RGB")))
    stop = threading.Event()

    def progress(event):
        if event.phase == "train":
            stop.set()

    result = train(engine, images, tmp_path / "out", QUICK, progress=progress, stop=stop)
    assert result.stopped_by == "stop" and result.history[1].steps == 1
