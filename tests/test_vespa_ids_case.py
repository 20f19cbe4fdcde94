"""Ids that differ only by case (issue 17 item 6). Vespa's YQL reference: ``in`` applies no
linguistics "except lowercasing", and the container lower-cases a term only for a field that
is not ``match: cased``; the generated ``id`` attribute is ``match: cased``, so look-ups,
deletes and exclusions keep case (the conformance suite checks it on both engines and on a
live Vespa). Here: the lint refuses an uncased id field, and the loopback stand-in, given
such a schema, shows the confusion it would cause."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from clipsearch.index.vespa import package
from clipsearch.index.vespa import schema_names as n
from clipsearch.index.vespa.client import RetryPolicy, VespaIndex
from clipsearch.index.vespa.lint import lint_files
from clipsearch.index.vespa.sd_parser import parse_schema
from clipsearch.search import Mode, SearchPlan
from tests.index_conformance import CORPUS, DIM
from tests.vespa_loopback import LoopbackVespa

SD = f"schemas/{n.SCHEMA}.sd"
CASED_ID = ("        field id type string {\n            indexing: attribute | summary\n"
            "            attribute {\n                fast-search\n            }\n"
            "            match {\n                cased\n            }\n")
UNCASED_ID = ("        field id type string {\n            indexing: attribute | summary\n"
              "            attribute {\n                fast-search\n            }\n")


def _uncased() -> dict[str, str]:
    files = package.render(DIM)
    assert CASED_ID in files[SD]
    return {**files, SD: files[SD].replace(CASED_ID, UNCASED_ID)}


def test_generated_id_and_labels_are_cased() -> None:
    schema = parse_schema(package.render(DIM)[SD])
    assert all(schema.fields[f].cased for f in (n.F_ID, *n.FILTER_FIELDS))
    problems = [str(p) for p in lint_files(_uncased(), DIM)]
    assert any("field id needs 'match: cased'" in p for p in problems), problems


@pytest.fixture
def uncased_vespa() -> Iterator[LoopbackVespa]:
    with LoopbackVespa(dim=DIM) as server:
        server.state.schema = parse_schema(_uncased()[SD])
        yield server


@pytest.mark.asyncio(loop_scope="session")
async def test_an_uncased_id_field_would_confuse_ids(uncased_vespa: LoopbackVespa) -> None:
    idx = VespaIndex(url=uncased_vespa.url, namespace="clipsearch", dim=DIM,
                     retry=RetryPolicy(attempts=2, initial_s=0.01, max_s=0.02))
    base = CORPUS[0]
    twin = base.model_copy(update={"id": base.id.upper()})
    try:
        await idx.upsert([base, twin])
        # with the uncased field, excluding one id excludes its differently cased twin too
        result = await idx.search(SearchPlan(mode=Mode.vector, vector=base.embedding, limit=5,
                                             exclude_ids=[base.id]))
    finally:
        await idx.close()
    assert twin.id not in [h.id for h in result.hits]
    assert uncased_vespa.searches()[-1]["yql"].endswith(f'!(id in ("{base.id}"))')
    assert uncased_vespa.violations == []
