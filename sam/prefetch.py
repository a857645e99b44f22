"""Encode images before the user opens them, in one background thread.

While the user annotates image i, the app asks for i+1 and i-1; when the user moves on, the
embedding is already in the model's memory cache (and the disk cache), so the first click
runs no encoder. Encodes share the model's encoder lock, so a prefetch never runs beside a
foreground encode and never doubles peak memory.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .disk_cache import EmbeddingDiskCache
from .engine import SamEngine
from .errors import SamError
from .image_io import load_image
from .predictor import SamPredictor

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrefetchStatus:
    pending: int
    done: int
    current: str | None
    failed: tuple[str, ...]

    @property
    def idle(self) -> bool:
        return self.pending == 0 and self.current is None


class Prefetcher:
    """Background encoder for a queue of image paths; newest request wins."""

    def __init__(self, model: SamEngine, disk_cache: EmbeddingDiskCache | None = None) -> None:
        self._predictor = SamPredictor(model, disk_cache)
        self._cond = threading.Condition()
        self._queue: list[Path] = []
        self._done = 0
        self._current: str | None = None
        self._failed: list[str] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="sam-prefetch", daemon=True)
        self._thread.start()

    def request(self, paths: Sequence[str | Path]) -> None:
        """Replace the pending queue with ``paths``, most wanted first."""
        with self._cond:
            self._queue = [Path(p) for p in paths]
            self._cond.notify()

    def status(self) -> PrefetchStatus:
        with self._cond:
            return PrefetchStatus(len(self._queue), self._done, self._current, tuple(self._failed))

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until nothing is pending or running; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._queue and self._current is None, timeout=timeout
            )

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._queue = []
            self._cond.notify_all()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                path = self._queue.pop(0)
                self._current = str(path)
            try:
                self._predictor.set_image(load_image(path))
            except SamError as exc:
                logger.warning("Prefetch of %s failed: %s", path, exc)
                with self._cond:
                    self._failed.append(str(path))
            except Exception:  # a background thread must survive anything one image does
                logger.exception("Prefetch of %s crashed", path)
                with self._cond:
                    self._failed.append(str(path))
            with self._cond:
                self._current = None
                self._done += 1
                self._cond.notify_all()
