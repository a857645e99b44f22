"""ByteBudget: bytes are shared first come, first served and always handed back; and giving
freed memory back to the system is safe to call anywhere."""

from __future__ import annotations

import threading
import time

import pytest

from sam.memory import ByteBudget, release_free_memory


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting until {what}"
        time.sleep(0.005)


def test_waiters_are_served_in_arrival_order():
    """A small request that would fit does not overtake a large one that came first, so a
    large image is never starved by a stream of small ones."""
    budget = ByteBudget(10)
    admitted: list[str] = []
    release = threading.Event()

    def take(name: str, nbytes: int) -> None:
        with budget.hold(nbytes):
            admitted.append(name)
            release.wait()

    with budget.hold(8):
        large = threading.Thread(target=take, args=("large", 8))
        large.start()
        wait_for(lambda: budget.waiting == 1, "the large request waits")
        small = threading.Thread(target=take, args=("small", 1))
        small.start()
        wait_for(lambda: budget.waiting == 2, "the small request waits behind it")
        assert admitted == [] and budget.in_use == 8
    wait_for(lambda: len(admitted) == 2, "both are admitted")
    assert admitted == ["large", "small"]
    release.set()
    large.join(timeout=30)
    small.join(timeout=30)
    assert budget.in_use == 0 and budget.waiting == 0


def test_bytes_come_back_when_the_block_raises():
    budget = ByteBudget(100)
    with pytest.raises(RuntimeError), budget.hold(60):
        raise RuntimeError("decoder failed")
    assert budget.in_use == 0
    with budget.hold(100):
        assert budget.in_use == 100


def test_a_request_over_the_limit_gets_the_whole_budget():
    budget = ByteBudget(100)
    with budget.hold(10**12):
        assert budget.in_use == 100
    assert budget.in_use == 0


def test_raising_the_limit_admits_waiters():
    budget = ByteBudget(10)
    done = threading.Event()

    def take() -> None:
        with budget.hold(10):
            done.set()

    with budget.hold(10):
        waiter = threading.Thread(target=take)
        waiter.start()
        wait_for(lambda: budget.waiting == 1, "the request waits")
        budget.limit = 20
        assert done.wait(30)
    waiter.join(timeout=30)


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, None])
def test_limit_must_be_a_positive_number_of_bytes(bad):
    with pytest.raises(ValueError, match="positive number of bytes"):
        ByteBudget(bad)


def test_release_free_memory_is_safe_to_call():
    release_free_memory()
    release_free_memory()
