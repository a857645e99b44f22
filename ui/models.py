"""Loading SAM models for the app and remembering why one could not be loaded.

Models are shared by every session (they are read-only and large); each session only records
which one it uses. A failed load is remembered with its message so the page can explain it, and
is retried only when the user asks again.

Names typed in the page's Model box come from remote users, so they may load only hub repo ids,
the command line's ``--model`` and checkpoints inside a ``--models-dir`` folder; and what the
page shows never holds an absolute server path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam import KNOWN_MODELS, SamPredictor, load_model
from sam.checkpoint import CheckpointFiles, find_checkpoint, looks_like_repo_id
from sam.device import resolve_device
from sam.disk_cache import EmbeddingDiskCache
from sam.errors import CheckpointError, SamError

from .redact import without_paths

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "facebook/sam-vit-base"
# With no --model on a CPU: SAM 2.1 Hiera-Tiny, whose image encoder costs about a third of
# ViT-B's and gives better masks (bench/README.md); ViT-B stays one --model away.
DEFAULT_CPU_MODEL = "facebook/sam2.1-hiera-tiny"


def default_model(device: str) -> str:
    """The model the app loads when the user names none, for ``device`` as --device takes it
    (auto, cpu or cuda): SAM ViT-B on a GPU, SAM 2.1 Hiera-Tiny on a CPU."""
    if device == "auto":
        device = resolve_device("auto").type
    return DEFAULT_CPU_MODEL if device == "cpu" else DEFAULT_MODEL


# Shown in the model selector; any repo id or local path typed there works too.
MODEL_CHOICES: tuple[tuple[str, str], ...] = tuple(
    (f"{name} ({repo})", repo) for name, repo in KNOWN_MODELS.items()
)

# The one answer to any other name typed in the page: it must not depend on what exists on the
# server, or the Model box becomes a way to probe its files.
NOT_ALLOWED = (
    "The page loads Hugging Face repo ids (such as facebook/sam-vit-base), the app's own model "
    "and checkpoints inside a --models-dir folder; local paths anywhere else are refused. Start "
    "the app with --models-dir DIR to allow one."
)


@dataclass(frozen=True)
class ModelStatus:
    source: str  # the manager's key: a repo id or a local path as the loader gets it
    ok: bool
    device: str = ""
    message: str = ""  # why loading failed, and what to do; no absolute server path
    seconds: float = 0.0
    name: str = ""  # what the page shows for the source; no absolute server path
    family: str = ""  # the loaded model's family and size, e.g. "sam2.1-hiera-tiny"


class ModelManager:
    """Loads models on demand and keeps the ``max_loaded`` most recently used ones.

    ``models_dirs`` are the folders whose checkpoints the page may load by path.
    """

    def __init__(
        self,
        default_source: str = DEFAULT_MODEL,
        device: str = "auto",
        cache_bytes: int | None = None,
        max_loaded: int = 2,
        loader: Callable[..., Any] = load_model,
        embeddings_dir: Path | None = None,
        precision: str = "auto",
        models_dirs: Iterable[Path] = (),
    ) -> None:
        self.default_source = default_source
        self.models_dirs = tuple(Path(d).expanduser().resolve() for d in models_dirs)
        # What the page shows per source, and the repo ids typed in the page: those are loaded
        # from the hub even when a server file of that name exists.
        self._names: dict[str, str] = {default_source: _page_name(default_source)}
        self._hub_only: set[str] = set()
        self.device = device
        self.precision = precision  # image-encoder precision: auto, fp32, bf16 or fp16
        self.cache_bytes = cache_bytes
        self.max_loaded = max(1, max_loaded)
        self._loader = loader
        # Projects keep embeddings on disk (one subfolder per model), so reopening a folder
        # never runs the encoder again; single uploads stay in memory only.
        self.embeddings_dir = embeddings_dir
        self._disk_caches: dict[str, EmbeddingDiskCache] = {}
        self._models: OrderedDict[str, Any] = OrderedDict()
        self._status: dict[str, ModelStatus] = {}
        # _lock guards the tables and is held only briefly, so users of a loaded model are
        # never blocked by a load; _load_lock runs one load at a time, so two users picking
        # ViT-H at once load it once and peak memory holds one loading model.
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._loading: set[str] = set()

    def is_loading(self, source: str | None = None) -> bool:
        return self.resolve(source) in self._loading

    def load_in_background(self, source: str | None = None) -> threading.Thread:
        """Start loading so the page can come up at once (a first download takes minutes)."""
        key = self.resolve(source)
        self._loading.add(key)

        def run() -> None:
            try:
                self.load(key)
            finally:
                self._loading.discard(key)

        thread = threading.Thread(target=run, name=f"load {key}", daemon=True)
        thread.start()
        return thread

    def resolve(self, source: str | None) -> str:
        return (source or "").strip() or self.default_source

    def name(self, source: str | None = None) -> str:
        """What the page shows for ``source``: a repo id, a path relative to its --models-dir,
        or the base name of the command line's local model."""
        key = self.resolve(source)
        return self._names.get(key, key)

    def page_source(self, text: str) -> str:
        """The source to load for ``text`` typed in the page; raises ModelNotAllowed.

        Allowed: the command line's model (by its source or the name the page shows), a file
        or folder inside a --models-dir folder (absolute, or relative to that folder; after
        following symlinks and ``..``, the checkpoint's files too), and a hub repo id. Anything
        else gets NOT_ALLOWED, whether or not it exists.
        """
        text = text.strip()
        if text in (self.default_source, self.name(self.default_source)):
            return self.default_source
        local = self._in_models_dir(text)
        if local is not None:
            return local
        if looks_like_repo_id(text):
            with self._lock:
                self._hub_only.add(text)
            return text
        raise ModelNotAllowed(NOT_ALLOWED)

    def allow_models_dir(self, folder: Path) -> None:
        """Let the page load checkpoints inside ``folder`` too, as inside a --models-dir: for
        the app's own outputs (a project's fine-tuned models), a place the server chose."""
        root = Path(folder).expanduser().resolve()
        with self._lock:
            if root not in self.models_dirs:
                self.models_dirs = (*self.models_dirs, root)

    def _in_models_dir(self, text: str) -> str | None:
        """The resolved path of ``text`` inside a --models-dir folder, or None."""
        for root in self.models_dirs:
            try:
                path = (root / text).resolve()  # an absolute ``text`` replaces ``root``
                if not (path.is_relative_to(root) and path.exists()):
                    continue
                files = find_checkpoint(path)
            except CheckpointError:  # e.g. a folder without weights: the load explains it
                files = None
            except (OSError, RuntimeError, ValueError):  # symlink loops, NUL bytes, long names
                continue
            if files is not None and not _all_inside(files, root):
                raise ModelNotAllowed(NOT_ALLOWED)  # e.g. a model.safetensors linked from outside
            key = str(path)
            with self._lock:
                self._names[key] = path.relative_to(root).as_posix() if path != root else root.name
            return key
        return None

    def status(self, source: str | None = None) -> ModelStatus | None:
        """The last load result for ``source``; None if it was never tried."""
        return self._status.get(self.resolve(source))

    def load(self, source: str | None = None, retry: bool = False) -> ModelStatus:
        """Load ``source`` unless loaded (or failed before and ``retry`` is False)."""
        key = self.resolve(source)
        self._loading.add(key)
        try:
            return self._load(key, retry)
        finally:
            self._loading.discard(key)

    def _known(self, key: str, retry: bool) -> ModelStatus | None:
        """The status of a loaded model, or of a failure not to retry; None: load it."""
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._status[key]
            previous = self._status.get(key)
            if previous is not None and not previous.ok and not retry:
                return previous
        return None

    def _load(self, key: str, retry: bool) -> ModelStatus:
        known = self._known(key, retry)
        if known is not None:
            return known
        with self._load_lock:
            # Another user may have loaded it (or failed) while this one waited.
            known = self._known(key, retry=False)
            if known is not None and (known.ok or not retry):
                return known
            start = time.perf_counter()
            try:
                kwargs: dict[str, Any] = {"device": self.device}
                if self.precision != "auto":
                    kwargs["dtype"] = self.precision
                if self.cache_bytes is not None:
                    kwargs["cache_bytes"] = self.cache_bytes
                if key in self._hub_only:
                    kwargs["hub_only"] = True
                model = self._loader(key, **kwargs)
            except SamError as exc:
                logger.warning("Could not load model %s: %s", key, exc)
                status = self._failed(key, str(exc))
            except Exception:  # a model file can fail in ways no one foresaw
                logger.exception("Unexpected error loading model %s", key)
                status = self._failed(key, "Reading it failed unexpectedly; see the server log.")
            else:
                seconds = time.perf_counter() - start
                status = ModelStatus(
                    key,
                    True,
                    device=str(model.device),
                    seconds=seconds,
                    name=self.name(key),
                    family=model.family,
                )
                logger.info("Loaded %s on %s in %.1f s", key, model.device, seconds)
            with self._lock:
                if status.ok:
                    self._models[key] = model
                    while len(self._models) > self.max_loaded:
                        dropped, _ = self._models.popitem(last=False)
                        logger.info("Unloaded %s (keeping %d models)", dropped, self.max_loaded)
                self._status[key] = status
            return status

    def _failed(self, key: str, message: str) -> ModelStatus:
        """A failed load's status; its message names the source as the page does (the full
        message with paths is in the server log)."""
        name = self.name(key)
        for path in sorted({key, str(Path(key).expanduser())}, key=len, reverse=True):
            message = message.replace(path, name)
        return ModelStatus(key, False, message=without_paths(message), name=name)

    def predictor(self, source: str | None = None) -> SamPredictor:
        """A fresh predictor on ``source``'s model; raises SamError if it cannot be loaded."""
        status = self.load(source)
        if not status.ok:
            raise ModelUnavailable(status)
        with self._lock:
            model = self._models.get(status.source)
        if model is None:  # unloaded by another session meanwhile
            status = self.load(source, retry=True)
            if not status.ok:
                raise ModelUnavailable(status)
            model = self._models[status.source]
        return SamPredictor(model, self._disk_cache(status.source, model))

    def _disk_cache(self, key: str, model: Any) -> EmbeddingDiskCache | None:
        if self.embeddings_dir is None:
            return None
        with self._lock:
            cache = self._disk_caches.get(key)
            if cache is None:  # the fingerprint hashes weights: compute it once per model
                cache = self._disk_caches[key] = EmbeddingDiskCache(self.embeddings_dir, model)
            return cache


class ModelUnavailable(SamError):
    """The session's model could not be loaded; carries the load status for the page."""

    def __init__(self, status: ModelStatus) -> None:
        super().__init__(
            f"No model is loaded ({status.name} failed; see the message at the top of the "
            "page), so clicks cannot be segmented yet."
        )
        self.status = status


class ModelNotAllowed(SamError):
    """A name typed in the page is neither a hub repo id nor a checkpoint in an allowed place."""


def _page_name(source: str) -> str:
    """The command line's source as the page shows it: a repo id, or a local path's base name."""
    if looks_like_repo_id(source) and not Path(source).expanduser().exists():
        return source
    return Path(source).name or source


def _all_inside(files: CheckpointFiles, root: Path) -> bool:
    """Whether every file of a checkpoint, symlinks followed, lies inside ``root``."""
    found = (files.weights, files.config, files.preprocessor)
    return all(f.resolve().is_relative_to(root) for f in found if f is not None)
