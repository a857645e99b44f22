"""Keep the memory of concurrent large decodes bounded, and give it back afterwards.

A 10,000 × 7,900 PNG is 77 KB on disk and half a gigabyte once decoded and converted, so a
server that decodes whatever its users upload needs two things beside the megapixel limit:

* :class:`ByteBudget`: a process-wide allowance of bytes. A decode first asks for the bytes its
  header says it will need (:data:`DECODE_BUDGET`, used by :func:`sam.image_io.load_image`),
  waits while other decodes hold too much of it, and hands the bytes back when done. Four
  users uploading 79 MP images then take turns instead of needing four times the memory.
* :func:`release_free_memory`: glibc keeps freed heap pages (in per-thread arenas) for reuse,
  so after a large decode the process stays gigabytes larger than it needs to be;
  ``malloc_trim(0)`` returns them to the system. It does nothing on other C libraries.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["DECODE_BUDGET", "DEFAULT_DECODE_BUDGET", "ByteBudget", "release_free_memory"]

logger = logging.getLogger(__name__)

#: Bytes that image decodes in progress may hold at once, across all threads of the process:
#: 1 GiB. One 79-megapixel RGB image needs about 0.9 GB of it (see
#: :func:`sam.image_io.decode_cost`), so such uploads are decoded one at a time, while
#: a dozen-megapixel photos still decode side by side. Change it with
#: ``DECODE_BUDGET.limit = n_bytes``.
DEFAULT_DECODE_BUDGET = 1 << 30


class ByteBudget:
    """An allowance of bytes that threads take and hand back, served first come, first served.

    ``with budget.hold(n): ...`` waits until ``n`` bytes are free and it is the oldest waiter,
    then keeps them until the block ends (also when it raises). A request larger than the whole
    budget is granted the whole budget: it runs, but alone. Served in arrival order, so a large
    request is not starved by a stream of small ones.
    """

    def __init__(self, limit: int) -> None:
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._in_use = 0
        self._limit = 0
        self.limit = limit

    @property
    def limit(self) -> int:
        """The allowance in bytes (a positive integer)."""
        return self._limit

    @limit.setter
    def limit(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"a byte budget must be a positive number of bytes, not {value!r}")
        with self._cond:
            self._limit = value
            self._cond.notify_all()

    @property
    def in_use(self) -> int:
        """Bytes held right now."""
        with self._cond:
            return self._in_use

    @property
    def waiting(self) -> int:
        """Requests waiting for their turn right now."""
        with self._cond:
            return len(self._waiting)

    @contextmanager
    def hold(self, nbytes: int) -> Iterator[None]:
        """Hold ``nbytes`` (at most the whole budget) for the duration of the ``with`` block."""
        ticket = object()
        with self._cond:
            self._waiting.append(ticket)
            try:
                while self._waiting[0] is not ticket or not self._fits(nbytes):
                    self._cond.wait()
            finally:
                self._waiting.remove(ticket)
                self._cond.notify_all()  # the next in line may fit now
            granted = min(nbytes, self._limit)
            self._in_use += granted
        try:
            yield
        finally:
            with self._cond:
                self._in_use -= granted
                self._cond.notify_all()

    def _fits(self, nbytes: int) -> bool:
        return self._in_use + min(nbytes, self._limit) <= self._limit


#: The budget every :func:`sam.image_io.load_image` decode of a file or bytes draws from.
DECODE_BUDGET = ByteBudget(DEFAULT_DECODE_BUDGET)


def release_free_memory() -> None:
    """Return the heap pages the C allocator keeps after large frees to the system (glibc only).

    Costs a few milliseconds; call it after freeing hundreds of megabytes, not per small object.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``, looked up once; ``None`` where there is none (musl, macOS)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        logger.debug("malloc_trim is not available: freed memory stays with the process")
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim
