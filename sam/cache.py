"""A byte-bounded, thread-safe LRU cache for image embeddings.

A ViT-B embedding is ``(1, 256, 64, 64)`` float32 = 4 MiB. The cache is bounded in bytes, not
entries, so many users or images cannot grow memory without limit, and it computes each missing
key once even when several threads ask for it at the same moment (single flight).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import torch

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def nbytes_of(value: Any) -> int:
    """Bytes held by the tensors and arrays inside ``value`` (nested containers and dataclasses
    included; other leaves count 0)."""
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, dict):
        return sum(nbytes_of(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(nbytes_of(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(nbytes_of(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 0


def array_digest(image: np.ndarray) -> str:
    """Content hash of an array: shape, dtype and bytes (blake2b, 128 bits, hex)."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.shape}|{image.dtype}".encode())
    digest.update(memoryview(np.ascontiguousarray(image)).cast("B"))
    return digest.hexdigest()


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    evictions: int
    entries: int
    nbytes: int
    max_bytes: int


class EmbeddingCache(Generic[K, V]):
    """LRU cache holding at most ``max_bytes`` (0 disables caching)."""

    def __init__(self, max_bytes: int, size_of: Callable[[V], int] = nbytes_of) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self._max_bytes = max_bytes
        self._size_of = size_of
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._nbytes = 0
        self._lock = threading.Lock()
        self._inflight: dict[K, threading.Event] = {}
        self._hits = self._misses = self._evictions = 0

    @property
    def max_bytes(self) -> int:
        return self._max_bytes

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._nbytes

    @property
    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                self._hits,
                self._misses,
                self._evictions,
                len(self._items),
                self._nbytes,
                self._max_bytes,
            )

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: K) -> bool:
        with self._lock:
            return key in self._items

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._nbytes = 0

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._get_locked(key)

    def _get_locked(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            self._misses += 1
            return None
        self._items.move_to_end(key)
        self._hits += 1
        return item[0]

    def put(self, key: K, value: V) -> None:
        size = self._size_of(value)
        with self._lock:
            self._put_locked(key, value, size)

    def _put_locked(self, key: K, value: V, size: int) -> None:
        old = self._items.pop(key, None)
        if old is not None:
            self._nbytes -= old[1]
        if size > self._max_bytes:
            logger.debug("Not caching %s: %d bytes exceed the %d-byte budget", key, size,
                         self._max_bytes)  # fmt: skip
            return
        while self._items and self._nbytes + size > self._max_bytes:
            _, (_, evicted) = self._items.popitem(last=False)
            self._nbytes -= evicted
            self._evictions += 1
        self._items[key] = (value, size)
        self._nbytes += size

    def get_or_compute(self, key: K, compute: Callable[[], V]) -> tuple[V, bool]:
        """The cached value, or ``compute()`` stored and returned; ``(value, was_hit)``.

        Concurrent callers for the same missing key wait for one computation instead of
        repeating it; other keys are not blocked while it runs. If it raises, the caller that
        ran it gets the exception and the waiters try again themselves.
        """
        while True:
            with self._lock:
                value = self._get_locked(key)
                if value is not None:
                    return value, True
                event = self._inflight.get(key)
                if event is None:
                    event = self._inflight[key] = threading.Event()
                    break
            event.wait()
            with self._lock:
                if key in self._items:
                    continue  # computed by another thread: loop to take it as a hit
            # The computing thread failed or the value was too large to keep: compute here.
            value = compute()
            self.put(key, value)
            return value, False
        try:
            value = compute()
            self.put(key, value)
            return value, False
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            event.set()
