"""``clipsearch activate`` and the writer lock: a switch never waits for a running feed or
reindex (a rollback must be instant) but says that writer keeps feeding the old generation;
with the lock free it switches holding it, so no feed starts mid-switch."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from clipsearch.cli import main
from clipsearch.index import open_index
from clipsearch.index.embedded_generations import GenerationalEmbeddedIndex
from clipsearch.index.writer_lock import index_dir_of, read_holder, writer_lock
from clipsearch.settings import Settings
from tests.index_conformance import CORPUS, DIM


def _two_generations(settings: Settings) -> tuple[Path, str]:
    async def build() -> tuple[Path, str]:
        index = open_index(settings)
        assert isinstance(index, GenerationalEmbeddedIndex)
        await index.upsert(CORPUS)
        g1 = await index.create_generation(model_id="m", space=None, dim=DIM)
        await index.at_generation(g1.name).upsert(CORPUS[:2])
        await index.complete_generation(g1.name)
        lock_dir = index_dir_of(index)
        await index.close()
        assert lock_dir is not None
        return lock_dir, g1.name

    return asyncio.run(build())


def _active(settings: Settings) -> str:
    async def read() -> str:
        index = open_index(settings)
        try:
            return (await index.active_generation()).name  # type: ignore[attr-defined]
        finally:
            await index.close()

    return asyncio.run(read())


def test_activate_warns_about_a_running_writer_and_still_switches(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CLIPSEARCH_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CLIPSEARCH_EMBEDDING_DIM", str(DIM))
    settings = Settings()
    lock_dir, g1 = _two_generations(settings)

    with writer_lock(lock_dir, "clipsearch feed"):
        assert main(["activate", g1]) == 0
        err = capsys.readouterr().err
        assert "warning: another writer" in err and "clipsearch feed" in err
        assert "keeps writing into the generation it started on" in err
        assert f"generation {g1!r} holds 2 documents, 'g0' held {len(CORPUS)}" in err
        holder = read_holder(lock_dir)
        assert holder is not None and holder.command == "clipsearch feed"  # left untouched
    assert _active(settings) == g1

    assert main(["activate", "g0"]) == 0  # rollback with the lock free: no warning
    out = capsys.readouterr()
    assert "warning" not in out.err and "active: " in out.out
    assert _active(settings) == "g0" and read_holder(lock_dir) is None
