"""One lane per session for quick edits: a tab's clicks run one at a time, in order, while
other tabs' clicks run beside them.

Gradio's queue only knows lanes shared by everyone (``concurrency_id``): with one lane of limit
1 for all clicks, every user's click waits for every other user's. Here the quick events share
a Gradio lane with room for several events, and :class:`SessionLanes` keeps each session's own
events in single file: an event takes its ticket the moment its handler starts, on Gradio's
event loop (so no thread can overtake another while taking it), then waits until the previous
ticket of its session has finished, and runs the handler in a worker thread. Two quick clicks
of one tab therefore always see each other's result, in the order they reached the handler.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


class SessionLanes:
    """Turns taken per owner (a session), first come, first served; owners never wait for each
    other. Used from one asyncio event loop (Gradio's)."""

    def __init__(self) -> None:
        # id(owner) -> (owner, the end of its latest turn); the owner is kept so its id cannot
        # be reused while the entry exists. Entries go when the last turn ends.
        self._tails: dict[int, tuple[object, asyncio.Future[None]]] = {}
        self._turns = 0

    @property
    def turns(self) -> int:
        """Turns taken and not yet ended (running or waiting), of all owners."""
        return self._turns

    @property
    def owners(self) -> int:
        """Owners with a turn running or waiting."""
        return len(self._tails)

    @asynccontextmanager
    async def turn(self, owner: object) -> AsyncIterator[None]:
        """Wait until every earlier turn of ``owner`` has ended; the turn lasts the block.

        The ticket is taken when the ``async with`` starts, before anything is awaited, so
        turns follow the order in which coroutines enter it.
        """
        key = id(owner)
        before = self._tails.get(key, (None, None))[1]
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tails[key] = (owner, mine)
        self._turns += 1
        try:
            if before is not None:
                await asyncio.shield(before)  # a cancelled waiter must not cancel `before`
            yield
        finally:
            if before is None or before.done():
                self._end(key, mine)
            else:  # cancelled while waiting: later turns still wait for `before`
                before.add_done_callback(lambda _: self._end(key, mine))

    def _end(self, key: int, mine: asyncio.Future[None]) -> None:
        self._turns -= 1
        mine.set_result(None)
        if self._tails.get(key, (None, None))[1] is mine:
            del self._tails[key]


def in_session_lane(fn: Callable[..., T], lanes: SessionLanes) -> Callable[..., Awaitable[T]]:
    """``fn(session, ...)`` as a coroutine function that runs ``fn`` in a worker thread during
    a turn of ``session``'s lane (``session`` ``None``: at once, there is nothing to share).

    ``functools.wraps`` keeps ``fn``'s signature, which is how Gradio finds ``gr.EventData``.
    """

    @functools.wraps(fn)
    async def run(*args: Any) -> T:
        session = args[0] if args else None
        if session is None:
            return await anyio.to_thread.run_sync(fn, *args)
        async with lanes.turn(session):
            return await anyio.to_thread.run_sync(fn, *args)

    return run
