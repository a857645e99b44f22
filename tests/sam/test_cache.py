"""The byte-bounded embedding cache."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from sam.cache import EmbeddingCache, array_digest, nbytes_of


def tensor(nbytes: int) -> torch.Tensor:
    return torch.zeros(nbytes // 4, dtype=torch.float32)


def test_lru_order_and_byte_bound():
    cache = EmbeddingCache(max_bytes=300)
    cache.put("a", tensor(100))
    cache.put("b", tensor(100))
    cache.put("c", tensor(100))
    assert cache.get("a") is not None  # a is now most recent
    cache.put("d", tensor(100))  # evicts b, the least recently used
    assert "b" not in cache and {"a", "c", "d"} <= {k for k in "abcd" if k in cache}
    assert cache.nbytes == 300 and cache.stats.evictions == 1


def test_invariant_holds_for_random_sequences():
    rng = np.random.default_rng(0)
    cache = EmbeddingCache(max_bytes=10_000)
    for _ in range(500):
        cache.put(int(rng.integers(0, 40)), tensor(int(rng.integers(1, 40)) * 100))
        assert cache.nbytes <= cache.max_bytes
        assert cache.nbytes == sum(nbytes_of(cache.get(k)) for k in range(40) if k in cache)


def test_oversize_item_is_not_stored_and_zero_disables():
    cache = EmbeddingCache(max_bytes=100)
    cache.put("big", tensor(400))
    assert "big" not in cache and cache.nbytes == 0
    off = EmbeddingCache(max_bytes=0)
    off.put("x", tensor(4))
    assert len(off) == 0
    with pytest.raises(ValueError):
        EmbeddingCache(max_bytes=-1)


def test_replacing_a_key_fixes_the_byte_count():
    cache = EmbeddingCache(max_bytes=1000)
    cache.put("a", tensor(400))
    cache.put("a", tensor(100))
    assert cache.nbytes == 100 and len(cache) == 1
    stats = cache.stats
    assert (stats.entries, stats.max_bytes) == (1, 1000)


def test_nbytes_of_nested_values():
    @dataclass
    class Embedding:
        features: torch.Tensor
        size: tuple[int, int]

    value = {"e": Embedding(tensor(400), (3, 4)), "l": [np.zeros(10, np.uint8), "text"]}
    assert nbytes_of(value) == 410


def test_array_digest():
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    assert array_digest(a) == array_digest(a.copy())
    assert array_digest(a) != array_digest(a.reshape(4, 3))
    assert array_digest(a) != array_digest(a.astype(np.uint16))
    b = a.copy()
    b[0, 0] = 99
    assert array_digest(a) != array_digest(b)
    assert array_digest(np.asfortranarray(a)) == array_digest(a)


def test_single_flight_under_threads():
    cache = EmbeddingCache(max_bytes=10_000)
    calls = []

    def compute():
        calls.append(1)
        time.sleep(0.2)
        return tensor(400)

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_compute("k", compute)))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert sum(1 for _, hit in results if not hit) == 1 and len(results) == 8


def test_failed_compute_does_not_poison_the_cache():
    cache = EmbeddingCache(max_bytes=10_000)

    def boom():
        raise RuntimeError("encoder crashed")

    with pytest.raises(RuntimeError, match="encoder crashed"):
        cache.get_or_compute("k", boom)
    value, hit = cache.get_or_compute("k", lambda: tensor(4))
    assert not hit and value.numel() == 1
