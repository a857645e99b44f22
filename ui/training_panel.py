"""The "Train on my annotations" panel of a folder project: what to train, a time budget and
epochs, Start / Stop, the run's progress, its curves and before/after metrics on held-out
images, and "Use this model". The job itself runs in :mod:`ui.training`; the handlers here
only call it and render its state."""

from __future__ import annotations

import atexit
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image

from sam.errors import SamError
from sam.evaluation import Summary

from .errors import TrainingError
from .events import unexpected_failure
from .html import text
from .models import MODEL_CHOICES, ModelManager, ModelUnavailable
from .project import Project
from .redact import without_paths
from .state import Session
from .training import JobState, TrainingJobs, eta_seconds, offered_modes

logger = logging.getLogger(__name__)

DEFAULT_MINUTES = 10
DEFAULT_EPOCHS = 5
POLL_SECONDS = 1.0
# (row name, Summary field, True when higher is better)
METRICS = (
    ("mIoU, 1 click", "miou_1click", True),
    ("mIoU, 3 clicks", "miou_3click", True),
    ("mIoU, box", "miou_box", True),
    ("NoC@85 (clicks)", "noc85", False),
)
INTRO = (
    "Trains on this project's accepted objects (a snapshot taken at Start; keep annotating "
    "meanwhile). Images are split into training and held-out ones; the held-out images measure "
    "the model before and after. The model is saved in the project's models folder."
)
STOP_REASONS = {
    "epochs": "all epochs ran",
    "time": "the time budget ran out",
    "stop": "stopped",
    "interrupt": "stopped",
}


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _progress_line(state: JobState, now: float) -> str:
    if state.phase == "starting":
        return "Starting…"
    if state.phase == "encode":
        return f"Encoding images {state.done}/{state.total} (once each, then cached)…"
    if state.phase == "validate":
        what = "the starting model" if state.epoch == 0 else f"epoch {state.epoch}"
        return f"Measuring {what} on held-out objects {state.done}/{state.total}…"
    loss = f" · loss {state.loss:.4f}" if state.loss is not None else ""
    line = f"Epoch {state.epoch}/{state.epochs} · step {state.done}/{state.total}{loss}"
    eta = eta_seconds(state, now)
    return line + (f" · about {_minutes(eta)} left" if eta is not None else "")


def _outcome_line(state: JobState) -> str:
    result = state.result
    if state.phase == "failed":
        return f"Training failed: {state.error}"
    assert result is not None  # finished and stopped runs have one
    kept = (
        f"best epoch {result.best_epoch} of {len(result.history) - 1}"
        if result.best_epoch
        else "no epoch beat the starting model on the held-out images, so it holds the "
        "starting model"
    )
    if state.phase == "stopped":
        return f"Stopped: the best checkpoint so far is kept in {state.name} ({kept})."
    return f"Done ({STOP_REASONS[result.stopped_by]}): {state.name} holds the model ({kept})."


def status_html(state: JobState | None, now: float, note: str = "") -> str:
    """The panel's status: a refusal or error ``note``, then the job's progress or outcome."""
    parts = [f'<div class="sam-train-note sam-bad">{text(note)}</div>'] if note else []
    if state is None:
        parts.append(f'<div class="sam-train-status">{text(INTRO)}</div>')
        return "".join(parts)
    head = (
        f"<b>{text(state.name)}</b>: {text(state.mode)} of {text(state.model_name)} on "
        f"{state.n_objects} objects in {state.n_images} images"
    )
    if state.running:
        line = _progress_line(state, now)
        if state.stop_requested:
            line = "Stopping after this step; the best checkpoint so far is kept. " + line
        css = "sam-train-status sam-running"
    else:
        line = _outcome_line(state)
        css = "sam-train-status sam-bad" if state.phase == "failed" else "sam-train-status"
    parts.append(f'<div class="{css}">{head}<br>{text(line)}</div>')
    return "".join(parts)


def metrics_html(before: Summary, after: Summary) -> str:
    """Before/after metrics on the held-out objects, as a small table."""
    rows = []
    for name, field, higher in METRICS:
        old, new = getattr(before, field), getattr(after, field)
        better = new > old if higher else new < old
        mark = " sam-better" if better else ""
        rows.append(
            f"<tr><td>{text(name)}</td><td>{old:.3f}</td>"
            f'<td class="sam-after{mark}">{new:.3f}</td></tr>'
        )
    return (
        f'<table class="sam-train-metrics"><caption>On {before.n_objects} held-out objects'
        "</caption><tr><th></th><th>before</th><th>after</th></tr>" + "".join(rows) + "</table>"
    )


class TrainingPanel:
    """The panel's components and thin handlers; build it with :func:`training_panel`."""

    def __init__(self, jobs: TrainingJobs, manager: ModelManager) -> None:
        self.jobs = jobs
        self.manager = manager
        modes, refused = offered_modes()
        with gr.Accordion("Train on my annotations", open=False, elem_id="sam-train-box"):
            self.mode = gr.Radio(
                modes, value=modes[0], label="What to train", elem_id="sam-train-mode"
            )
            gr.HTML(
                "".join(
                    f'<div class="sam-train-off">{text(mode)} is not offered: '
                    f"{text(reason.removeprefix('--train '))}</div>"
                    for mode, reason in refused.items()
                ),
                elem_id="sam-train-modes-note",
                js_on_load=None,
            )
            with gr.Row():
                self.minutes = gr.Number(
                    DEFAULT_MINUTES, minimum=0.1, label="Time budget (minutes)",
                    elem_id="sam-train-minutes",
                )  # fmt: skip
                self.epochs = gr.Number(
                    DEFAULT_EPOCHS, minimum=1, precision=0, label="Epochs",
                    elem_id="sam-train-epochs",
                )  # fmt: skip
            with gr.Row():
                self.start_btn = gr.Button(
                    "Start training", variant="primary", size="sm", elem_id="sam-train-start"
                )
                self.stop_btn = gr.Button(
                    "Stop", variant="stop", size="sm", elem_id="sam-train-stop",
                    interactive=False,
                )  # fmt: skip
            self.status = gr.HTML(status_html(None, 0), elem_id="sam-train-status", js_on_load=None)
            self.metrics = gr.HTML("", elem_id="sam-train-metrics", js_on_load=None)
            self.curves = gr.Image(
                None, type="pil", label="Training curves", interactive=False, visible=False,
                elem_id="sam-train-curves",
            )  # fmt: skip
            self.use_btn = gr.Button(
                "Use this model", size="sm", elem_id="sam-train-use", interactive=False
            )
        self.timer = gr.Timer(POLL_SECONDS, active=False)
        # Which drawing of the curves this tab shows (its file's mtime; 0: none), so a poll
        # sends the picture only when the trainer has redrawn it after an epoch.
        self.curves_shown = gr.State(0)
        self.outputs = [
            self.curves_shown,
            self.status,
            self.metrics,
            self.curves,
            self.start_btn,
            self.stop_btn,
            self.use_btn,
            self.timer,
        ]

    def wire(
        self,
        demo: gr.Blocks,
        session: gr.State,
        model_choice: gr.Dropdown,
        load_model: Callable[..., Any],
        settings: list[Any],
        options: dict[str, Any],
    ) -> None:
        """Connect the panel: ``load_model`` is the page's Model-box handler (the session's
        ``gr.State``, the box and the Segment everything ``settings`` in, the page's outputs
        out as ``options`` names them)."""
        mine = {**options, "outputs": self.outputs}
        demo.load(self.on_refresh, [self.curves_shown], **mine)
        demo.load(self.on_list_models, [], **{**options, "outputs": [model_choice]})
        self.timer.tick(self.on_refresh, [self.curves_shown], **mine)
        start_inputs = [session, self.mode, self.minutes, self.epochs, self.curves_shown]
        self.start_btn.click(self.on_start, start_inputs, **mine)
        self.stop_btn.click(self.on_stop, [self.curves_shown], **mine)
        # The trained folder goes into the Model box, then the box's own handler loads it.
        self.use_btn.click(self.on_use, [], **{**options, "outputs": [model_choice]}).success(
            load_model, [session, model_choice, *settings], **options
        )
        demo.sam_training = self  # type: ignore[attr-defined]  # for tests

    def view(self, shown: int, note: str = "") -> dict[Any, Any]:
        """The panel for a tab that shows drawing ``shown`` of the curves."""
        state = self.jobs.state()
        running = state is not None and state.running
        result = state.result if state is not None else None
        view: dict[Any, Any] = {
            self.status: status_html(state, time.monotonic(), note),
            self.metrics: metrics_html(result.baseline, result.best) if result else "",
            self.start_btn: gr.update(interactive=not running),
            self.stop_btn: gr.update(interactive=running),
            self.use_btn: gr.update(interactive=result is not None),
            self.timer: gr.Timer(active=running),
        }
        curves, drawing = _curves_drawing(state)
        if drawing != shown:
            view[self.curves_shown] = drawing
            view[self.curves] = gr.update(
                value=_read_image(curves) if curves else None, visible=curves is not None
            )
        return view

    def on_refresh(self, shown: int) -> dict[Any, Any]:
        return self.view(shown)

    def on_start(
        self,
        session: Session | None,
        mode: str,
        minutes: float | None,
        epochs: float | None,
        shown: int,
    ) -> dict[Any, Any]:
        source = session.model_source if isinstance(session, Session) else None
        try:
            if self.manager.is_loading(source):
                raise TrainingError("The model is still loading; start training once it is.")
            try:
                engine = self.manager.predictor(source).engine
            except ModelUnavailable as exc:
                raise TrainingError(
                    f"No model is loaded ({exc.status.name} could not be loaded): load one "
                    "under Model first; training starts from it."
                ) from exc
            if minutes is None or not minutes > 0:
                raise TrainingError("Give a time budget of more than 0 minutes.")
            if epochs is None or int(epochs) < 1:
                raise TrainingError("Give at least 1 epoch.")
            self.jobs.start(engine, self.manager.name(source), mode, minutes, int(epochs))
        except SamError as exc:
            return self.view(shown, without_paths(str(exc)))
        except Exception:
            return self.view(shown, unexpected_failure("Starting training"))
        return self.view(shown)

    def on_stop(self, shown: int) -> dict[Any, Any]:
        try:
            self.jobs.stop()
        except TrainingError as exc:
            return self.view(shown, str(exc))
        return self.view(shown)

    def on_list_models(self) -> dict[str, Any]:
        """The Model box's list with the project's trained models (those of earlier runs
        too) after the usual ones."""
        models = [label for label, _ in MODEL_CHOICES] + self.jobs.trained_models()
        return gr.update(choices=models)

    def on_use(self) -> dict[str, Any]:
        state = self.jobs.state()
        if state is None or state.result is None or not state.result.out_dir.is_dir():
            raise gr.Error("There is no trained model yet: start training first.")
        return {**self.on_list_models(), "value": state.name}


def _curves_drawing(state: JobState | None) -> tuple[Path | None, int]:
    """The run's curves.png and which drawing it is (its mtime in ns; 0 when there is none)."""
    curves = state.curves if state is not None else None
    try:
        return (curves, curves.stat().st_mtime_ns) if curves else (None, 0)
    except OSError:  # a failed run's folder was just removed
        return None, 0


def _read_image(path: Any) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def training_panel(project: Project, manager: ModelManager) -> TrainingPanel:
    """Build the panel for ``project`` (inside the page's Blocks and column): its job manager
    writes to the project's models folder, which the Model box is allowed to load from; the
    app closing stops a run and keeps its best checkpoint."""
    jobs = TrainingJobs.for_project(project)
    manager.allow_models_dir(jobs.models_root)
    atexit.register(jobs.close)
    return TrainingPanel(jobs, manager)
