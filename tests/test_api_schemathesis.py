"""Property-based API testing with schemathesis against the gateway's own OpenAPI schema.

Every operation in ``/openapi.json`` gets generated requests, valid ones (positive mode) and
invalid ones (negative mode), sent in-process through the ASGI app with the stand-in index and
embedder of ``tests/api_fakes.py``. Checked on every response:

* no 5xx (a 500 is always a bug; the fakes are up, so 502/503 are bugs here too);
* the body conforms to the schema documented for its status code, and the content type too;
* every 4xx body is the one error shape of ``clipsearch.http_errors`` with the right status;
* (separately) every status code the app answers is documented in the schema.

Hypothesis is driven directly (``@given`` over ``APIOperation.as_strategy``) rather than through
schemathesis' pytest plugin: its lazy ``from_fixture`` loader reads a private pytest attribute
that pytest 9 no longer has. Runs are derandomized (same examples every run) and bounded by
``MAX_EXAMPLES`` per operation and generation mode.
"""

from __future__ import annotations

from collections.abc import Iterator
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
from schemathesis.core.transport import Response
from schemathesis.schemas import APIOperation, BaseSchema

from clipsearch.http_errors import ErrorBody
from clipsearch.settings import Settings
from services.api.app import create_app
from tests.api_fakes import FakeEmbedder, RecordingIndex, doc

MAX_EXAMPLES = 25
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaseSchema]:
    index = RecordingIndex([doc(i) for i in range(5)])
    app = create_app(Settings(data_dir=tmp_path_factory.mktemp("schemathesis")),
                     index=index, embedder=FakeEmbedder())
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    schemathesis.python.asgi.shutdown_lifespans()


def _operations(schema: BaseSchema) -> list[APIOperation]:
    return [result.ok() for result in schema.get_all_operations()]


def _has_inputs(op: APIOperation) -> bool:
    return bool(list(op.iter_parameters())) or bool(op.body)


def _error_shape(response: Response) -> str | None:
    """Why a 4xx/5xx body is not ``{"error": {"status", "reason", "message"}}``, or None."""
    if response.status_code < 400:
        return None
    try:
        body = ErrorBody.model_validate_json(response.content)
    except ValidationError as exc:
        return f"{response.status_code} body is not the error shape: {exc.errors()[0]['msg']}"
    if body.error.status != response.status_code:
        return f"error.status {body.error.status} != HTTP {response.status_code}"
    if not body.error.message:
        return f"{response.status_code} error has an empty message"
    return None


def _explore(op: APIOperation, mode: GenerationMode, check: object) -> list[str]:
    """Run generated cases for one operation; return one line per distinct failure."""
    failures: dict[str, str] = {}

    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(case=op.as_strategy(generation_mode=mode))
    def run(case: Case) -> None:
        response = case.call()
        problems: list[str] = []
        try:
            case.validate_response(response, checks=[check])  # type: ignore[list-item]
        except (AssertionError, BaseExceptionGroup) as exc:
            problems.append(str(exc).strip().splitlines()[0] + f" ({response.status_code})")
        if check is not_a_server_error and (shape := _error_shape(response)):
            problems.append(shape)
        for problem in problems:
            failures.setdefault(f"{op.label} [{mode.value}] {problem}",
                                case.as_curl_command())

    run()
    return [f"{what}\n    {curl}" for what, curl in failures.items()]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_no_server_errors_and_one_error_shape(api_schema: BaseSchema,
                                              mode: GenerationMode) -> None:
    found = [line for op in _operations(api_schema) if mode == GenerationMode.POSITIVE
             or _has_inputs(op) for line in _explore(op, mode, not_a_server_error)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_responses_conform_to_the_schema(api_schema: BaseSchema, mode: GenerationMode) -> None:
    found = [line for op in _operations(api_schema) if mode == GenerationMode.POSITIVE
             or _has_inputs(op) for check in (response_schema_conformance,
                                              content_type_conformance)
             for line in _explore(op, mode, check)]
    assert not found, "\n".join(found)


def test_every_status_code_is_documented(api_schema: BaseSchema) -> None:
    found = [line for op in _operations(api_schema) for mode in MODES
             if mode == GenerationMode.POSITIVE or _has_inputs(op)
             for line in _explore(op, mode, status_code_conformance)]
    assert not found, "\n".join(found)


def test_schema_covers_the_gateway(api_schema: BaseSchema) -> None:
    labels = {op.label for op in _operations(api_schema)}
    assert {"GET /search", "POST /search", "GET /documents/{doc_id}", "GET /images/{doc_id}",
            "GET /health", "GET /ready", "GET /metrics"} <= labels


def test_schema_file_is_what_the_app_serves(api_schema: BaseSchema, tmp_path: Path) -> None:
    """The generated requests really reach the app: a known-good case answers 200."""
    case = api_schema["/search"]["GET"].Case(query={"q": "caption", "mode": "lexical"})
    response = case.call()
    assert response.status_code == 200, response.text
    assert len(response.json()["hits"]) == 5
