"""Finding and repairing ids stored more than once in the embedded engine's table.

Only two writers at once can produce them (each merge-inserts the same id from its own table
version; ``writer_lock`` now prevents that), but tables written before the lock may hold them.
The newest row of an id is the one kept: Lance appends every write (an update too) as new
rows and compaction keeps their order, so the highest row address is the latest write.
Search never shows an id twice whatever the table holds (``embedded_search.page_hits``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from lancedb.table import AsyncTable
from pydantic import BaseModel

from clipsearch.index.embedded_filters import rowid_in
from clipsearch.index.embedded_schema import ID

ROWID = "_rowid"
DELETE_CHUNK = 1_000


class DuplicateReport(BaseModel):
    """What ``clipsearch index check`` found (and, with ``--repair``, removed)."""

    rows: int
    distinct_ids: int
    duplicated_ids: int
    extra_rows: int
    removed_rows: int = 0
    examples: list[str] = []

    @property
    def clean(self) -> bool:
        return self.extra_rows == self.removed_rows


async def duplicate_rows(table: AsyncTable) -> tuple[int, dict[str, list[int]]]:
    """(row count, ``{id: row addresses oldest first}`` for every id stored more than once)."""
    rows = await table.query().select([ID]).with_row_id().to_arrow()
    by_id: dict[str, list[int]] = defaultdict(list)
    for doc_id, rowid in zip(rows.column(ID).to_pylist(), rows.column(ROWID).to_pylist(),
                             strict=True):
        by_id[doc_id].append(int(rowid))
    dups = {k: sorted(v) for k, v in by_id.items() if len(v) > 1}
    return rows.num_rows, dups


async def check_duplicates(table: AsyncTable, *, repair: bool,
                           before_delete: Callable[[], None] = lambda: None) -> DuplicateReport:
    """Count duplicated ids; with ``repair``, delete every row of them but the newest
    (``before_delete`` runs first, e.g. to mark the table as waiting for a flush)."""
    rows, dups = await duplicate_rows(table)
    extra = [r for rowids in dups.values() for r in rowids[:-1]]
    report = DuplicateReport(rows=rows, distinct_ids=rows - len(extra),
                             duplicated_ids=len(dups), extra_rows=len(extra),
                             examples=sorted(dups)[:5])
    if repair and extra:
        before_delete()
        for i in range(0, len(extra), DELETE_CHUNK):
            await table.delete(rowid_in(extra[i:i + DELETE_CHUNK]))
        report.removed_rows = len(extra)
    return report
