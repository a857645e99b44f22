"""Fine-tuning from the app: one background training job per app process.

:class:`TrainingJobs` runs :func:`sam.finetune.train` in a thread on a snapshot of a folder
project's accepted objects, and keeps what the page shows of it as one immutable
:class:`JobState` (the latest progress, then the result or the error): bounded, whatever the
run's length. The page polls :meth:`TrainingJobs.state`; annotation goes on meanwhile (the
trainer works on its own copy of the decoder and shares the image encoder read-only).

The trained model goes to a folder the server names, inside the project's models folder next
to its database (``.sam-annotator/models/finetuned-YYYYmmdd-HHMMSS``), never to a path the
page chooses; :class:`~ui.models.ModelManager` is told that folder is the app's own, so the
page's Model box may load what it holds.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sam.dataset.samples import read_store
from sam.engine import SamEngine
from sam.errors import FinetuneError, SamError
from sam.evaluation import AnnotatedImage
from sam.finetune import (
    TRAINABLE_PREFIXES,
    FinetuneConfig,
    FinetuneResult,
    Progress,
    check_engine,
    train,
)

from .errors import TrainingError
from .events import unexpected_failure
from .project import Project
from .redact import without_paths

logger = logging.getLogger(__name__)

#: The modes the panel offers, when :class:`FinetuneConfig` accepts them (encoder-lora needs
#: an engine that has it).
OFFERED_MODES = ("prompt-decoder", "decoder", "encoder-lora")
#: One image to train on and one to hold out for the before/after metrics.
MIN_IMAGES = 2
#: How long closing the app waits for the training thread to stop (it stops after the step or
#: the held-out evaluation under way).
CLOSE_TIMEOUT_S = 60.0
MODELS_FOLDER = "models"
FINAL_PHASES = ("finished", "stopped", "failed")


@dataclass(frozen=True)
class JobState:
    """What the page shows of the job (one immutable value, replaced as the run goes on).

    ``phase``: ``"starting"``, then the trainer's ``"encode"``, ``"train"`` or
    ``"validate"``, and at the end ``"finished"``, ``"stopped"`` (the Stop button or closing
    the app) or ``"failed"``. ``done``/``total`` count images, steps of the epoch, or held-out
    objects. ``name``: the output folder's name (what the Model box loads); ``started``:
    ``time.time()`` at the start; ``clock_start``: the monotonic clock then; ``out_dir``:
    where the run writes (its curves.png appears there after each epoch).
    """

    name: str
    model_name: str
    mode: str
    minutes: float
    epochs: int
    n_images: int
    n_objects: int
    started: float
    clock_start: float
    phase: str = "starting"
    epoch: int = 0
    done: int = 0
    total: int = 0
    loss: float | None = None
    stop_requested: bool = False
    result: FinetuneResult | None = None
    error: str = ""
    out_dir: Path | None = None

    @property
    def running(self) -> bool:
        return self.phase not in FINAL_PHASES

    @property
    def curves(self) -> Path | None:
        """The run's curves.png, once the trainer has drawn it (after each epoch, and at the
        end of the run)."""
        if self.out_dir is None:
            return None
        path = self.out_dir / "curves.png"
        return path if path.is_file() else None


def eta_seconds(state: JobState, now: float) -> float | None:
    """Seconds the run still needs, from the share of its epochs done so far (the elapsed
    time scaled), never beyond the time budget; None while that share is unknown (encoding
    and the first held-out evaluation) or once the run is over."""
    if not state.running or state.epoch < 1:
        return None
    in_epoch = state.done / state.total if state.phase == "train" and state.total else 1.0
    fraction = max((state.epoch - 1 + in_epoch) / state.epochs, 1e-6)
    elapsed = now - state.clock_start
    budget_left = max(0.0, state.clock_start + 60 * state.minutes - now)
    return min(budget_left, elapsed * (1 - fraction) / fraction)


def offered_modes() -> tuple[list[str], dict[str, str]]:
    """(the modes :class:`FinetuneConfig` accepts, {refused mode: the reason it gives})."""
    modes, refused = [], {}
    for mode in dict.fromkeys((*OFFERED_MODES, *TRAINABLE_PREFIXES)):
        try:
            FinetuneConfig(train=mode).check()
        except FinetuneError as exc:
            refused[mode] = str(exc)
        else:
            modes.append(mode)
    return modes, refused


def count_objects(images: Sequence[AnnotatedImage]) -> int:
    return sum(len(image.objects) for image in images)


class TrainingJobs:
    """The app's one training job at a time.

    ``snapshot`` returns the annotated images to train on (read when a job starts, so edits
    made during training do not change it); ``models_root`` is where trained folders go;
    ``cache_dir`` the embedding disk cache the app's encoder already fills (images encoded
    while annotating are not encoded again); ``base`` the settings the page does not expose.
    """

    def __init__(
        self,
        snapshot: Callable[[], list[AnnotatedImage]],
        models_root: Path,
        cache_dir: Path | None = None,
        base: FinetuneConfig | None = None,
    ) -> None:
        self._snapshot = snapshot
        self.models_root = Path(models_root)
        self.cache_dir = cache_dir
        self.base = base or FinetuneConfig()
        self._lock = threading.Lock()
        self._state: JobState | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @classmethod
    def for_project(cls, project: Project, base: FinetuneConfig | None = None) -> TrainingJobs:
        """Jobs on ``project``'s accepted objects (as ``python -m sam.finetune --db`` reads
        them), writing to ``models/`` next to its database."""
        db = Path(project.store.path)
        return cls(
            lambda: read_store(db, project.folder),
            db.parent / MODELS_FOLDER,
            cache_dir=project.embeddings_dir,
            base=base,
        )

    def state(self) -> JobState | None:
        """The latest job's state (None before the first)."""
        with self._lock:
            return self._state

    def start(
        self, engine: SamEngine, model_name: str, mode: str, minutes: float, epochs: int
    ) -> JobState:
        """Start training ``engine``'s model in the background.

        Raises:
            TrainingError: a job is running, or too few images are annotated.
            FinetuneError: settings no run can use (an unknown mode, zero epochs,
                encoder-lora on a SAM 2 model, ...).
        """
        config = replace(self.base, train=mode, epochs=int(epochs), max_minutes=float(minutes))
        check_engine(engine, config)
        with self._lock:
            if self._state is not None and self._state.running:
                raise TrainingError(f"{describe(self._state)} Stop it or wait until it ends.")
            images = self._snapshot()
            if len(images) < MIN_IMAGES:
                raise TrainingError(
                    f"Training needs accepted objects on at least {MIN_IMAGES} images (one to "
                    "train on, one held out to measure before/after); the project has them on "
                    f"{len(images)}. Annotate more images first."
                )
            started = time.time()
            out_dir = self._new_folder(started)
            self._stop = threading.Event()
            self._state = JobState(
                name=out_dir.name,
                model_name=model_name,
                mode=mode,
                minutes=float(minutes),
                epochs=int(epochs),
                n_images=len(images),
                n_objects=count_objects(images),
                started=started,
                clock_start=time.monotonic(),
                out_dir=out_dir,
            )
            self._thread = threading.Thread(
                target=self._run,
                args=(engine, images, out_dir, config, self._stop),
                name=f"sam-train {out_dir.name}",
                daemon=True,
            )
            self._thread.start()
            return self._state

    def stop(self) -> JobState:
        """Ask the running job to stop after its current step; it keeps the best checkpoint.

        Raises:
            TrainingError: no job is running.
        """
        with self._lock:
            if self._state is None or not self._state.running:
                raise TrainingError("No training is running.")
            self._stop.set()
            self._state = replace(self._state, stop_requested=True)
            return self._state

    def wait(self, timeout: float | None = None) -> JobState | None:
        """Block until the job's thread ends (for tests and shutdown); its final state."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return self.state()

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Stop a running job and wait for its thread (the app is closing)."""
        with self._lock:
            running = self._state is not None and self._state.running
            if running:
                self._stop.set()
                self._state = replace(self._state, stop_requested=True)
        if running:
            logger.info("Closing: stopping the training run, keeping its best checkpoint")
        self.wait(timeout)

    def trained_models(self) -> list[str]:
        """Names of the trained folders that hold a model, oldest first."""
        if not self.models_root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.models_root.iterdir()
            if p.is_dir() and (p / "config.json").is_file() and (p / "model.safetensors").is_file()
        )

    def _new_folder(self, started: float) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
        folder = self.models_root / f"finetuned-{stamp}"
        n = 1
        while folder.exists():
            n += 1
            folder = self.models_root / f"finetuned-{stamp}-{n}"
        return folder

    def _update(self, **changes: object) -> None:
        with self._lock:
            assert self._state is not None  # set before the thread starts
            self._state = replace(self._state, **changes)  # type: ignore[arg-type]

    def _progress(self, progress: Progress) -> None:
        self._update(
            phase=progress.phase,
            epoch=progress.epoch,
            done=progress.done,
            total=progress.total,
            **({"loss": progress.loss} if progress.loss is not None else {}),
        )

    def _run(
        self,
        engine: SamEngine,
        images: list[AnnotatedImage],
        out_dir: Path,
        config: FinetuneConfig,
        stop: threading.Event,
    ) -> None:
        try:
            result = train(
                engine,
                images,
                out_dir,
                config,
                cache_dir=self.cache_dir,
                progress=self._progress,
                stop=stop,
            )
        except SamError as exc:
            logger.warning("Training %s failed: %s", out_dir.name, exc)
            self._failed(out_dir, without_paths(str(exc)))
        except Exception:  # a failure nobody foresaw: the log has the traceback, the page an id
            self._failed(out_dir, unexpected_failure(f"Training {out_dir.name}"))
        else:
            phase = "stopped" if result.stopped_by in ("stop", "interrupt") else "finished"
            logger.info("Training %s %s: best epoch %d", out_dir.name, phase, result.best_epoch)
            self._update(phase=phase, result=result)

    def _failed(self, out_dir: Path, message: str) -> None:
        # A run that failed leaves no half-written model for the Model box to offer.
        shutil.rmtree(out_dir, ignore_errors=True)
        self._update(phase="failed", error=message)


def describe(state: JobState) -> str:
    """The running job in one sentence, for a refused second start."""
    clock = time.strftime("%H:%M", time.localtime(state.started))
    return (
        f"A training run is already going: {state.name} ({state.mode} of {state.model_name} "
        f"on {state.n_objects} objects, started {clock})."
    )
