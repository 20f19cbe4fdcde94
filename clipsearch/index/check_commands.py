"""``clipsearch index check [--repair]``: find (and remove) ids stored more than once, and
complete a flush a writer left owed. Embedded engine only; takes the writer lock to repair."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from clipsearch.errors import InvalidRequest
from clipsearch.index import open_index
from clipsearch.index.maintenance import complete_pending_flush
from clipsearch.index.writer_lock import writer_lock
from clipsearch.settings import Settings

if TYPE_CHECKING:  # LanceDB loads in seconds: not for `clipsearch --help`
    from clipsearch.index.embedded_duplicates import DuplicateReport


@runtime_checkable
class DuplicateChecking(Protocol):
    @property
    def path(self) -> Path: ...

    async def check_duplicates(self, *, repair: bool = False) -> DuplicateReport: ...

    async def close(self) -> None: ...


async def run_check(settings: Settings, *, repair: bool, wait: bool = False) -> tuple[str, int]:
    """The report text and the exit status (1: duplicates found and not repaired)."""
    index = open_index(settings)
    if not isinstance(index, DuplicateChecking):
        raise InvalidRequest("index check works on the embedded index (Vespa keeps one "
                             "document per id itself)", reason="wrong_backend")
    try:
        if not repair:
            report = await index.check_duplicates(repair=False)
            flushed = False
        else:
            with writer_lock(index.path, "clipsearch index check --repair", wait=wait):
                report = await index.check_duplicates(repair=True)
                flushed = await complete_pending_flush(index)
    finally:
        await index.close()
    lines = [f"rows {report.rows}, distinct ids {report.distinct_ids}",
             f"ids stored more than once: {report.duplicated_ids} "
             f"({report.extra_rows} extra rows)"]
    if report.examples:
        lines.append("e.g. " + ", ".join(report.examples))
    if report.removed_rows:
        lines.append(f"repaired: removed {report.removed_rows} older rows (kept the newest)")
    if flushed:
        lines.append("completed a flush an earlier writer left owed")
    if report.extra_rows and not repair:
        lines.append("run `clipsearch index check --repair` to keep only the newest row of each")
    return "\n".join(lines), 0 if report.clean else 1


def _check_cmd(args: argparse.Namespace) -> int:
    text, status = asyncio.run(run_check(Settings(), repair=args.repair, wait=args.wait))
    print(text)
    return status


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("index", help="check or repair the embedded index")
    isub = p.add_subparsers(dest="index_command", required=True, metavar="ACTION")
    c = isub.add_parser("check", help="find ids stored more than once (--repair: remove them)",
                        description="Count ids stored more than once (two writers at once "
                        "before the writer lock existed). --repair keeps the newest row of "
                        "each, under the writer lock, and completes an owed flush.")
    c.add_argument("--repair", action="store_true", help="delete all but the newest row")
    c.add_argument("--wait", action="store_true", help="wait for another writer to finish")
    c.set_defaults(func=_check_cmd)
