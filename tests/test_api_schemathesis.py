"""Property-based API testing with schemathesis against the gateway's own OpenAPI schema.

Every operation in ``/openapi.json`` gets generated requests, valid ones (positive mode) and
invalid ones (negative mode), sent in-process through the ASGI app with the stand-in index and
embedder of ``tests/api_fakes.py``. Checked on every response:

* no 5xx (a 500 is always a bug; the fakes are up, so 502/503 are bugs here too);
* the body conforms to the schema documented for its status code, and so does the content type;
* every 4xx body is the one error shape of ``clipsearch.http_errors`` with the right status;
* (separately) every status code the app answers is documented in the schema.

Hypothesis is driven directly (``@given`` over ``APIOperation.as_strategy``) rather than through
schemathesis' pytest plugin: its lazy ``from_fixture`` loader reads a private pytest attribute
(``Function._nodeid``) that pytest 9 no longer has. Runs are derandomized (the same examples
every run) and bounded by ``MAX_EXAMPLES`` per operation and generation mode; all checks run on
each response once, in one module-scoped exploration.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from pydantic import ValidationError
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Err
from schemathesis.core.transport import Response
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.schemas import APIOperation, BaseSchema

from clipsearch.documents import ImageDocument
from clipsearch.http_errors import ErrorBody
from clipsearch.search import SearchPlan, SearchResult
from clipsearch.settings import Settings
from services.api.app import create_app
from tests.api_fakes import FakeEmbedder, RecordingIndex, doc

MAX_EXAMPLES = 20
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
SCHEMA_CHECKS: dict[str, Callable[..., object]] = {
    "not_a_server_error": not_a_server_error,
    "response_schema_conformance": response_schema_conformance,
    "content_type_conformance": content_type_conformance,
    "status_code_conformance": status_code_conformance,
}
EXPECTED_OPERATIONS = {"GET /search", "POST /search", "GET /documents/{doc_id}",
                       "GET /images/{doc_id}", "GET /health", "GET /ready", "GET /metrics"}

ID_OPERATIONS = {"GET /search", "POST /search", "GET /documents/{doc_id}"}


@dataclass
class Exploration:
    """What the generated requests found: per check, one curl command per distinct failure."""

    failures: dict[str, dict[str, str]] = field(default_factory=dict)
    statuses: dict[str, set[int]] = field(default_factory=dict)
    calls: int = 0

    def add(self, check: str, problem: str, curl: str) -> None:
        self.failures.setdefault(check, {}).setdefault(problem, curl)

    def report(self, *checks: str) -> str:
        return "\n".join(f"[{check}] {problem}\n    {curl}" for check in checks
                         for problem, curl in self.failures.get(check, {}).items())


def error_shape_problem(response: Response) -> str | None:
    """Why a 4xx/5xx body is not ``{"error": {"status", "reason", "message"}}``, or None."""
    if response.status_code < 400:
        return None
    try:
        body = ErrorBody.model_validate_json(response.content)
    except ValidationError as exc:
        return f"{response.status_code} body is not the error shape: {exc.errors()[0]['msg']}"
    if body.error.status != response.status_code:
        return f"error.status {body.error.status} != HTTP {response.status_code}"
    if not body.error.message.strip() or not body.error.reason:
        return f"{response.status_code} error without reason or message"
    return None


def _title(exc: BaseException) -> str:
    """The failure's title ("Undocumented status code", ...), not the whole report."""
    inner = exc.exceptions if isinstance(exc, BaseExceptionGroup) else (exc,)
    return "; ".join(str(getattr(e, "title", "") or type(e).__name__) for e in inner)


def operations(schema: BaseSchema) -> list[APIOperation]:
    """Every operation in the schema; a part schemathesis cannot read fails the test."""
    found = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            raise result.err()
        found.append(result.ok())
    return found


def _has_inputs(op: APIOperation) -> bool:
    return bool(list(op.iter_parameters())) or bool(op.body)


Inspect = Callable[[Case, Response, str, Exploration], None]


def schema_checks(case: Case, response: Response, where: str, found: Exploration) -> None:
    """Healthy dependencies: schemathesis' checks, plus the one error shape."""
    for name, check in SCHEMA_CHECKS.items():
        try:
            case.validate_response(response, checks=[check])  # type: ignore[list-item]
        except (AssertionError, BaseExceptionGroup) as exc:
            found.add(name, f"{where} {_title(exc)} (HTTP {response.status_code})",
                      case.as_curl_command())
    if problem := error_shape_problem(response):
        found.add("error_shape", f"{where} {problem}", case.as_curl_command())


def degraded_checks(case: Case, response: Response, where: str, found: Exploration) -> None:
    """Dependencies down: 503 with Retry-After and the error shape, never 500/502."""
    status = response.status_code
    if status >= 500 and status != 503:
        found.add("degraded", f"{where} HTTP {status}", case.as_curl_command())
    if status == 503 and "retry-after" not in {k.lower() for k in response.headers}:
        found.add("degraded", f"{where} 503 without Retry-After", case.as_curl_command())
    # /ready answers its documented Readiness body on 503, not the error shape
    if case.operation.label != "GET /ready" and (problem := error_shape_problem(response)):
        found.add("error_shape", f"{where} {problem}", case.as_curl_command())


def _explore_operation(op: APIOperation, mode: GenerationMode, found: Exploration,
                       inspect: Inspect, max_examples: int = MAX_EXAMPLES) -> None:
    @settings(max_examples=max_examples, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        check_case(case, f"{op.label} [{mode.value}]", found, inspect)

    run()


def check_case(case: Case, where: str, found: Exploration, inspect: Inspect) -> None:
    """Send one case and record what ``inspect`` finds wrong with the response."""
    label = case.operation.label
    found.calls += 1
    try:
        response = case.call()
    except Exception as exc:  # in-process, an unhandled error in the app surfaces here (a 500)
        found.statuses.setdefault(label, set()).add(500)
        found.add("not_a_server_error", f"{where} unhandled {type(exc).__name__}: {exc}",
                  case.as_curl_command())
        return
    found.statuses.setdefault(label, set()).add(response.status_code)
    inspect(case, response, where, found)


def _schema_for(index: RecordingIndex, embedder: FakeEmbedder,
                data_dir: Path) -> BaseSchema:
    app = create_app(Settings(data_dir=data_dir), index=index, embedder=embedder)
    return schemathesis.openapi.from_asgi("/openapi.json", app)


class KnowsEveryId(RecordingIndex):
    """Answers ``get`` for any id with a stored document renamed to it."""

    async def get(self, doc_id: str) -> ImageDocument | None:
        self._check()
        return self.docs.get(doc_id) or doc(len(doc_id), id=doc_id)


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaseSchema]:
    index = RecordingIndex([doc(i) for i in range(5)])
    yield _schema_for(index, FakeEmbedder(), tmp_path_factory.mktemp("schemathesis"))
    shutdown_lifespans()


@pytest.fixture(scope="module")
def exploration(api_schema: BaseSchema,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exploration]:
    found = Exploration()
    for op in operations(api_schema):
        for mode in MODES:
            if mode == GenerationMode.POSITIVE or _has_inputs(op):
                _explore_operation(op, mode, found, schema_checks)
    # Generated image ids are random, so most valid requests that carry one end in a 404: run
    # the valid requests again against an index that knows every id, to cover the 200 paths.
    knowing = _schema_for(KnowsEveryId([doc(i) for i in range(5)]), FakeEmbedder(),
                          tmp_path_factory.mktemp("schemathesis-ids"))
    for op in operations(knowing):
        if op.label in ID_OPERATIONS:
            _explore_operation(op, GenerationMode.POSITIVE, found, schema_checks)
    yield found


@pytest.fixture(scope="module")
def degraded_exploration(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exploration]:
    """The same app with the index and the encoder both down; valid requests only."""
    schema = _schema_for(RecordingIndex([doc(1)], down=True), FakeEmbedder(down=True),
                         tmp_path_factory.mktemp("schemathesis-down"))
    found = Exploration()
    for op in operations(schema):
        _explore_operation(op, GenerationMode.POSITIVE, found, degraded_checks,
                           max_examples=MAX_EXAMPLES // 2)
    yield found
    shutdown_lifespans()


def test_schema_lists_the_gateway_operations(api_schema: BaseSchema) -> None:
    labels = {op.label for op in operations(api_schema)}
    assert labels >= EXPECTED_OPERATIONS, labels


def test_generated_requests_reach_the_app(api_schema: BaseSchema,
                                          exploration: Exploration) -> None:
    case = api_schema["/search"]["GET"].Case(query={"q": "caption", "mode": "lexical"})
    response = case.call()
    assert response.status_code == 200, response.text
    assert len(response.json()["hits"]) == 5
    # the exploration got past validation too, not only 422s
    assert exploration.calls >= MAX_EXAMPLES * len(EXPECTED_OPERATIONS)
    for label in ("GET /search", "POST /search"):
        assert {200, 422} <= exploration.statuses[label], label
    assert {200, 404} <= exploration.statuses["GET /documents/{doc_id}"]


def test_no_server_errors(exploration: Exploration) -> None:
    assert "not_a_server_error" not in exploration.failures, \
        exploration.report("not_a_server_error")


def test_errors_have_one_shape(exploration: Exploration) -> None:
    assert "error_shape" not in exploration.failures, exploration.report("error_shape")


def test_responses_conform_to_the_schema(exploration: Exploration) -> None:
    checks = ("response_schema_conformance", "content_type_conformance")
    assert not any(c in exploration.failures for c in checks), exploration.report(*checks)


def test_every_status_code_is_documented(exploration: Exploration) -> None:
    assert "status_code_conformance" not in exploration.failures, \
        exploration.report("status_code_conformance")


def test_dependencies_down_give_503_with_retry_after(degraded_exploration: Exploration) -> None:
    found = degraded_exploration
    assert "degraded" not in found.failures, found.report("degraded")
    assert "error_shape" not in found.failures, found.report("error_shape")
    assert 503 in found.statuses["GET /search"]
    assert found.statuses["GET /ready"] == {503}
    assert found.statuses["GET /health"] == {200}  # liveness does not depend on them


class _BrokenIndex(RecordingIndex):
    """An index with a bug: every search raises a plain exception (a 500 in the gateway)."""

    async def search(self, plan: SearchPlan) -> SearchResult:
        raise RuntimeError("bug (test)")


def test_the_harness_catches_a_server_error(tmp_path: Path) -> None:
    schema = _schema_for(_BrokenIndex([doc(1)]), FakeEmbedder(), tmp_path)
    found = Exploration()
    case = schema["/search"]["POST"].Case(body={"q": "river", "mode": "lexical"},
                                          media_type="application/json")
    try:
        check_case(case, "POST /search [explicit]", found, schema_checks)
    finally:
        shutdown_lifespans()
    assert 500 in found.statuses["POST /search"]
    report = found.report("not_a_server_error")
    assert "RuntimeError: bug (test)" in report and "curl -X POST" in report
