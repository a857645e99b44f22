"""EmbeddingCache: LRU by bytes, never over budget, single-flight under threads; plus the
helpers that size values and fingerprint images."""

from __future__ import annotations

import dataclasses
import logging
import random
import threading
import time
from collections import OrderedDict

import numpy as np
import pytest
import torch

from sam.cache import CacheStats, EmbeddingCache, array_digest, nbytes_of


def blob(nbytes: int, fill: int = 0) -> np.ndarray:
    return np.full(nbytes, fill, dtype=np.uint8)


# -- nbytes_of --------------------------------------------------------------------------------


def test_vit_b_embedding_is_4_mib() -> None:
    assert nbytes_of(torch.zeros(1, 256, 64, 64)) == 4 * 2**20


def test_nbytes_of_leaves() -> None:
    assert nbytes_of(np.zeros((3, 5), np.float64)) == 120
    assert nbytes_of(torch.zeros(10, dtype=torch.float16)) == 20
    assert nbytes_of(torch.zeros(0)) == 0
    for other in (None, 3, 2.5, "a long string", b"bytes", object()):
        assert nbytes_of(other) == 0


@dataclasses.dataclass
class Embedding:
    features: torch.Tensor
    extras: list
    original_size: tuple[int, int] = (480, 640)


def test_nbytes_of_nested_structures() -> None:
    value = {
        "embedding": Embedding(torch.zeros(4, 4), [np.zeros(10, np.uint8), (torch.zeros(2),)]),
        "sizes": [(np.zeros(3, np.int16), "label"), {"inner": torch.zeros(1, dtype=torch.int64)}],
        "name": "image.jpg",
    }
    assert nbytes_of(value) == 64 + 10 + 8 + 6 + 8


def test_nbytes_of_counts_a_shared_object_once() -> None:
    tensor = torch.zeros(100)
    assert nbytes_of([tensor, tensor, {"again": tensor}]) == 400


def test_nbytes_of_a_dataclass_class_is_zero() -> None:
    assert nbytes_of(Embedding) == 0


# -- array_digest -----------------------------------------------------------------------------


def test_digest_of_equal_arrays_is_equal() -> None:
    image = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    digest = array_digest(image)
    assert len(digest) == 32 and int(digest, 16) >= 0
    assert array_digest(image.copy()) == digest


def test_digest_changes_with_any_pixel() -> None:
    image = np.zeros((32, 48, 3), dtype=np.uint8)
    changed = image.copy()
    changed[31, 47, 2] = 1
    assert array_digest(changed) != array_digest(image)


def test_digest_covers_shape_and_dtype() -> None:
    image = np.arange(24, dtype=np.uint8)
    digests = {
        array_digest(image),
        array_digest(image.reshape(4, 6)),
        array_digest(image.reshape(6, 4)),
        array_digest(image.view(np.int8)),
        array_digest(image.view(np.uint16)),
    }
    assert len(digests) == 5


def test_digest_of_a_view_equals_its_contiguous_copy() -> None:
    image = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    view = image[::2, ::-1]
    assert not view.flags.c_contiguous
    assert array_digest(view) == array_digest(np.ascontiguousarray(view))


# -- LRU and byte budget --------------------------------------------------------------------


def test_least_recently_used_is_evicted_first() -> None:
    cache: EmbeddingCache[str, np.ndarray] = EmbeddingCache(300)
    for key in "abc":
        cache.put(key, blob(100))
    assert cache.get("a") is not None  # "b" is now the least recently used
    cache.put("d", blob(100))
    assert "b" not in cache
    assert all(key in cache for key in "acd")
    assert len(cache) == 3 and cache.nbytes == 300


def test_contains_does_not_count_as_a_use() -> None:
    cache: EmbeddingCache[str, np.ndarray] = EmbeddingCache(200)
    cache.put("a", blob(100))
    cache.put("b", blob(100))
    assert "a" in cache
    cache.put("c", blob(100))
    assert "a" not in cache and "b" in cache


def test_a_big_item_evicts_as_many_as_needed() -> None:
    cache: EmbeddingCache[str, np.ndarray] = EmbeddingCache(1000)
    for key in "abcde":
        cache.put(key, blob(200))
    cache.put("big", blob(700))
    assert [k for k in "abcde" if k in cache] == ["e"]
    assert cache.nbytes == 900
    assert cache.stats.evictions == 4


def test_get_returns_the_stored_object() -> None:
    cache: EmbeddingCache[str, torch.Tensor] = EmbeddingCache(2**20)
    tensor = torch.ones(3)
    cache.put("k", tensor)
    assert cache.get("k") is tensor
    assert cache.get("missing") is None


def test_random_puts_never_exceed_the_budget_and_match_a_reference_lru() -> None:
    rng = random.Random(1234)
    budget = 1000
    cache: EmbeddingCache[int, np.ndarray] = EmbeddingCache(budget)
    reference: OrderedDict[int, int] = OrderedDict()  # key -> size, oldest first
    for _ in range(2000):
        key = rng.randrange(30)
        if rng.random() < 0.3:
            hit = cache.get(key)
            assert (hit is not None) == (key in reference)
            if key in reference:
                reference.move_to_end(key)
                assert hit.nbytes == reference[key]
        else:
            size = rng.choice([0, 1, 50, 200, 333, 999, 1000, 1001, 2500])
            cache.put(key, blob(size))
            reference.pop(key, None)
            if size <= budget:
                reference[key] = size
                while sum(reference.values()) > budget:
                    reference.popitem(last=False)
        assert cache.nbytes <= cache.max_bytes
        assert cache.nbytes == sum(reference.values())
        assert len(cache) == len(reference)
    assert sorted(reference) == sorted(k for k in range(30) if k in cache)


def test_item_larger_than_the_budget_is_not_stored(caplog: pytest.LogCaptureFixture) -> None:
    cache: EmbeddingCache[str, np.ndarray] = EmbeddingCache(100)
    cache.put("small", blob(60))
    with caplog.at_level(logging.DEBUG, logger="sam.cache"):
        cache.put("huge", blob(101))
    assert "huge" not in cache
    assert "small" in cache and cache.nbytes == 60  # nothing was evicted for it
    assert "not caching" in caplog.text and "101 bytes" in caplog.text


def test_oversize_replacement_drops_the_stale_value() -> None:
    cache: EmbeddingCache[str, np.ndarray] = EmbeddingCache(100)
    cache.put("k", blob(10))
    cache.put("k", blob(500))
    assert "k" not in cache and cache.nbytes == 0


def test_replacing_a_key_fixes_the_byte_count() -> None:
    cache: EmbeddingCache[str, np.ndarray] = EmbeddingCache(1000)
    cache.put("a", blob(100))
    cache.put("b", blob(100))
    cache.put("a", blob(400, fill=7))
    assert len(cache) == 2 and cache.nbytes == 500
    assert cache.get("a")[0] == 7
    cache.put("a", blob(50))
    assert cache.nbytes == 150


def test_replacing_makes_the_key_most_recent() -> None:
    cache: EmbeddingCache[str, np.ndarray] = EmbeddingCache(200)
    cache.put("a", blob(100))
    cache.put("b", blob(100))
    cache.put("a", blob(100))
    cache.put("c", blob(100))
    assert "a" in cache and "b" not in cache


def test_zero_budget_disables_caching() -> None:
    cache: EmbeddingCache[str, np.ndarray] = EmbeddingCache(0)
    cache.put("a", blob(1))
    assert "a" not in cache and len(cache) == 0 and cache.nbytes == 0
    calls = []
    for _ in range(3):
        value, hit = cache.get_or_compute("a", lambda: calls.append(1) or blob(1))
        assert not hit and value.nbytes == 1
    assert len(calls) == 3


def test_zero_budget_stores_not_even_empty_values() -> None:
    cache: EmbeddingCache[str, object] = EmbeddingCache(0)
    cache.put("meta", {"name": "no tensors"})  # 0 bytes, but caching is off
    assert "meta" not in cache and cache.stats.entries == 0


def test_negative_budget_is_an_error() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        EmbeddingCache(-1)


def test_custom_size_function() -> None:
    cache: EmbeddingCache[str, str] = EmbeddingCache(10, size_of=len)
    cache.put("a", "12345")
    cache.put("b", "123456")
    assert "a" not in cache and cache.get("b") == "123456" and cache.nbytes == 6


def test_clear() -> None:
    cache: EmbeddingCache[str, np.ndarray] = EmbeddingCache(1000)
    cache.put("a", blob(100))
    cache.get("a")
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0 and "a" not in cache
    assert cache.stats.hits == 1  # counters survive a clear


def test_stats() -> None:
    cache: EmbeddingCache[str, np.ndarray] = EmbeddingCache(250)
    cache.put("a", blob(100))
    cache.put("b", blob(100))
    cache.get("a")
    cache.get("zzz")
    cache.put("c", blob(100))  # evicts "b"
    cache.get_or_compute("a", lambda: blob(1))  # hit
    cache.get_or_compute("d", lambda: blob(10))  # miss: computed and stored
    stats = cache.stats
    assert stats == CacheStats(hits=2, misses=2, evictions=1, entries=3, nbytes=210, max_bytes=250)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.hits = 0  # type: ignore[misc]
    assert "entries=3" in repr(cache)


# -- get_or_compute -------------------------------------------------------------------------


def test_get_or_compute_computes_once_then_hits() -> None:
    cache: EmbeddingCache[str, torch.Tensor] = EmbeddingCache(2**20)
    calls = []

    def compute() -> torch.Tensor:
        calls.append(1)
        return torch.zeros(8)

    first, hit_first = cache.get_or_compute("img", compute)
    second, hit_second = cache.get_or_compute("img", compute)
    assert (hit_first, hit_second) == (False, True)
    assert second is first and len(calls) == 1


def test_concurrent_callers_of_one_key_share_a_single_computation() -> None:
    cache: EmbeddingCache[str, torch.Tensor] = EmbeddingCache(64 * 2**20)
    calls = []
    calls_lock = threading.Lock()

    def encode() -> torch.Tensor:
        with calls_lock:
            calls.append(threading.get_ident())
        time.sleep(0.2)
        return torch.zeros(1, 256, 64, 64)

    start = threading.Barrier(8)
    results: list[tuple[torch.Tensor, bool]] = []

    def user() -> None:
        start.wait()
        results.append(cache.get_or_compute("same image", encode))

    threads = [threading.Thread(target=user) for _ in range(8)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    elapsed = time.perf_counter() - began

    assert len(calls) == 1
    assert len(results) == 8
    assert all(value is results[0][0] for value, _ in results)
    assert sorted(hit for _, hit in results) == [False] + [True] * 7
    assert elapsed < 1.5  # they waited for one 0.2 s encode, not eight in a row
    assert cache.nbytes == 4 * 2**20 and len(cache) == 1


def test_other_keys_are_served_while_one_is_computing() -> None:
    cache: EmbeddingCache[str, np.ndarray] = EmbeddingCache(1000)
    cache.put("ready", blob(10))
    started, release = threading.Event(), threading.Event()

    def slow() -> np.ndarray:
        started.set()
        release.wait(timeout=10)
        return blob(10)

    worker = threading.Thread(target=cache.get_or_compute, args=("slow", slow))
    worker.start()
    try:
        assert started.wait(timeout=5)
        began = time.perf_counter()
        value, hit = cache.get_or_compute("other", lambda: blob(20))
        assert not hit and value.nbytes == 20
        assert cache.get("ready") is not None
        cache.put("another", blob(5))
        assert time.perf_counter() - began < 1.0  # nothing waited for "slow"
    finally:
        release.set()
        worker.join(timeout=10)
    assert "slow" in cache


def test_a_failed_computation_is_not_cached() -> None:
    cache: EmbeddingCache[str, np.ndarray] = EmbeddingCache(1000)

    def broken() -> np.ndarray:
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        cache.get_or_compute("img", broken)
    assert "img" not in cache and cache.nbytes == 0
    value, hit = cache.get_or_compute("img", lambda: blob(7))
    assert not hit and value.nbytes == 7 and "img" in cache


def test_waiters_retry_when_the_computing_caller_fails() -> None:
    cache: EmbeddingCache[str, np.ndarray] = EmbeddingCache(1000)
    calls = []
    calls_lock = threading.Lock()

    def flaky() -> np.ndarray:
        with calls_lock:
            calls.append(1)
            first = len(calls) == 1
        time.sleep(0.2)
        if first:
            raise RuntimeError("first attempt fails")
        return blob(5)

    start = threading.Barrier(6)
    outcomes: list[object] = []

    def user() -> None:
        start.wait()
        try:
            outcomes.append(cache.get_or_compute("img", flaky))
        except RuntimeError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=user) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert not any(thread.is_alive() for thread in threads), "a waiter deadlocked"

    failures = [o for o in outcomes if isinstance(o, RuntimeError)]
    successes = [o for o in outcomes if isinstance(o, tuple)]
    assert len(failures) == 1 and len(successes) == 5
    assert len(calls) == 2  # the failed try, then one retry shared by the other five
    assert len({id(value) for value, _ in successes}) == 1
    assert "img" in cache


def test_budget_holds_under_concurrent_use() -> None:
    cache: EmbeddingCache[int, np.ndarray] = EmbeddingCache(5000)
    violations = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(300):
            key = rng.randrange(40)
            if rng.random() < 0.5:
                cache.get_or_compute(key, lambda: blob(rng.choice([100, 700, 1500, 6000])))
            else:
                cache.put(key, blob(rng.choice([0, 300, 2000, 5001])))
            if cache.nbytes > cache.max_bytes:
                violations.append(cache.nbytes)

    threads = [threading.Thread(target=worker, args=(seed,)) for seed in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not violations
    stats = cache.stats
    assert stats.nbytes <= 5000 and stats.entries == len(cache)
