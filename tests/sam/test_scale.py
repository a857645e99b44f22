"""Precompute on Ray: a local cluster started here, a tiny random-weight model, 12 images.

The Ray path must write exactly the files the local path writes (names, tensors, metadata),
skip what is stored before scheduling, survive a worker killed mid-run (a rerun completes the
store) and report an unreadable image without stopping.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageOps
from safetensors import safe_open

from sam import SamPredictor, load_model
from sam import scale as scale_module
from sam.automatic import AutoMaskConfig
from sam.dataset.autolabel import Labeller, Task, autolabel, autolabel_on_ray
from sam.dataset.store import AnnotationStore
from sam.disk_cache import EmbeddingDiskCache
from sam.errors import ClusterError, EmbeddingStoreError
from sam.precompute import check_writable, main, precompute
from sam.scale import EncoderWorker, RayOptions, precompute_on_ray, start_actors

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[2]
OPTIONS = RayOptions(address="auto", num_workers=2, batch_size=1)


@pytest.fixture(scope="module")
def ray_session():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        logging_level="ERROR",
        runtime_env={"env_vars": {"PYTHONPATH": str(REPO)}},
    )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory, example_photos) -> Path:
    """12 distinct small photos (each example as is, mirrored and cropped) and one file that
    is not an image."""
    folder = tmp_path_factory.mktemp("scale-images")
    for path in sorted(example_photos.glob("*.jpg")):
        with Image.open(path) as img:
            small = img.convert("RGB")
        small.thumbnail((320, 320))
        w, h = small.size
        small.save(folder / f"{path.stem}.png")
        ImageOps.mirror(small).save(folder / f"{path.stem}_mirrored.png")
        small.crop((0, 0, w * 2 // 3, h * 2 // 3)).save(folder / f"{path.stem}_crop.jpg")
    (folder / "broken.png").write_text("not an image")
    return folder


@pytest.fixture(scope="module")
def local_store(tmp_path_factory, tiny_checkpoint, images) -> Path:
    """The model folder the local path fills for ``images``."""
    model = load_model(tiny_checkpoint, device="cpu")
    cache = EmbeddingDiskCache(tmp_path_factory.mktemp("local-store"), model)
    summary = precompute(SamPredictor(model, cache), images, progress=False)
    assert (summary.encoded, summary.skipped, list(summary.failed)) == (12, 0, ["broken.png"])
    return cache.folder


def stored(folder: Path) -> dict[str, tuple[bytes, dict[str, str]]]:
    """Every embedding of a model folder: file name -> (tensor bytes, metadata)."""
    found = {}
    for path in sorted(folder.glob("*.safetensors")):
        with safe_open(path, "pt") as fh:
            found[path.name] = (fh.get_tensor("features").numpy().tobytes(), fh.metadata())
    return found


def run(images: Path, root: Path, checkpoint: Path):
    return precompute_on_ray(str(checkpoint), images, root, OPTIONS, device="cpu")


def test_ray_writes_the_local_paths_embeddings_and_a_rerun_schedules_nothing(
    ray_session, images, local_store, tiny_checkpoint, tmp_path, monkeypatch
):
    summary, folder = run(images, tmp_path, tiny_checkpoint)
    assert (summary.encoded, summary.skipped, summary.lost) == (12, 0, [])
    assert list(summary.failed) == ["broken.png"]
    assert "not a recognised image format" in summary.failed["broken.png"]
    assert folder.name == local_store.name  # the model's fingerprint: the app looks there
    expected = stored(local_store)
    assert len(expected) == 12 and stored(folder) == expected  # bit-identical, same metadata

    scheduled = []
    real = scale_module.run_batches

    def spy(ray, actors, method, items, *args):
        scheduled.extend(items)
        return real(ray, actors, method, items, *args)

    monkeypatch.setattr(scale_module, "run_batches", spy)
    summary, _ = run(images, tmp_path, tiny_checkpoint)
    assert scheduled == ["broken.png"]  # only the file that failed is tried again
    assert (summary.encoded, summary.skipped, list(summary.failed)) == (0, 12, ["broken.png"])


def test_a_killed_worker_loses_only_its_images_in_flight(
    ray_session, images, local_store, tiny_checkpoint, tmp_path, monkeypatch
):
    real = scale_module.run_batches
    killed = []

    def kill_after_first_result(ray, actors, method, items, batch_size, on_results, desc):
        victim = ray.get(actors[0].pid.remote())

        def hook(results):
            on_results(results)
            if not killed:
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        return real(ray, actors, method, items, batch_size, hook, desc)

    monkeypatch.setattr(scale_module, "run_batches", kill_after_first_result)
    first, folder = run(images, tmp_path, tiny_checkpoint)
    assert killed
    assert 1 <= len(first.lost) <= 2  # a batch of one image running, one queued
    assert first.encoded + len(first.lost) == 12 and list(first.failed) == ["broken.png"]

    monkeypatch.setattr(scale_module, "run_batches", real)
    second, _ = run(images, tmp_path, tiny_checkpoint)
    assert second.lost == [] and second.encoded + second.skipped == 12
    assert second.encoded >= 1 and second.skipped >= 12 - len(first.lost)
    assert stored(folder) == stored(local_store)


def test_cli_on_ray_finds_what_the_local_path_stored_and_names_the_unreadable_file(
    ray_session, images, local_store, tiny_checkpoint, tmp_path, capsys
):
    cache = tmp_path / "store"
    shutil.copytree(local_store, cache / local_store.name)
    argv = ["--model", str(tiny_checkpoint), "--images", str(images), "--cache-dir", str(cache)]
    argv += ["--device", "cpu", "--ray", "auto", "--num-workers", "2", "--batch-size", "3"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "encoded 0, skipped 12, failed 1 (broken.png)" in out
    assert "could not read broken.png: " in err


def test_autolabel_on_ray_stores_the_local_paths_proposals_for_review(
    ray_session, images, local_store, tiny_checkpoint, tmp_path
):
    project = tmp_path / "project"
    project.mkdir()
    for name in ("dog.png", "truck_crop.jpg", "groceries_mirrored.png", "broken.png"):
        shutil.copy(images / name, project / name)
    cache = tmp_path / "embeddings"  # the precomputed embeddings: workers only decode
    shutil.copytree(local_store, cache / local_store.name)
    task = Task(everything=AutoMaskConfig(3, pred_iou_thresh=-10, stability_score_thresh=0))

    def on_ray_run(store):
        return autolabel_on_ray(str(tiny_checkpoint), store, project, cache, task, OPTIONS, "cpu")

    with AnnotationStore.for_folder(project, tmp_path / "ray.sqlite") as store:
        outcome = on_ray_run(store)
        assert (outcome.labelled, outcome.lost, list(outcome.failed)) == (3, [], ["broken.png"])
        on_ray = {r.path: store.objects(r.id, reviewed=False) for r in store.images()}
        assert all(not p.reviewed and p.source == "everything" for v in on_ray.values() for p in v)
        assert outcome.proposals == sum(map(len, on_ray.values())) > 0
        again = on_ray_run(store)
        assert (again.labelled, again.skipped) == (0, 3)  # only broken.png is tried again

    model = load_model(tiny_checkpoint, device="cpu")
    labeller = Labeller(SamPredictor(model, EmbeddingDiskCache(cache, model)), project, task)
    with AnnotationStore.for_folder(project, tmp_path / "local.sqlite") as store:
        autolabel(labeller, store, progress=False)
        here = {r.path: store.objects(r.id, reviewed=False) for r in store.images()}
    assert {k: [(p.rle, p.score, p.prompts) for p in v] for k, v in on_ray.items()} == {
        k: [(p.rle, p.score, p.prompts) for p in v] for k, v in here.items()
    }


def test_a_worker_that_cannot_see_the_store_says_so(ray_session, tiny_checkpoint, images):
    args = (str(tiny_checkpoint), "cpu", "auto", "/nonexistent/store", str(images), "probe")
    with pytest.raises(ClusterError, match="not reachable from the worker.*shared filesystem"):
        start_actors(ray_session, EncoderWorker, RayOptions(num_workers=1), *args)


def test_an_unwritable_store_is_refused_at_start_up(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(EmbeddingStoreError, match="Cannot write embeddings to .*--cache-dir"):
        check_writable(tmp_path / "file" / "embeddings")


def test_without_ray_the_option_says_how_to_install_it(
    tiny_checkpoint, images, tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    argv = ["--model", str(tiny_checkpoint), "--images", str(images), "--ray", "local"]
    assert main([*argv, "--cache-dir", str(tmp_path)]) == 2
    assert "pip install '.[scale]'" in capsys.readouterr().err
