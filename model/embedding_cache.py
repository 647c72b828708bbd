"""An LRU cache of message vectors keyed by preprocessed text.

Log windows repeat a few templates, so at inference most messages were encoded before; caching the projected vector
skips BERT and the projector for them. Only valid while weights are frozen: LogLLM clears it when put in train mode.
"""

from __future__ import annotations

from collections import OrderedDict
from threading import Lock

from torch import Tensor


class EmbeddingCache:
    """Thread-safe LRU map text -> vector; capacity 0 disables it."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Tensor] = OrderedDict()
        self._lock = Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Tensor | None:
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: Tensor) -> None:
        if self.capacity <= 0:
            return
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        """Without counting a hit or a miss (a caller that fills the cache ahead of its reads)."""
        with self._lock:
            return key in self._items
