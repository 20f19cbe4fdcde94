"""A small LRU cache of text embeddings (queries repeat: "airport", "river", ...).

Written here rather than taken from a library: ``functools.lru_cache`` caches whole calls,
not the single texts of a batch, and the per-text bookkeeping is a few lines of OrderedDict.
Not thread-safe: it lives inside the encoder, which runs one call at a time.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np


class TextCache:
    def __init__(self, capacity: int = 4096) -> None:
        self._capacity = max(0, capacity)
        self._items: OrderedDict[str, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, text: str) -> np.ndarray | None:
        vec = self._items.get(text)
        if vec is None:
            self.misses += 1
            return None
        self._items.move_to_end(text)
        self.hits += 1
        return vec

    def put(self, text: str, vector: np.ndarray) -> None:
        if self._capacity == 0:
            return
        vec = np.array(vector, dtype=np.float32)  # a private copy: callers may mutate theirs
        vec.flags.writeable = False
        self._items[text] = vec
        self._items.move_to_end(text)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)
