"""The source read lazily: planned rows sorted, as they are read, into rows whose embedding the
shards already hold (fed from there) and rows to encode (handed to the encoder in batches).

Nothing is read before it is needed: the encoder pulls batches of image paths from
``SourceStream.batches()``, which plans rows (read, check, hash) only as far as its next batch.
Memory therefore holds the encoder's batches in flight and at most ``window`` reusable rows
waiting to be fed, however large the source is; only the ids seen so far (duplicate detection
across the whole source) grow with it.

A segment (one ``batches()`` generator, one ``encode_batches`` call) ends when the source ends,
or when ``window`` reusable rows wait: the feed then writes them and starts the next segment.
A fresh feed (nothing reusable) is one segment, so the encoder's pipeline (decoding ahead,
workers or requests in flight) never drains before the end.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from feeder.plan import Planned, Planner
from feeder.store import StoredEntry


@dataclass(frozen=True)
class Reusable:
    """A planned row whose embedding a shard holds (same id, bytes, model and space)."""

    planned: Planned
    entry: StoredEntry


class SourceStream:
    """Planned rows, split into reusable and to-encode, pulled one batch at a time.

    ``on_read(read, skipped)`` is called as rows are read: ``read`` rows more, ``skipped`` of
    them rejected while planning (they are in the dead-letter report already).
    """

    def __init__(self, planner: Planner, planned: Iterable[Planned], *,
                 catalog: Mapping[str, StoredEntry], model_id: str, space: str | None,
                 batch_size: int, window: int, on_read: Callable[[int, int], None]) -> None:
        if batch_size < 1 or window < 1:
            raise ValueError("batch_size and window must be >= 1")
        self._planner = planner
        self._planned = iter(planned)
        self._catalog = catalog
        self._model_id = model_id
        self._space = space
        self._batch_size = batch_size
        self._window = window
        self._on_read = on_read
        self._counted = 0
        self._waiting: list[Reusable] = []
        self._handed: deque[list[Planned]] = deque()
        self.exhausted = False

    def _count(self, planned: int) -> None:
        read = self._planner.read - self._counted
        self._counted = self._planner.read
        if read:
            self._on_read(read, read - planned)

    def _reusable(self, p: Planned) -> StoredEntry | None:
        entry = self._catalog.get(p.id)
        if entry is not None and entry.reusable_for(p.content_hash, self._model_id,
                                                    self._space):
            return entry
        return None

    def batches(self) -> Iterator[list[str]]:
        """One segment of the encoder's input: batches of image paths, in source order. Each
        batch's rows are kept until ``answered`` takes them (the encoder answers in order)."""
        todo: list[Planned] = []
        for p in self._planned:
            self._count(1)
            entry = self._reusable(p)
            if entry is None:
                todo.append(p)
                if len(todo) == self._batch_size:
                    yield self._hand(todo)
                    todo = []
            else:
                self._waiting.append(Reusable(p, entry))
                if len(self._waiting) >= self._window:
                    break  # the feed writes them, then asks for the next segment
        else:
            self._count(0)  # rows read after the last planned one were all skipped
            self.exhausted = True
        if todo:
            yield self._hand(todo)

    def _hand(self, todo: list[Planned]) -> list[str]:
        self._handed.append(todo)
        return [str(p.file) for p in todo]

    def answered(self) -> list[Planned]:
        """The rows of the oldest batch the encoder has not answered yet."""
        return self._handed.popleft()

    @property
    def waiting(self) -> int:
        """Reusable rows read and not yet taken."""
        return len(self._waiting)

    def take_reusable(self) -> list[Reusable]:
        out, self._waiting = self._waiting, []
        return out
