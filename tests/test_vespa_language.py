"""The captions' language is set, never detected (issue 17 item 1): ``set_language`` in the
generated schema, ``model.locale`` on every query with text, both from
CLIPSEARCH_VESPA_LANGUAGE; the lint and the loopback stand-in flag a package or a query
without it. (Loopback only; no live Vespa.)"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clipsearch.index.vespa import package
from clipsearch.index.vespa import schema_names as n
from clipsearch.index.vespa.client import RetryPolicy, VespaIndex
from clipsearch.index.vespa.commands import register
from clipsearch.index.vespa.lint import lint_files
from clipsearch.index.vespa.sd_parser import parse_schema
from clipsearch.search import Mode, SearchPlan
from clipsearch.settings import Settings
from tests.index_conformance import CORPUS, DIM, unit_vector
from tests.vespa_loopback import LoopbackVespa

SD = f"schemas/{n.SCHEMA}.sd"
FAST = RetryPolicy(attempts=2, initial_s=0.01, max_s=0.02)


@pytest.fixture
def vespa() -> Iterator[LoopbackVespa]:
    with LoopbackVespa(dim=DIM) as server:
        yield server


def test_schema_sets_the_caption_language() -> None:
    text = package.render(DIM)[SD]
    assert '"en" | set_language;' in text
    assert parse_schema(text).fields[n.F_CAPTION].language == "en"
    assert parse_schema(text).fields[n.F_CAPTION].indexing == ["index", "summary"]
    german = parse_schema(package.render(DIM, "de")[SD])
    assert german.fields[n.F_CAPTION].language == "de"
    assert (Path(__file__).resolve().parents[1] / "vespa-app" / SD).read_text().count(
        '"en" | set_language') == 1


def test_lint_flags_a_caption_without_language() -> None:
    files = package.render(DIM)
    broken = dict(files)
    broken[SD] = files[SD].replace(
        '            indexing {\n                "en" | set_language;\n'
        '                index | summary;\n            }\n',
        "            indexing: index | summary\n")
    assert broken[SD] != files[SD]
    problems = [str(p) for p in lint_files(broken, DIM)]
    assert any("no '\"<lang>\" | set_language'" in p for p in problems), problems
    assert lint_files(files, DIM) == []


def test_cli_language_option(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["vespa", "package", "--dir", str(tmp_path), "--dim", "8",
                              "--language", "fr"])
    assert args.func(args) == 0
    assert '"fr" | set_language' in (tmp_path / SD).read_text()


def test_settings_language_is_validated() -> None:
    assert Settings().vespa_language == "en"
    assert Settings(vespa_language="pt-BR").vespa_language == "pt-BR"
    with pytest.raises(ValueError):
        Settings(vespa_language='en" | x')


@pytest.mark.asyncio(loop_scope="session")
@pytest.mark.parametrize("mode", [Mode.lexical, Mode.hybrid])
async def test_queries_with_text_carry_the_locale(vespa: LoopbackVespa, mode: Mode) -> None:
    idx = VespaIndex(url=vespa.url, namespace="clipsearch", dim=DIM, retry=FAST)
    try:
        await idx.upsert(CORPUS[:4])
        await idx.search(SearchPlan(mode=mode, text="harbor", vector=unit_vector(2)))
        await idx.search(SearchPlan(mode=Mode.vector, vector=unit_vector(2)))
    finally:
        await idx.close()
    with_text, vector_only = vespa.searches()[-2:]
    assert with_text["model.locale"] == "en"
    assert "model.locale" not in vector_only  # no text, nothing to stem
    assert vespa.violations == []


@pytest.mark.asyncio(loop_scope="session")
async def test_locale_follows_the_setting(vespa: LoopbackVespa) -> None:
    settings = Settings(vespa_url=vespa.url, embedding_dim=DIM, vespa_language="de")
    idx = VespaIndex.from_settings(settings)
    try:
        await idx.search(SearchPlan(mode=Mode.lexical, text="hafen"))
    finally:
        await idx.close()
    assert vespa.searches()[-1]["model.locale"] == "de"
    # the stand-in serves the package generated with "en": a German query is flagged
    assert any("differs from the captions' 'en'" in v for v in vespa.violations)


def test_stand_in_flags_a_query_without_language(vespa: LoopbackVespa) -> None:
    body = {"yql": f"select id from {n.SCHEMA} where userQuery()", "query": "harbor",
            "model.type": "tokenize", "model.defaultIndex": n.F_CAPTION,
            "ranking.profile": "lexical"}
    resp = httpx.post(f"{vespa.url}/search/", json=body)
    assert resp.status_code == 200  # Vespa accepts it, but detects the language
    assert any("without model.locale" in v for v in vespa.violations)
