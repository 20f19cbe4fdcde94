"""``clipsearch feed SOURCE --prune``: remove the documents the source no longer lists.

The ids the source lists are computed exactly as the feeder computes them (the dataset label
repaired like ``feeder.plan``, ``make_doc_id``), including rows whose image is missing or
broken: a row still listed is never pruned. Stored ids of the same dataset(s) (and split,
with ``--split``) that are not listed are removed from EVERY generation, so a generation
re-indexed before the prune does not bring them back. The count is printed first; removing
more than half of the dataset's documents is refused unless ``force`` (a wrong source path or
a truncated manifest must not empty the index). ``--limit`` cannot be combined with it.
"""

from __future__ import annotations

import asyncio
from contextlib import nullcontext

from pydantic import BaseModel

from clipsearch.datasets.readers import read_source
from clipsearch.datasets.records import SourceRecord
from clipsearch.documents import make_doc_id
from clipsearch.errors import InvalidRequest
from clipsearch.index import open_index
from clipsearch.index.base import GenerationalIndex, SearchIndex
from clipsearch.index.writer_lock import index_dir_of, writer_lock
from clipsearch.search import Filters
from clipsearch.settings import Settings
from feeder.plan import repair_label
from feeder.request import FeedRequest


class PruneRefused(InvalidRequest):
    reason = "prune_refused"


class PruneReport(BaseModel):
    datasets: list[str]
    listed: int
    stored: int
    removed: dict[str, int]  # generation -> documents removed
    dry_run: bool = False

    def summary(self) -> str:
        total = sum(self.removed.values())
        per = ", ".join(f"{g}: {n}" for g, n in self.removed.items()) or "-"
        verb = "would remove" if self.dry_run else "removed"
        return (f"prune: {', '.join(self.datasets)}: the source lists {self.listed}, the "
                f"active generation holds {self.stored}; {verb} {total} ({per})")


def listed_ids(request: FeedRequest) -> tuple[set[str], set[str]]:
    """(doc ids the source lists, their dataset labels), as the feeder would store them."""
    if request.source is None:
        raise InvalidRequest("--prune needs a dataset source", reason="bad_source")
    if request.limit is not None:
        raise InvalidRequest("--prune cannot be combined with --limit (everything past the "
                             "limit would look deleted)", reason="prune_refused")
    ids: set[str] = set()
    datasets: set[str] = set()
    for item in read_source(request.source, request.format, dataset=request.dataset,
                            images=request.images_dir, classes=request.classes_dir):
        if not isinstance(item, SourceRecord):
            continue
        if request.split is not None and item.split != request.split:
            continue
        dataset = repair_label(item.dataset) or "unnamed"
        datasets.add(dataset)
        ids.add(make_doc_id(dataset, item.source_id))
    return ids, datasets


async def prune(index: SearchIndex, request: FeedRequest, *, force: bool = False,
                dry_run: bool = False) -> PruneReport:
    if not isinstance(index, GenerationalIndex):
        raise InvalidRequest("--prune needs an index with generations (the embedded engine)",
                             reason="prune_unsupported")
    listed, datasets = listed_ids(request)
    if not datasets:
        raise PruneRefused(f"{request.source} lists no documents: nothing to compare with "
                           "(refusing to prune)")
    filters = Filters(dataset=sorted(datasets),
                      split=[request.split] if request.split else [])
    active = await index.active_generation()
    stored = await index.ids(active.name, filters=filters)
    gone = stored - listed
    report = PruneReport(datasets=sorted(datasets), listed=len(listed), stored=len(stored),
                         removed={}, dry_run=dry_run)
    print(f"prune: {len(gone)} of {len(stored)} stored documents of "
          f"{', '.join(sorted(datasets))} are no longer listed by {request.source}")
    if stored and len(gone) * 2 > len(stored) and not force:
        raise PruneRefused(
            f"refusing to remove {len(gone)} of {len(stored)} documents (more than half): "
            "check the source; rerun with --force if that is really meant")
    if dry_run:
        report.removed[active.name] = len(gone)
        return report
    for gen in await index.generations():
        doomed = (await index.ids(gen.name, filters=filters)) - listed
        if doomed:
            view = index.at_generation(gen.name)
            report.removed[gen.name] = await view.delete(sorted(doomed))
            await view.flush()
    return report


def run_prune(settings: Settings, request: FeedRequest, *, force: bool = False) -> PruneReport:
    """``prune`` on the configured index, holding the writer lock."""

    async def go() -> PruneReport:
        index = open_index(settings)
        lock_dir = index_dir_of(index)
        try:
            with (nullcontext() if lock_dir is None
                  else writer_lock(lock_dir, "clipsearch feed --prune", wait=request.wait)):
                return await prune(index, request, force=force)
        finally:
            await index.close()

    return asyncio.run(go())
