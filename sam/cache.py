"""A thread-safe LRU cache for image embeddings, bounded by the bytes it holds.

Encoding an image is the expensive step of SAM (a ViT forward pass); every click after it
only runs the small prompt encoder and mask decoder. Keeping recent embeddings lets a user
come back to an image, or several users share one, without encoding again. Embeddings are
large, though: a ViT-B embedding is ``(1, 256, 64, 64)`` float32 = 4 MiB, plus the
intermediate features some models keep. A cache bounded by *entry count* would let many
users with many images, or bigger models, grow memory without limit, so
:class:`EmbeddingCache` is bounded in **bytes** and evicts the least recently used entries to
stay under its budget.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import numpy as np
import torch

__all__ = ["CacheStats", "EmbeddingCache", "array_digest", "nbytes_of"]

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def nbytes_of(value: Any) -> int:
    """Total bytes of the torch tensors and numpy arrays inside ``value``.

    ``value`` may be a tensor, an array, or a tuple / list / set / dict (values) / dataclass
    instance (fields) holding them, nested to any depth. An object reached twice is counted
    once. Every other leaf (numbers, strings, None, ...) counts 0.
    """
    seen: set[int] = set()

    def walk(item: Any) -> int:
        if id(item) in seen:
            return 0
        seen.add(id(item))
        if isinstance(item, torch.Tensor):
            return item.element_size() * item.nelement()
        if isinstance(item, np.ndarray):
            return int(item.nbytes)
        if isinstance(item, dict):
            return sum(walk(v) for v in item.values())
        if isinstance(item, (tuple, list, set, frozenset)):
            return sum(walk(v) for v in item)
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            return sum(walk(getattr(item, f.name)) for f in dataclasses.fields(item))
        return 0

    return walk(value)


def array_digest(image: np.ndarray) -> str:
    """A content hash of ``image``: 32 hex digits of BLAKE2b over its shape, dtype and bytes.

    Equal arrays give equal digests; a different shape (same bytes), dtype or any changed
    byte gives a different one. Contiguous arrays are hashed straight from their buffer
    without a copy.
    """
    if image.dtype.hasobject:
        raise TypeError("array_digest needs an array of plain values, not Python objects")
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{image.shape}|{image.dtype.str}|{image.dtype.descr}|".encode())
    raw = np.ascontiguousarray(image).reshape(-1).view(np.uint8)
    digest.update(raw)
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class CacheStats:
    """A snapshot of an :class:`EmbeddingCache`'s counters and size."""

    hits: int
    misses: int
    evictions: int
    entries: int
    nbytes: int
    max_bytes: int


class _Flight:
    """One running ``compute`` of :meth:`EmbeddingCache.get_or_compute`, for its waiters."""

    __slots__ = ("done", "ok", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.ok = False
        self.value: Any = None


class EmbeddingCache(Generic[K, V]):
    """Least-recently-used cache holding at most ``max_bytes`` bytes of values.

    Sizes come from ``size_of`` (default :func:`nbytes_of`, the tensors and arrays inside a
    value). After any call returns, ``nbytes <= max_bytes``. A value larger than the whole
    budget is not stored; ``max_bytes == 0`` disables storing altogether (``get_or_compute``
    then still computes once for concurrent callers of one key).

    All methods are thread-safe. :meth:`get_or_compute` is single-flight: concurrent callers
    asking for the same missing key wait for one computation instead of each running it,
    while callers for other keys are not blocked by it.
    """

    def __init__(self, max_bytes: int, size_of: Callable[[V], int] = nbytes_of) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0 (0 disables the cache), not {max_bytes}")
        self._max_bytes = int(max_bytes)
        self._size_of = size_of
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()  # oldest first
        self._nbytes = 0
        self._hits = 0
        self._misses = 0
        self._evictions = 0
        self._lock = threading.Lock()
        self._flights: dict[K, _Flight] = {}

    # -- reading ------------------------------------------------------------------------------

    def get(self, key: K) -> V | None:
        """The value for ``key`` (now the most recently used), or ``None`` if absent."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._misses += 1
                return None
            self._entries.move_to_end(key)
            self._hits += 1
            return entry[0]

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is stored; does not count as a use, a hit or a miss."""
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    @property
    def nbytes(self) -> int:
        """Bytes held by the stored values, as measured by ``size_of``."""
        with self._lock:
            return self._nbytes

    @property
    def max_bytes(self) -> int:
        """The byte budget; 0 means nothing is stored."""
        return self._max_bytes

    @property
    def stats(self) -> CacheStats:
        """Hits, misses and evictions since creation, plus the current size."""
        with self._lock:
            return CacheStats(
                hits=self._hits,
                misses=self._misses,
                evictions=self._evictions,
                entries=len(self._entries),
                nbytes=self._nbytes,
                max_bytes=self._max_bytes,
            )

    # -- writing ------------------------------------------------------------------------------

    def put(self, key: K, value: V) -> None:
        """Store ``value`` under ``key``, evicting least recently used entries to fit.

        An existing entry for ``key`` is replaced. A value larger than ``max_bytes`` is not
        stored (and any old value for ``key`` is dropped, since it is out of date).
        """
        size = self._measure(value)
        with self._lock:
            self._store(key, value, size)

    def clear(self) -> None:
        """Drop every entry. The hit, miss and eviction counters are kept."""
        with self._lock:
            self._entries.clear()
            self._nbytes = 0

    def get_or_compute(self, key: K, compute: Callable[[], V]) -> tuple[V, bool]:
        """The value for ``key``, running ``compute()`` to make and store it if absent.

        Returns ``(value, was_hit)``; ``was_hit`` is False only for the call that ran
        ``compute``. If another thread is already computing ``key``, this call waits for that
        result instead of computing again (and counts as a hit). ``compute`` runs without the
        cache lock held, so other keys are served meanwhile. If ``compute`` raises, the
        exception propagates to the caller that ran it, nothing is stored, and the callers
        that were waiting try again (one of them computes).
        """
        while True:
            with self._lock:
                entry = self._entries.get(key)
                if entry is not None:
                    self._entries.move_to_end(key)
                    self._hits += 1
                    return entry[0], True
                flight = self._flights.get(key)
                leader = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight()
                    self._misses += 1
            if not leader:
                flight.done.wait()
                if flight.ok:
                    with self._lock:
                        self._hits += 1
                    return flight.value, True
                continue  # the computation failed: look again, maybe compute ourselves
            try:
                value = compute()
                size = self._measure(value)
                with self._lock:
                    self._store(key, value, size)
                    flight.value, flight.ok = value, True
                return value, False
            finally:  # on success and on failure alike: release the waiters
                with self._lock:
                    if self._flights.get(key) is flight:
                        del self._flights[key]
                flight.done.set()

    # -- internals ----------------------------------------------------------------------------

    def _measure(self, value: V) -> int:
        size = int(self._size_of(value))
        if size < 0:
            raise ValueError(f"size_of returned a negative size ({size})")
        return size

    def _store(self, key: K, value: V, size: int) -> None:
        """Insert under the lock, keeping ``nbytes <= max_bytes``."""
        old = self._entries.pop(key, None)
        if old is not None:
            self._nbytes -= old[1]
        if self._max_bytes == 0:
            return  # caching disabled
        if size > self._max_bytes:
            logger.debug(
                "not caching %r: %d bytes exceed the cache budget of %d bytes",
                key,
                size,
                self._max_bytes,
            )
            return
        self._entries[key] = (value, size)
        self._nbytes += size
        while self._nbytes > self._max_bytes:
            _, (_, evicted) = self._entries.popitem(last=False)
            self._nbytes -= evicted
            self._evictions += 1

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"{type(self).__name__}(entries={s.entries}, nbytes={s.nbytes}, "
            f"max_bytes={s.max_bytes}, hits={s.hits}, misses={s.misses})"
        )
