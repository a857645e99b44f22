"""SessionLanes: one session's turns run one at a time in the order they were taken; other
sessions' turns never wait for them; a turn given up while waiting keeps the order."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from ui.lanes import SessionLanes, in_session_lane


def run_loop(coro: Coroutine[Any, Any, Any]) -> Any:
    """``asyncio.run`` in a thread of its own: the browser tests' Playwright keeps an event
    loop running in the main thread for the whole session."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


class Owner:
    """Stands for a session (unhashable, like the app's Session dataclass)."""

    __hash__ = None  # type: ignore[assignment]


async def settle() -> None:
    """Let every ready coroutine run until it waits for something."""
    for _ in range(20):
        await asyncio.sleep(0)


def test_one_owners_turns_run_one_at_a_time_in_order():
    async def main() -> list[str]:
        lanes, owner, log = SessionLanes(), Owner(), []
        gates = {name: asyncio.Event() for name in "abc"}

        async def edit(name: str) -> None:
            async with lanes.turn(owner):
                log.append(f"start {name}")
                await gates[name].wait()
                log.append(f"end {name}")

        tasks = [asyncio.create_task(edit(name)) for name in "abc"]
        await settle()
        assert log == ["start a"] and lanes.turns == 3
        for name in "cba":  # released in reverse: the order of the turns still holds
            gates[name].set()
        await asyncio.gather(*tasks)
        assert lanes.turns == 0 and lanes.owners == 0
        return log

    log = run_loop(main())
    assert log == ["start a", "end a", "start b", "end b", "start c", "end c"]


def test_other_owners_do_not_wait():
    async def main() -> None:
        lanes, slow_owner, other = SessionLanes(), Owner(), Owner()
        release = asyncio.Event()

        async def slow() -> None:
            async with lanes.turn(slow_owner):
                await release.wait()

        task = asyncio.create_task(slow())
        await settle()
        async with lanes.turn(other):  # would wait forever behind `slow` in a shared lane
            assert not task.done()
        release.set()
        await task

    run_loop(main())


def test_a_turn_cancelled_while_waiting_keeps_the_next_one_waiting():
    """The client of the second event goes away while it waits: the third must still wait for
    the first, which is running."""

    async def main() -> list[str]:
        lanes, owner, log = SessionLanes(), Owner(), []
        release = asyncio.Event()

        async def edit(name: str, gate: asyncio.Event | None = None) -> None:
            async with lanes.turn(owner):
                log.append(f"start {name}")
                if gate is not None:
                    await gate.wait()
                log.append(f"end {name}")

        first = asyncio.create_task(edit("first", release))
        second = asyncio.create_task(edit("second"))
        third = asyncio.create_task(edit("third"))
        await settle()
        second.cancel()
        await settle()
        assert log == ["start first"]
        release.set()
        await first
        await third
        with pytest.raises(asyncio.CancelledError):
            await second
        assert lanes.turns == 0 and lanes.owners == 0
        return log

    assert run_loop(main()) == ["start first", "end first", "start third", "end third"]


def test_in_session_lane_runs_the_handler_in_a_thread_and_keeps_its_signature():
    def on_edit(session: Owner, name: str) -> dict[str, str]:
        """The handler."""
        return {"message": name}

    run = in_session_lane(on_edit, SessionLanes())
    assert asyncio.iscoroutinefunction(run) and run.__doc__ == "The handler."
    assert list(inspect.signature(run).parameters) == ["session", "name"]
    assert run_loop(run(Owner(), "x")) == {"message": "x"}
    assert run_loop(run(None, "before the page loaded")) == {"message": "before the page loaded"}


def test_every_quick_edit_of_the_app_runs_in_its_session_lane(manager, tmp_path):
    """An event put in the shared "edit" lane without the session lane would run beside the
    same tab's other edits: every one of them must be the lane's coroutine."""
    from ui.layout import QUICK_CONCURRENCY, build_demo

    demo = build_demo(manager, media_dir=tmp_path / "media", examples=[])
    quick = [fn for fn in demo.fns.values() if fn.concurrency_id == "edit"]
    assert len(quick) > 20
    assert [fn.name for fn in quick if not inspect.iscoroutinefunction(fn.fn)] == []
    assert {fn.concurrency_limit for fn in quick} == {QUICK_CONCURRENCY}
