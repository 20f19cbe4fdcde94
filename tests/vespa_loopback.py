"""A loopback Vespa for tests: a real HTTP server on 127.0.0.1 that checks every request
against Vespa's documented formats and answers in Vespa's formats.

* ``/document/v1/<ns>/<type>/docid/<key>``: POST (put), GET, DELETE; the document JSON is
  checked against the generated schema (field names, types, tensor size).
* ``POST /search/``: parameters, YQL shape per mode (``tests.vespa_engine``), rank profile and
  declared ``input.query(...)`` checked against the generated ``image.sd``; answers with
  ``root.fields.totalCount``, ``coverage``, ``children[].fields.matchfeatures``.
* ``POST /application/v2/tenant/default/prepareandactivate`` (zip) and ``/ApplicationStatus``.

Every check that fails is answered like Vespa would (HTTP 400 + message) AND recorded in
``violations``, so a test can assert that the client never sent anything Vespa would refuse.
Faults (status, body, delay, degraded coverage) are injected per path prefix with ``fail``.
"""

from __future__ import annotations

import functools
import io
import json
import re
import threading
import time
import zipfile
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from clipsearch.index.vespa import schema_names as n
from clipsearch.index.vespa.binarized import BinarizedOptions
from clipsearch.index.vespa.lint import lint_files
from clipsearch.index.vespa.package import render
from clipsearch.index.vespa.sd_parser import SchemaInfo, parse_schema
from tests import vespa_binarized_engine as bz
from tests import vespa_engine as eng
from tests import vespa_loopback_generations as lgen

SEARCH_PARAMS = {"yql", "query", "model.type", "model.defaultIndex", "ranking.profile", "hits",
                 "offset", "timeout", "ranking.globalPhase.rerankCount", "presentation.summary",
                 "model.locale", "model.language", "ranking.rerankCount"}
MODEL_TYPES = {"all", "any", "weakAnd", "tokenize", "linguistics", "phrase", "web"}
_DOC_PATH = re.compile(r"^/document/v1/([^/]+)/([^/]+)/docid/([^/]+)$")
_TIMEOUT = re.compile(r"^\d+(\.\d+)?\s*(ms|s)?$")
_STRING_FIELDS = {n.F_ID, n.F_CAPTION, n.F_DATASET, n.F_CATEGORY, n.F_SPLIT, n.F_IMAGE_URI,
                  n.F_MODEL_ID}


@functools.cache
def generated_schema(dim: int, vector_index: str = "float") -> SchemaInfo:
    """The generator's schema (rendering with pyvespa costs ~0.1 s, so once per dim);
    ``vector_index="binarized"``: with the ``_bits`` fields and binarised profiles."""
    binarized = BinarizedOptions() if vector_index == "binarized" else None
    return parse_schema(render(dim, binarized=binarized)[f"schemas/{n.SCHEMA}.sd"])


@dataclass
class Fault:
    method: str
    prefix: str
    status: int = 500
    body: dict[str, Any] | None = None
    times: int = 1
    delay_s: float = 0.0
    degraded: bool = False  # for /search/: answer normally but with partial coverage


@dataclass
class Reply:
    status: int
    body: dict[str, Any] | str


@dataclass
class Recorded:
    method: str
    path: str
    body: Any


@dataclass
class LoopbackState:
    dim: int
    namespace: str
    deployed: bool = True
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    requests: list[Recorded] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    schema: SchemaInfo | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # the next deploy answers with these configChangeActions (then none, as for a redeploy
    # of the same package); GET .../reindexing answers these in turn (the last repeats)
    change_actions: dict[str, Any] | None = None
    reindexing: list[dict[str, Any]] = field(default_factory=list)
    # index generations (tests.vespa_loopback_generations): the catalog's document type
    catalog_schema: SchemaInfo | None = None
    catalog_docs: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops concurrent feed connections (1 s SYN retry)
    daemon_threads = True


class LoopbackVespa:
    """Start with ``with LoopbackVespa(dim=8) as vespa: ... vespa.url``."""

    def __init__(self, *, dim: int = 512, namespace: str = "clipsearch",
                 deployed: bool = True, vector_index: str = "float") -> None:
        self.state = LoopbackState(dim=dim, namespace=namespace, deployed=deployed)
        self.state.schema = generated_schema(dim, vector_index)
        self.state.catalog_schema = lgen.generated_catalog_schema()
        handler = type("Handler", (_Handler,), {"state": self.state})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def violations(self) -> list[str]:
        return self.state.violations

    @property
    def requests(self) -> list[Recorded]:
        return self.state.requests

    @property
    def docs(self) -> dict[str, dict[str, Any]]:
        return self.state.docs

    def fail(self, method: str, prefix: str, status: int = 500, *, times: int = 1,
             body: dict[str, Any] | None = None, delay_s: float = 0.0,
             degraded: bool = False) -> None:
        self.state.faults.append(Fault(method, prefix, status, body, times, delay_s, degraded))

    def searches(self) -> list[dict[str, Any]]:
        return [r.body for r in self.state.requests if r.path == "/search/"]

    def __enter__(self) -> LoopbackVespa:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    state: LoopbackState
    params: dict[str, list[str]]  # the request's query parameters (set per request)
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # ------------------------------------------------------------------ plumbing
    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, reply: Reply) -> None:
        data = (json.dumps(reply.body) if isinstance(reply.body, dict) else reply.body).encode()
        self.send_response(reply.status)
        self.send_header("Content-Type", "application/json;charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _fault(self, method: str, path: str) -> Fault | None:
        with self.state.lock:
            for f in self.state.faults:
                if f.times > 0 and f.method == method and path.startswith(f.prefix):
                    f.times -= 1
                    return f
        return None

    def _violation(self, message: str, status: int = 400) -> Reply:
        self.state.violations.append(message)
        return Reply(status, {"message": message,
                              "root": {"errors": [{"code": 4, "summary": "Invalid query "
                                                   "parameter", "message": message}]}})

    def _handle(self, method: str) -> None:
        path = urlsplit(self.path).path
        self.params = parse_qs(urlsplit(self.path).query)
        raw = self._read_body()
        body: Any = raw
        if len(raw) < int(self.headers.get("Content-Length") or 0):
            return  # the client went away mid-request (a killed feed): nothing to apply
        if raw and self.headers.get("Content-Type", "").startswith("application/json"):
            try:
                body = json.loads(raw)
            except ValueError:
                self._send(self._violation(f"{method} {path}: body is not JSON"))
                return
        with self.state.lock:
            self.state.requests.append(Recorded(method, path, body))
        fault = self._fault(method, path)
        if fault and fault.delay_s:
            time.sleep(fault.delay_s)
        if fault and not fault.degraded:
            self._send(Reply(fault.status, fault.body or {"message": f"injected {fault.status}"}))
            return
        self._send(self._route(method, path, body, degraded=bool(fault and fault.degraded)))

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # ------------------------------------------------------------------ routes
    def _route(self, method: str, path: str, body: Any, degraded: bool) -> Reply:
        if path == "/application/v2/tenant/default/prepareandactivate" and method == "POST":
            return self._deploy(body)
        if path.endswith("/instance/default/reindexing") and method == "GET":
            with self.state.lock:
                replies = self.state.reindexing
                reply = replies.pop(0) if len(replies) > 1 else (replies[0] if replies else {})
            return Reply(200, reply)
        if path == "/ApplicationStatus" and method == "GET":
            return Reply(200, {"application": {}}) if self.state.deployed else Reply(
                503, {"message": "no application deployed"})
        if not self.state.deployed:
            return Reply(503, {"message": "container not up"})
        if path == "/search/":
            if method != "POST" or not isinstance(body, dict):
                return self._violation("search must be POST /search/ with a JSON body")
            return self._search(body, degraded)
        generations = lgen.route(self, method, path, body, self.params)
        if generations is not None:
            return generations
        m = _DOC_PATH.match(path)
        if m:
            ns, doctype, key = m.groups()
            return self._document(method, path, ns, doctype, key, body)
        return Reply(404, {"message": f"no handler for {method} {path}"})

    def _deploy(self, body: Any) -> Reply:
        if self.headers.get("Content-Type") != "application/zip" or not isinstance(body, bytes):
            return Reply(400, {"error-code": "BAD_REQUEST",
                               "message": "Content-Type must be application/zip"})
        try:
            with zipfile.ZipFile(io.BytesIO(body)) as zf:
                files = {name: zf.read(name).decode() for name in zf.namelist()
                         if not name.endswith("/")}
        except zipfile.BadZipFile:
            return Reply(400, {"error-code": "BAD_REQUEST", "message": "not a zip file"})
        problems = lint_files(files)
        if problems:
            return Reply(400, {"error-code": "INVALID_APPLICATION_PACKAGE",
                               "message": "Invalid application package: "
                               + "; ".join(str(p) for p in problems)})
        self.state.schema = parse_schema(files[f"schemas/{n.SCHEMA}.sd"])
        self.state.catalog_schema = lgen.catalog_schema_of(files)
        self.state.deployed = True
        actions = self.state.change_actions or {"restart": [], "refeed": [], "reindex": []}
        self.state.change_actions = None
        return Reply(200, {"session-id": "2", "tenant": "default", "configChangeActions": actions,
                           "message": "Session 2 for tenant 'default' prepared and activated.",
                           "url": "http://localhost:19071/application/v2/tenant/default/"
                                  "application/default"})

    # ------------------------------------------------------------------ documents
    def _document(self, method: str, path: str, ns: str, doctype: str, key_enc: str,
                  body: Any) -> Reply:
        key = unquote(key_enc)
        full = f"id:{ns}:{doctype}::{key}"
        if doctype != n.SCHEMA:
            return self._violation(f"Document type {doctype} does not exist")
        if ns != self.state.namespace:
            self.state.violations.append(f"namespace {ns!r} != {self.state.namespace!r}")
        store_key = f"{ns}/{key}"
        if method == "GET":
            doc = self.state.docs.get(store_key)
            if doc is None:
                return Reply(404, {"pathId": path, "id": full})
            fields = dict(doc)
            fields[n.F_EMBEDDING] = {"type": f"tensor<float>(x[{self.state.dim}])",
                                     "values": doc[n.F_EMBEDDING]}
            return Reply(200, {"pathId": path, "id": full, "fields": fields})
        if method == "DELETE":
            with self.state.lock:
                self.state.docs.pop(store_key, None)
            return Reply(200, {"pathId": path, "id": full})
        if method == "POST":
            problem = self._check_document(body, key)
            if problem:
                return Reply(400, {"pathId": path, "message": problem})
            fields = dict(body["fields"])
            emb = fields[n.F_EMBEDDING]
            fields[n.F_EMBEDDING] = list(emb["values"] if isinstance(emb, dict) else emb)
            with self.state.lock:
                self.state.docs[store_key] = fields
            return Reply(200, {"pathId": path, "id": full})
        return Reply(405, {"message": f"{method} not allowed"})

    def _check_document(self, body: Any, key: str) -> str | None:
        problem = self._document_problem(body, key)
        if problem:
            self.state.violations.append(problem)
        return problem

    def _document_problem(self, body: Any, key: str) -> str | None:
        schema = self.state.schema
        assert schema is not None
        if not isinstance(body, dict) or set(body) - {"fields", "condition", "create"}:
            return "put body must be {\"fields\": {...}}"
        fields = body.get("fields")
        if not isinstance(fields, dict):
            return "put body has no 'fields' object"
        for name, value in fields.items():
            if name not in schema.fields or not schema.fields[name].in_document:
                return f"No field '{name}' in the structure of type '{n.SCHEMA}'"
            if name in _STRING_FIELDS and not isinstance(value, str):
                return f"field {name} must be a string"
        if fields.get(n.F_ID) != key:
            return f"field id {fields.get(n.F_ID)!r} differs from the document id key {key!r}"
        caps = fields.get(n.F_CAPTIONS, [])
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            return "captions must be an array of strings"
        emb = fields.get(n.F_EMBEDDING)
        values = emb.get("values") if isinstance(emb, dict) else emb
        if not isinstance(values, list) or len(values) != self.state.dim or not all(
                isinstance(v, int | float) for v in values):
            return (f"embedding must be a tensor<float>(x[{self.state.dim}]) "
                    "('values' of that many numbers)")
        return None

    # ------------------------------------------------------------------ search
    def _search(self, body: dict[str, Any], degraded: bool) -> Reply:
        schema = self.state.schema
        assert schema is not None
        inputs = {k: v for k, v in body.items() if k.startswith("input.")}
        unknown = set(body) - SEARCH_PARAMS - set(inputs)
        if unknown:
            return self._violation(f"unknown query parameters {sorted(unknown)}")
        try:
            sel = eng.parse_yql(str(body.get("yql", "")))
        except eng.YqlError as exc:
            return self._violation(f"Could not create query from YQL: {exc}")
        if sel.source != n.SCHEMA:
            return self._violation(f"unknown source {sel.source!r}")
        bad_fields = [f for f in sel.fields if f != "*" and f not in schema.fields]
        if bad_fields:
            return self._violation(f"unknown summary fields {bad_fields}")
        nodes = eng.walk(sel.where)
        has_uq = any(x.kind == "userquery" for x in nodes)
        nns = [x for x in nodes if x.kind == "nn"]
        for node in nodes:
            if node.kind == "in" and node.field_name not in schema.fields:
                return self._violation(f"unknown field {node.field_name!r} in YQL")
            if node.kind == "in":
                node.folded = not schema.fields[node.field_name].cased
        if has_uq != ("query" in body):
            return self._violation("userQuery() and the 'query' parameter go together")
        if has_uq:
            if body.get("model.type") not in MODEL_TYPES:
                return self._violation(f"bad model.type {body.get('model.type')!r}")
            if body.get("model.defaultIndex") != n.F_CAPTION:
                return self._violation("model.defaultIndex must name the caption index")
            self._check_language(schema, body)
        profile = body.get("ranking.profile", "default")
        if profile != "default" and profile not in schema.profiles:
            return self._violation(f"Requested rank profile '{profile}' is undefined")
        declared = schema.resolved(profile).inputs if profile != "default" else {}
        for key, value in inputs.items():
            name = key[len("input."):]
            if name not in declared:
                return self._violation(f"input {name} is not declared in rank profile "
                                       f"'{profile}'")
            if declared[name].startswith("tensor"):
                problem = bz.tensor_input_problem(declared[name], value)
                if problem:
                    return self._violation(f"{name} {problem}")
            elif not isinstance(value, int | float):
                return self._violation(f"{name} must be a number")
        for nn in nns:
            target = schema.fields.get(nn.field_name)
            if target is None or not target.hnsw:
                return self._violation(f"nearestNeighbor on {nn.field_name!r}: no HNSW field")
            problem = bz.nn_problem(schema, nn, declared)
            if problem:
                return self._violation(problem)
            if f"input.query({nn.query_tensor})" not in inputs:
                return self._violation(f"query tensor {nn.query_tensor!r} not sent")
        hits, offset = body.get("hits", 10), body.get("offset", 0)
        if not (isinstance(hits, int) and 0 <= hits <= 400):
            return self._violation("hits must be an integer in 0..400 (maxHits)")
        if not (isinstance(offset, int) and 0 <= offset <= 1000):
            return self._violation("offset must be an integer in 0..1000 (maxOffset)")
        if "timeout" in body and not _TIMEOUT.match(str(body["timeout"])):
            return self._violation(f"bad timeout {body['timeout']!r}")
        rerank = body.get("ranking.globalPhase.rerankCount",
                          schema.resolved(profile).rerank_counts.get("global-phase", 100)
                          if profile != "default" else 100)
        return self._answer(sel, body, profile, int(rerank), hits, offset, degraded)

    def _check_language(self, schema: SchemaInfo, body: dict[str, Any]) -> None:
        """Vespa accepts a query without a language but DETECTS it from the query text (and a
        caption without set_language from the caption): recorded, answered normally."""
        caption = schema.fields.get(n.F_CAPTION)
        indexed = caption.language if caption is not None else None
        asked = body.get("model.locale") or body.get("model.language")
        if indexed is None:
            self.state.violations.append("the caption field has no set_language: Vespa "
                                         "detects the language of every caption")
        if asked is None:
            self.state.violations.append("query text without model.locale/model.language: "
                                         "Vespa detects the language of the query")
        elif indexed is not None and str(asked).split("-")[0] != indexed.split("-")[0]:
            self.state.violations.append(f"query language {asked!r} differs from the "
                                         f"captions' {indexed!r}: terms stem differently")

    def _answer(self, sel: eng.Select, body: dict[str, Any], profile: str, rerank: int,
                hits: int, offset: int, degraded: bool) -> Reply:
        ns = self.state.namespace
        with self.state.lock:  # like Vespa, a query sees every namespace of the doc type
            docs = {k.split("/", 1)[1]: dict(v) for k, v in self.state.docs.items()}
        filters = eng.filter_nodes(sel.where)
        allowed = {k: d for k, d in docs.items()
                   if all(eng.evaluate(f, k, d, set(), set()) for f in filters)}
        text = body.get("query")
        bm25 = eng.bm25_scores(docs, str(text)) if text else {}
        nns = [x for x in eng.walk(sel.where) if x.kind == "nn"]
        q = body.get("input.query(q)")
        close = (eng.closeness(docs, q, lgen.float_field(self.state.schema, nns[0].field_name))
                 if nns and q is not None else {})
        nn_set: set[str] = set()
        ham: dict[str, int] = {}  # binarised: hamming distances on the nn's _bits field
        bits_dim = 0
        for nn in nns:
            bits = bz.hamming_field(self.state.schema, nn) if self.state.schema else None
            if bits is not None:
                ham = bz.hamming(docs, bz.source_field(bits),
                                 body[f"input.query({nn.query_tensor})"])
                bits_dim = 8 * (bits.tensor_dim or 0)
                nn_set |= bz.nearest(list(allowed), ham, nn.target_hits)
                continue
            ordered = sorted((k for k in allowed if k in close), key=lambda k: (-close[k], k))
            nn_set |= set(ordered[:nn.target_hits])
        matched = [k for k, d in docs.items()
                   if eng.evaluate(sel.where, k, d, set(bm25), nn_set)]
        alpha = float(body.get("input.query(alpha)", 0.7))
        saturation = float(body.get("input.query(saturation)", 3.0))
        if ham:
            assert self.state.schema is not None
            second = self.state.schema.resolved(profile).rerank_counts.get("second-phase", 100)
            ranked = bz.rank(lgen.base_profile(profile), matched, bm25, close, ham, bits_dim,
                             rerank_count=int(body.get("ranking.rerankCount", second)),
                             global_rerank=rerank, alpha=alpha, saturation=saturation)
        else:
            ranked = eng.rank(lgen.base_profile(profile), matched, bm25, close, rerank, alpha,
                              saturation)
        page = ranked[offset:offset + hits]
        children = []
        for r in page:
            d = docs[r.key]
            fields = {f: d[f] for f in (sel.fields if sel.fields != ["*"] else d)
                      if f in d and f != n.F_EMBEDDING}
            fields.update({"sddocname": n.SCHEMA, "documentid": f"id:{ns}:{n.SCHEMA}::{r.key}"})
            if profile != "default":
                fields["matchfeatures"] = {n.FN_LEXICAL: r.lexical, n.FN_VECTOR: r.vector}
            children.append({"id": f"id:{ns}:{n.SCHEMA}::{r.key}", "relevance": r.relevance,
                             "source": "content", "fields": fields})
        coverage: dict[str, Any] = {"coverage": 100, "documents": len(docs), "full": True,
                                    "nodes": 1, "results": 1, "resultsFull": 1}
        if degraded:
            coverage.update({"coverage": 50, "documents": len(docs) // 2, "full": False,
                             "resultsFull": 0, "degraded": {"match-phase": False,
                                                            "timeout": True,
                                                            "adaptive-timeout": False,
                                                            "non-ideal-state": False}})
        root: dict[str, Any] = {"id": "toplevel", "relevance": 1.0,
                                "fields": {"totalCount": len(matched)}, "coverage": coverage}
        if children:
            root["children"] = children
        return Reply(200, {"root": root})
