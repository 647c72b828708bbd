"""The LRU cache of message vectors."""

from __future__ import annotations

import torch

from model.embedding_cache import EmbeddingCache


def test_least_recently_used_is_evicted() -> None:
    cache = EmbeddingCache(2)
    cache.put("a", torch.zeros(1))
    cache.put("b", torch.ones(1))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", torch.ones(1))
    assert cache.get("b") is None
    assert cache.get("a") is not None and cache.get("c") is not None
    assert (cache.hits, cache.misses) == (3, 1)


def test_zero_capacity_stores_nothing() -> None:
    cache = EmbeddingCache(0)
    cache.put("a", torch.zeros(1))
    assert len(cache) == 0 and cache.get("a") is None
