"""``clipsearch generations``, ``clipsearch activate G`` and ``clipsearch drop G``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from typing import TypeVar

from clipsearch.errors import InvalidRequest
from clipsearch.index import open_index
from clipsearch.index.base import GenerationalIndex
from clipsearch.index.generations import Generation, GenerationState
from clipsearch.index.writer_lock import (
    busy_message,
    index_dir_of,
    writer_lock,
    writer_lock_if_free,
)
from clipsearch.models.identity import short_space
from clipsearch.settings import Settings

T = TypeVar("T")


def _with_index(settings: Settings, job: Callable[[GenerationalIndex], Awaitable[T]], *,
                writer: str | None = None) -> T:
    """Run ``job`` on the configured index; ``writer``: hold the writer lock as that
    command (a drop must not delete a table a reindex is writing)."""

    async def go() -> T:
        index = open_index(settings)
        lock_dir = index_dir_of(index) if writer else None
        try:
            if not isinstance(index, GenerationalIndex):
                raise InvalidRequest("this index engine has no generations yet",
                                     reason="no_generations")
            with nullcontext() if lock_dir is None else writer_lock(lock_dir, writer or ""):
                return await job(index)
        finally:
            await index.close()

    return asyncio.run(go())


def format_table(gens: list[Generation]) -> str:
    header = ("", "generation", "state", "documents", "dim", "space", "model", "created")
    rows = [("*" if g.active else "", g.name, g.state.value,
             g.progress().split(" documents")[0] if g.expected else str(g.documents),
             str(g.dim), short_space(g.space), g.model_id or "unknown",
             g.created.strftime("%Y-%m-%d %H:%M")) for g in gens]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *rows])


def _list(args: argparse.Namespace) -> int:
    gens = _with_index(Settings(), lambda index: index.generations())
    if args.json:
        print(json.dumps([g.model_dump(mode="json") for g in gens], indent=1))
    else:
        print(format_table(gens))
    return 0


def _activate(args: argparse.Namespace) -> int:
    async def switch(index: GenerationalIndex) -> Generation:
        """Switch under the writer lock when it is free (no feed starts mid-switch). A
        rollback must never wait for a reindex, so a busy lock only warns (or, with
        ``--wait``, is waited for): a feed claims the active generation when it starts and
        keeps writing there."""
        lock_dir = index_dir_of(index)
        if lock_dir is None:
            return await index.activate_generation(args.generation)
        if args.wait:
            with writer_lock(lock_dir, "clipsearch activate", wait=True,
                             on_wait=lambda msg: print(msg, file=sys.stderr)):
                return await index.activate_generation(args.generation)
        with writer_lock_if_free(lock_dir, "clipsearch activate") as held:
            if not held:
                print(f"warning: {busy_message(lock_dir)}; it keeps writing into the generation "
                      "it started on: feed again when it has finished so the new active "
                      "generation has its documents (or activate --wait)", file=sys.stderr)
            return await index.activate_generation(args.generation)

    async def switch_and_compare(index: GenerationalIndex) -> Generation:
        listed = await index.generations()  # document counts: a switch does not change them
        before = next((g for g in listed if g.active), None)
        gen = await switch(index)
        counted = {g.name: g.documents for g in listed}
        had, has = (counted.get(before.name) if before else None), counted.get(gen.name)
        if before is not None and before.name != gen.name and had and (has or 0) < had:
            print(f"warning: generation {gen.name!r} holds {has or 0} documents, "
                  f"{before.name!r} held {had}: documents fed while {before.name!r} was "
                  f"active have no {gen.name!r} vectors (feed the source again with "
                  f"{gen.model_id or 'its model'} to add them)", file=sys.stderr)
        return gen.model_copy(update={"documents": has})

    gen = _with_index(Settings(), switch_and_compare)
    print(f"active: {gen.describe()}, {gen.documents} documents (running gateways follow "
          "on their next request)")
    return 0


def _drop(args: argparse.Namespace) -> int:
    async def drop(index: GenerationalIndex) -> Generation:
        """On a server engine (no writer lock) a building generation may be filled by a
        reindex running elsewhere right now: dropping it under that reindex leaves stray
        vectors, so it takes ``--force`` (stop the reindex first)."""
        gen = await index.generation(args.generation)
        if (gen.state is GenerationState.building and index_dir_of(index) is None
                and not args.force):
            raise InvalidRequest(
                f"{gen.describe()} is still being built ({gen.progress()}); a reindex may be "
                "filling it right now. Stop that reindex, then `clipsearch drop "
                f"{gen.name} --force`", reason="generation_building")
        return await index.drop_generation(args.generation)

    gen = _with_index(Settings(), drop, writer="clipsearch drop")
    print(f"dropped {gen.describe()}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("generations", help="list the index's generations (* = active)")
    p.add_argument("--json", action="store_true", help="JSON instead of a table")
    p.set_defaults(func=_list)
    p = subparsers.add_parser(
        "activate", help="make a complete generation the active one (atomic; also rollback)",
        description="Switch searches and writes to GENERATION. A generation still being "
        "built is refused. Running gateways follow without a restart.")
    p.add_argument("generation")
    p.add_argument("--wait", action="store_true", help="wait for a running feed or reindex "
                   "to finish first (default: switch at once and warn)")
    p.set_defaults(func=_activate)
    p = subparsers.add_parser("drop", help="delete an inactive generation and its vectors")
    p.add_argument("generation")
    p.add_argument("--force", action="store_true", help="Vespa: drop a generation that is "
                   "still being built (stop its reindex first)")
    p.set_defaults(func=_drop)
