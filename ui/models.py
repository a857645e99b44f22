"""Loading SAM models for the app and remembering why one could not be loaded.

Models are shared by every session (they are read-only and large); each session only records
which one it uses. A failed load is remembered with its message so the page can explain it, and
is retried only when the user asks again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sam import KNOWN_MODELS, SamPredictor, load_model
from sam.disk_cache import EmbeddingDiskCache
from sam.errors import SamError

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "facebook/sam-vit-base"
# Shown in the model selector; any repo id or local path typed there works too.
MODEL_CHOICES: tuple[tuple[str, str], ...] = tuple(
    (f"{name} ({repo})", repo) for name, repo in KNOWN_MODELS.items()
)


@dataclass(frozen=True)
class ModelStatus:
    source: str
    ok: bool
    device: str = ""
    message: str = ""  # why loading failed, and what to do
    seconds: float = 0.0


class ModelManager:
    """Loads models on demand and keeps the ``max_loaded`` most recently used ones."""

    def __init__(
        self,
        default_source: str = DEFAULT_MODEL,
        device: str = "auto",
        cache_bytes: int | None = None,
        max_loaded: int = 2,
        loader: Callable[..., Any] = load_model,
        embeddings_dir: Path | None = None,
        precision: str = "auto",
    ) -> None:
        self.default_source = default_source
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
                model = self._loader(key, **kwargs)
            except SamError as exc:
                logger.warning("Could not load model %s: %s", key, exc)
                status = ModelStatus(key, False, message=str(exc))
            except Exception as exc:  # a model file can fail in ways no one foresaw
                logger.exception("Unexpected error loading model %s", key)
                status = ModelStatus(key, False, message=f"{type(exc).__name__}: {exc}")
            else:
                seconds = time.perf_counter() - start
                status = ModelStatus(key, True, device=str(model.device), seconds=seconds)
                logger.info("Loaded %s on %s in %.1f s", key, model.device, seconds)
            with self._lock:
                if status.ok:
                    self._models[key] = model
                    while len(self._models) > self.max_loaded:
                        dropped, _ = self._models.popitem(last=False)
                        logger.info("Unloaded %s (keeping %d models)", dropped, self.max_loaded)
                self._status[key] = status
            return status

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
            f"No model is loaded ({status.source} failed; see the message at the top of the "
            "page), so clicks cannot be segmented yet."
        )
        self.status = status
