"""Training from the app (ui/training.py, ui/training_panel.py): one job at a time on a
snapshot of the project's accepted objects, Stop and closing the app keep the best checkpoint,
failures are messages without server paths, and the trained folder is one the page's Model box
may load. A tiny random-weight model on a few synthetic images keeps each run short."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from synthetic_shapes import SHAPES, make_dataset

from sam import load_model
from sam.errors import FinetuneError
from sam.evaluation import Summary, read_coco
from sam.finetune import FinetuneConfig
from ui.errors import TrainingError
from ui.layout import build_demo
from ui.models import ModelManager
from ui.project import Project
from ui.state import Session
from ui.training import JobState, TrainingJobs, eta_seconds, offered_modes
from ui.training_panel import metrics_html, status_html

QUICK = FinetuneConfig(batch_size=4, val_max_clicks=2, corrections=1)


def make_project(root: Path, n_images: int, annotated: int) -> Project:
    """A folder of synthetic shapes whose first ``annotated`` images hold their shapes as
    accepted objects."""
    annotations, images_dir = make_dataset(root, n_images=n_images, seed=5, size=(96, 128))
    project = Project(images_dir)
    for image in read_coco(annotations, images_dir)[:annotated]:
        masks = [(obj.mask(), obj.label or SHAPES[0]) for obj in image.objects]
        assert project.add_to_image(image.name, masks) == len(masks)
    return project


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    project = make_project(tmp_path_factory.mktemp("shapes"), n_images=3, annotated=2)
    yield project
    project.close()


@pytest.fixture
def jobs(project):
    jobs = TrainingJobs.for_project(project, base=QUICK)
    yield jobs
    jobs.close()
    shutil.rmtree(jobs.models_root, ignore_errors=True)


def engine(manager: ModelManager):
    return manager.predictor().engine


def test_a_run_trains_on_the_snapshot_and_writes_a_model_the_model_box_loads(
    jobs, project, manager
):
    before = len(project.store.objects())
    started = jobs.start(engine(manager), "tiny", "prompt-decoder", minutes=10, epochs=1)
    assert started.n_objects == before and started.n_images == 2
    # Annotation goes on meanwhile: the run keeps the objects it started with.
    image = project.store.images()[0]
    project.add_to_image(image.path, [(project.store.objects(image.id)[0].mask(), "circle")])
    state = jobs.wait(timeout=600)

    assert state is not None and state.phase == "finished", state
    result = state.result
    assert result is not None and result.stopped_by == "epochs"
    assert result.out_dir == jobs.models_root / state.name
    report = json.loads((result.out_dir / "training.json").read_text())
    assert report["data"]["train_objects"] + report["data"]["val_objects"] == before
    assert report["data"]["train_images"] == 1 and report["data"]["val_images"] == 1
    assert (result.out_dir / "curves.png").is_file() and state.curves is not None
    assert jobs.trained_models() == [state.name]
    assert load_model(result.out_dir, device="cpu").family

    # The page's Model box may load it by its name (the folder is the app's own), and the
    # name it shows holds no server path.
    page = ModelManager(str(result.out_dir.parent), device="cpu")
    page.allow_models_dir(jobs.models_root)
    source = page.page_source(state.name)
    assert Path(source) == result.out_dir.resolve()
    assert page.name(source) == state.name and "/" not in state.name


def test_a_second_start_is_refused_naming_the_running_job_and_stop_keeps_a_checkpoint(
    jobs, manager
):
    first = jobs.start(engine(manager), "tiny", "decoder", minutes=10, epochs=50)
    with pytest.raises(TrainingError, match=first.name) as refused:
        jobs.start(engine(manager), "tiny", "prompt-decoder", minutes=10, epochs=1)
    assert "already" in str(refused.value)
    assert jobs.stop().stop_requested
    state = jobs.wait(timeout=600)

    assert state is not None and state.phase == "stopped" and state.name == first.name
    assert state.result is not None and state.result.stopped_by == "stop"
    assert load_model(state.result.out_dir, device="cpu").family  # a valid checkpoint
    assert "best checkpoint so far is kept" in status_html(state, 0.0)
    with pytest.raises(TrainingError, match="No training is running"):
        jobs.stop()
    # Once it ended, another run may start.
    assert jobs.start(engine(manager), "tiny", "decoder", 10, 1).name != first.name
    jobs.close()


def test_closing_the_app_stops_a_run_and_keeps_its_best_checkpoint(jobs, manager):
    jobs.start(engine(manager), "tiny", "prompt-decoder", minutes=10, epochs=50)
    jobs.close(timeout=600)
    state = jobs.state()
    assert state is not None and state.phase == "stopped"
    assert jobs._thread is not None and not jobs._thread.is_alive()
    assert state.result is not None and (state.result.out_dir / "model.safetensors").is_file()


def test_too_few_annotated_images_are_refused_saying_how_many_are_needed(tmp_path, manager):
    project = make_project(tmp_path, n_images=2, annotated=1)
    try:
        jobs = TrainingJobs.for_project(project, base=QUICK)
        with pytest.raises(TrainingError, match="at least 2 images.*on 1"):
            jobs.start(engine(manager), "tiny", "prompt-decoder", 10, 1)
        assert jobs.state() is None and not jobs.models_root.exists()
    finally:
        project.close()


def test_settings_no_run_can_use_are_refused_before_anything_starts(jobs, manager):
    with pytest.raises(FinetuneError, match="not available"):
        jobs.start(engine(manager), "tiny", "everything", 10, 1)
    assert jobs.state() is None


def test_encoder_lora_on_a_sam2_model_is_refused_at_start_with_the_reason(
    jobs, tiny_sam2_checkpoint
):
    sam2 = load_model(tiny_sam2_checkpoint, device="cpu")
    with pytest.raises(FinetuneError, match="SAM 2.*prompt-decoder or decoder"):
        jobs.start(sam2, "tiny SAM 2", "encoder-lora", 10, 1)
    assert jobs.state() is None and not jobs.models_root.exists()


def test_a_bad_image_fails_the_run_with_a_message_and_no_folder(tmp_path, manager):
    project = make_project(tmp_path, n_images=2, annotated=2)
    try:
        broken = project.folder / project.store.images()[1].path
        broken.write_bytes(b"not an image")
        jobs = TrainingJobs.for_project(project, base=QUICK)
        jobs.start(engine(manager), "tiny", "prompt-decoder", 10, 1)
        state = jobs.wait(timeout=600)
        assert state is not None and state.phase == "failed"
        assert broken.name in state.error and str(tmp_path) not in state.error
        assert state.result is None and jobs.trained_models() == []
        assert "Training failed" in status_html(state, 0.0)
    finally:
        project.close()


def test_an_unexpected_failure_is_logged_with_its_traceback_and_shown_without_it(jobs, caplog):
    caplog.set_level(logging.ERROR)
    jobs.start(object(), "tiny", "prompt-decoder", 10, 1)  # not an engine: fails inside
    state = jobs.wait(timeout=600)
    assert state is not None and state.phase == "failed"
    assert "server log" in state.error and "Traceback" not in state.error
    assert "/" not in state.error
    assert any(record.exc_info for record in caplog.records)
    assert not (jobs.models_root / state.name).exists()


def test_the_panel_says_why_it_cannot_start_without_a_model(project, tmp_path):
    manager = ModelManager(str(tmp_path / "missing-model"), device="cpu")
    demo = build_demo(manager, media_dir=tmp_path / "media", project=project)
    panel = demo.sam_training  # type: ignore[attr-defined]
    view = panel.on_start(Session(), "prompt-decoder", 10, 1, 0)
    status = view[panel.status]
    assert "No model is loaded" in status and str(tmp_path) not in status
    assert panel.jobs.state() is None


def test_the_panel_refuses_a_zero_time_budget(project, manager, tmp_path):
    demo = build_demo(manager, media_dir=tmp_path / "media", project=project)
    panel = demo.sam_training  # type: ignore[attr-defined]
    view = panel.on_start(Session(), "prompt-decoder", 0, 1, 0)
    assert "more than 0 minutes" in view[panel.status] and panel.jobs.state() is None


def test_the_panel_sends_the_curves_once_per_drawing(project, manager, tmp_path):
    demo = build_demo(manager, media_dir=tmp_path / "media", project=project)
    panel = demo.sam_training  # type: ignore[attr-defined]
    panel.jobs = TrainingJobs.for_project(project, base=QUICK)
    try:
        assert panel.curves not in panel.on_refresh(0)  # nothing drawn, nothing shown
        panel.jobs.start(engine(manager), "tiny", "prompt-decoder", minutes=10, epochs=1)
        state = panel.jobs.wait(timeout=600)
        assert state is not None and state.phase == "finished"
        view = panel.on_refresh(0)
        drawing = view[panel.curves_shown]
        assert drawing and view[panel.curves]["value"].size[0] > 0
        assert view[panel.curves]["visible"] is True
        # The tab shows that drawing now: later polls do not send the picture again.
        assert panel.curves not in panel.on_refresh(drawing)
    finally:
        panel.jobs.close()
        shutil.rmtree(panel.jobs.models_root, ignore_errors=True)


def test_the_curves_are_found_while_the_run_goes_on(tmp_path):
    """The trainer redraws curves.png after each epoch; the state finds it before any result."""
    state = JobState("run", "tiny", "decoder", 10, 3, 2, 4, 0.0, 0.0, phase="train", epoch=2)
    assert state.curves is None
    state = replace(state, out_dir=tmp_path)
    assert state.curves is None
    (tmp_path / "curves.png").write_bytes(b"png")
    assert state.curves == tmp_path / "curves.png" and state.result is None


def test_modes_the_trainer_refuses_are_listed_with_its_reason():
    modes, refused = offered_modes()
    assert {"prompt-decoder", "decoder"} <= set(modes)
    assert "encoder-lora" in modes or "encoder-lora" in refused
    assert all(reason and mode not in modes for mode, reason in refused.items())


def summary(miou: float, noc: float) -> Summary:
    return Summary(5, miou, miou, miou, miou, noc, noc)


def test_the_before_after_table_marks_what_got_better():
    table = metrics_html(summary(0.40, 12.0), summary(0.55, 9.0))
    assert "On 5 held-out objects" in table
    assert table.count("sam-better") == 4  # three mIoUs up, NoC@85 down
    assert metrics_html(summary(0.5, 9.0), summary(0.4, 12.0)).count("sam-better") == 0


def test_the_status_escapes_names_and_estimates_the_time_left():
    state = JobState(
        name="finetuned-x", model_name="<b>evil</b>", mode="decoder", minutes=10, epochs=4,
        n_images=3, n_objects=7, started=0.0, clock_start=100.0, phase="train", epoch=2,
        done=1, total=2, loss=0.5,
    )  # fmt: skip
    html = status_html(state, 160.0)
    assert "<b>evil</b>" not in html and "&lt;b&gt;evil" in html
    assert "Epoch 2/4 · step 1/2 · loss 0.5000" in html
    # 60 s for 1.5 of 4 epochs: 100 s left, within the 10-minute budget.
    assert eta_seconds(state, 160.0) == pytest.approx(100.0)
    assert eta_seconds(replace(state, minutes=1.5), 160.0) == pytest.approx(30.0)
    assert eta_seconds(replace(state, phase="encode", epoch=0), 160.0) is None


def test_the_snapshot_holds_accepted_objects_only(tmp_path):
    project = make_project(tmp_path, n_images=3, annotated=2)
    try:
        third = project.store.images()[2]
        first = project.store.objects(project.store.images()[0].id)[0]
        project.store.add_proposals(third.id, "everything", [(first.rle, 0.9, None, None)])
        images = TrainingJobs.for_project(project)._snapshot()
        assert [image.name for image in images] == [r.path for r in project.store.images()[:2]]
        assert sum(len(image.objects) for image in images) == len(project.store.objects())
    finally:
        project.close()
