"""``clipsearch feed --shard k/n``: n feeders (machines, GPUs) split one collection.

A document belongs to shard ``int(sha1(id)[:8 bytes]) mod n``: a stable hash of the document
id (not Python's ``hash``, which is salted per process), so every feeder agrees without
talking to the others, every id lands in exactly one shard, and the union of the n shards is
the full feed. Rows the source rejects before they have an id go by their file path.
"""

from __future__ import annotations

import hashlib
import re

from pydantic import BaseModel, Field, model_validator

SHARD_PATTERN = r"^\d{1,4}/\d{1,4}$"
_SPEC = re.compile(SHARD_PATTERN)


class Shard(BaseModel):
    index: int = Field(ge=0)
    count: int = Field(ge=1, le=9999)

    @model_validator(mode="after")
    def _in_range(self) -> Shard:
        if self.index >= self.count:
            raise ValueError(f"shard {self.index}/{self.count}: k must be below n "
                             f"(0..{self.count - 1})")
        return self

    @classmethod
    def parse(cls, spec: str) -> Shard:
        """``"k/n"`` (k counted from 0)."""
        if not _SPEC.match(spec.strip()):
            raise ValueError(f"--shard takes k/n (e.g. 0/3), not {spec!r}")
        k, n = spec.strip().split("/")
        return cls(index=int(k), count=int(n))

    def owns(self, key: str) -> bool:
        return shard_of(key, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_of(key: str, count: int) -> int:
    """The shard of ``key`` among ``count`` (sha1 of its UTF-8 bytes, first 8 bytes)."""
    digest = hashlib.sha1(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count
