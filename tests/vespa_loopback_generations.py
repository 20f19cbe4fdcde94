"""What the loopback Vespa (``tests/vespa_loopback.py``) knows for index generations, from
Vespa's documentation (vespa-engine/documentation ``en/reference/api/document-v1``,
``en/reference/schemas/document-json-format``):

* ``PUT /document/v1/<ns>/<type>/docid/<key>``: a partial update, ``{"fields": {f: {op:
  value}}}`` with ``assign`` (a value of the field's type; ``null`` clears the field), ``add``
  / ``remove`` on a weighted set (``{"item": weight}``); an unknown field or operation is 400.
  Without ``create`` an update of a missing document answers 200 and creates nothing;
  ``create=true`` creates it; with a ``condition`` a missing document answers 412.
* ``POST`` (put) with ``condition`` (412 when false or when the document is missing) and
  ``create=true`` (a conditional put may then create a missing document, Vespa >= 8.178).
* conditions: the document selections the client sends, ``<type>`` and
  ``<type>.<field>==<integer>`` (anything else is recorded as a violation).
* ``GET .../docid/<key>``: every tensor field as ``{"type": ..., "values": [...]}``, a
  weighted set as ``{"item": weight}``; ``fieldSet=<type>:f1,f2`` limits the fields.
* visiting ``GET /document/v1/<ns>/<type>/docid`` with ``cluster``, ``fieldSet``,
  ``wantedDocumentCount`` and ``continuation``: ``{"documents": [{"id", "fields"}],
  "documentCount", "continuation"?}``.
* the document type ``generation_catalog`` when the deployed package has it; any other
  type is 400 "Document type ... does not exist".
"""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from clipsearch.index.vespa import generation_names as gn
from clipsearch.index.vespa import schema_names as n
from clipsearch.index.vespa.sd_parser import FieldInfo, SchemaInfo

if TYPE_CHECKING:
    from tests.vespa_loopback import Reply, _Handler

_VISIT_PATH = re.compile(r"^/document/v1/([^/]+)/([^/]+)/docid/?$")
_DOC_PATH = re.compile(r"^/document/v1/([^/]+)/([^/]+)/docid/([^/]+)$")
_CONDITION = re.compile(r"^\s*(\w+)(?:\.(\w+)\s*==\s*(-?\d+))?\s*$")
VISIT_MAX = 1000
_STRINGS = {"string"}


def _schemas(h: _Handler) -> dict[str, SchemaInfo]:
    out = {}
    if h.state.schema is not None:
        out[h.state.schema.name] = h.state.schema
    if h.state.catalog_schema is not None:
        out[h.state.catalog_schema.name] = h.state.catalog_schema
    return out


def _store(h: _Handler, doctype: str) -> dict[str, dict[str, Any]]:
    return h.state.docs if doctype == n.SCHEMA else h.state.catalog_docs


def _param(params: dict[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def route(h: _Handler, method: str, path: str, body: Any,
          params: dict[str, list[str]]) -> Reply | None:
    """Answer the document requests of generations; None: the loopback's own routes."""
    from tests.vespa_loopback import Reply

    m = _VISIT_PATH.match(path)
    if m and method == "GET":
        return _visit(h, m.group(1), m.group(2), params)
    m = _DOC_PATH.match(path)
    if not m:
        return None
    ns, doctype, key_enc = m.groups()
    from urllib.parse import unquote

    key = unquote(key_enc)
    if doctype == n.SCHEMA and method in ("POST", "DELETE") and not params:
        return None  # plain puts and removes: the loopback's own checks
    schema = _schemas(h).get(doctype)
    if schema is None:
        return h._violation(f"Document type {doctype} does not exist")
    store, store_key, full = _store(h, doctype), f"{ns}/{key}", f"id:{ns}:{doctype}::{key}"
    unknown = set(params) - {"condition", "create", "fieldSet", "timeout", "cluster"}
    if unknown:
        return h._violation(f"unknown /document/v1 parameters {sorted(unknown)}")
    if method == "GET":
        doc = store.get(store_key)
        if doc is None:
            return Reply(404, {"pathId": path, "id": full})
        return Reply(200, {"pathId": path, "id": full,
                           "fields": render(schema, doc, _param(params, "fieldSet"))})
    condition, create = _param(params, "condition"), _param(params, "create") == "true"
    with h.state.lock:
        doc = store.get(store_key)
        if condition is not None:
            verdict = _condition(h, schema, condition, doc)
            if isinstance(verdict, str):
                return h._violation(verdict)
            if (doc is None and not (create and method == "POST")) or (doc is not None
                                                                     and not verdict):
                return Reply(412, {"pathId": path, "id": full,
                                   "message": "[UNKNOWN(251013) @ tcp/...]: ReturnCode("
                                   "TEST_AND_SET_CONDITION_FAILED, Condition did not match "
                                   "document"})
        if method == "DELETE":
            store.pop(store_key, None)
            return Reply(200, {"pathId": path, "id": full})
        if method == "POST":
            problem = put_problem(schema, body, key)
            if problem:
                h.state.violations.append(problem)
                return Reply(400, {"pathId": path, "message": problem})
            store[store_key] = {k: _stored(schema.fields[k], v) for k, v in
                                body["fields"].items()}
            return Reply(200, {"pathId": path, "id": full})
        if method == "PUT":
            problem = update_problem(schema, body)
            if problem:
                h.state.violations.append(problem)
                return Reply(400, {"pathId": path, "message": problem})
            if doc is None:
                if not create:
                    return Reply(200, {"pathId": path, "id": full})  # nothing created
                doc = store[store_key] = {}
            apply_update(schema, doc, body["fields"])
            return Reply(200, {"pathId": path, "id": full})
    return Reply(405, {"message": f"{method} not allowed"})


def _condition(h: _Handler, schema: SchemaInfo, text: str,
               doc: dict[str, Any] | None) -> bool | str:
    m = _CONDITION.match(text)
    if not m or m.group(1) != schema.name:
        return f"condition {text!r}: the loopback knows '<type>' and '<type>.<field>==<int>'"
    if m.group(2) is None:
        return doc is not None
    f = schema.fields.get(m.group(2))
    if f is None or "attribute" not in f.indexing:
        return f"condition {text!r}: {m.group(2)} is not an attribute of {schema.name}"
    return doc is not None and doc.get(m.group(2)) == int(m.group(3))


def _tensor_problem(f: FieldInfo, value: Any) -> str | None:
    values = value.get("values") if isinstance(value, dict) else value
    if not isinstance(values, list) or len(values) != f.tensor_dim or not all(
            isinstance(v, int | float) for v in values):
        return f"{f.name} must be a {f.type} ('values' of {f.tensor_dim} numbers)"
    return None


def value_problem(f: FieldInfo, value: Any) -> str | None:
    if f.tensor_dim is not None:
        return _tensor_problem(f, value)
    if f.type in _STRINGS and not isinstance(value, str):
        return f"field {f.name} must be a string"
    if f.type == "long" and not isinstance(value, int):
        return f"field {f.name} must be a long"
    if f.type.startswith("array<") and not isinstance(value, list):
        return f"field {f.name} must be an array"
    if f.type.startswith("weightedset<") and not (isinstance(value, dict) and all(
            isinstance(w, int) for w in value.values())):
        return f"field {f.name} must be a weighted set {{\"item\": weight}}"
    return None


def _document_field(schema: SchemaInfo, name: str) -> FieldInfo | None:
    f = schema.fields.get(name)
    return f if f is not None and getattr(f, "in_document", True) else None


def put_problem(schema: SchemaInfo, body: Any, key: str) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("fields"), dict):
        return "put body must be {\"fields\": {...}}"
    for name, value in body["fields"].items():
        f = _document_field(schema, name)
        if f is None:
            return f"No field '{name}' in the structure of type '{schema.name}'"
        problem = value_problem(f, value)
        if problem:
            return problem
    if schema.name == n.SCHEMA and body["fields"].get(n.F_ID) != key:
        return f"field id differs from the document id key {key!r}"
    return None


def update_problem(schema: SchemaInfo, body: Any) -> str | None:
    if not isinstance(body, dict) or set(body) - {"fields", "condition", "create"} or \
            not isinstance(body.get("fields"), dict):
        return "update body must be {\"fields\": {field: {operation: value}}}"
    for name, op in body["fields"].items():
        f = _document_field(schema, name)
        if f is None:
            return f"No field '{name}' in the structure of type '{schema.name}'"
        if not isinstance(op, dict) or len(op) != 1:
            return f"field {name}: an update names one operation, e.g. {{\"assign\": ...}}"
        (kind, value), = op.items()
        if kind == "assign":
            problem = None if value is None else value_problem(f, value)
        elif kind in ("add", "remove") and f.type.startswith("weightedset<"):
            problem = value_problem(f, value)
        else:
            problem = f"field {name} ({f.type}): operation {kind!r} is not supported here"
        if problem:
            return problem
    return None


def _stored(f: FieldInfo, value: Any) -> Any:
    if f.tensor_dim is not None and isinstance(value, dict):
        return list(value["values"])
    return dict(value) if isinstance(value, dict) else value


def apply_update(schema: SchemaInfo, doc: dict[str, Any], fields: dict[str, Any]) -> None:
    for name, op in fields.items():
        (kind, value), = op.items()
        f = schema.fields[name]
        if kind == "assign":
            if value is None:
                doc.pop(name, None)
            else:
                doc[name] = _stored(f, value)
        elif kind == "add":
            doc[name] = {**doc.get(name, {}), **value}
        elif kind == "remove":
            left = {k: w for k, w in doc.get(name, {}).items() if k not in value}
            if left:
                doc[name] = left
            else:
                doc.pop(name, None)


def render(schema: SchemaInfo, doc: dict[str, Any], field_set: str | None) -> dict[str, Any]:
    wanted = None
    if field_set and field_set != "[document]":
        wanted = set(field_set.split(":", 1)[1].split(",")) if ":" in field_set else set()
    out: dict[str, Any] = {}
    for name, value in doc.items():
        if wanted is not None and name not in wanted:
            continue
        f = schema.fields.get(name)
        if f is not None and f.tensor_dim is not None:
            out[name] = {"type": f.type.replace(" ", ""), "values": list(value)}
        else:
            out[name] = value
    return out


def _visit(h: _Handler, ns: str, doctype: str, params: dict[str, list[str]]) -> Reply:
    from tests.vespa_loopback import Reply

    schema = _schemas(h).get(doctype)
    if schema is None:
        return h._violation(f"Document type {doctype} does not exist")
    unknown = set(params) - {"cluster", "fieldSet", "wantedDocumentCount", "continuation",
                             "selection", "timeout", "concurrency", "stream"}
    if unknown:
        return h._violation(f"unknown visit parameters {sorted(unknown)}")
    if _param(params, "cluster") != f"{n.APP_NAME}_content":
        return h._violation("visit: 'cluster' must name the content cluster")
    field_set = _param(params, "fieldSet")
    if field_set and ":" in field_set:
        bad = [f for f in field_set.split(":", 1)[1].split(",") if f not in schema.fields]
        if field_set.split(":", 1)[0] != doctype or bad:
            return h._violation(f"bad fieldSet {field_set!r}")
    wanted = int(_param(params, "wantedDocumentCount") or 1)
    start = int(_param(params, "continuation") or 0)
    with h.state.lock:
        keys = sorted(k for k in _store(h, doctype) if k.startswith(f"{ns}/"))
        page = [(k, dict(_store(h, doctype)[k])) for k in keys[start:start + min(wanted,
                                                                                 VISIT_MAX)]]
    docs = [{"id": f"id:{ns}:{doctype}::{k.split('/', 1)[1]}",
             "fields": render(schema, d, field_set)} for k, d in page]
    body: dict[str, Any] = {"pathId": f"/document/v1/{ns}/{doctype}/docid",
                            "documents": docs, "documentCount": len(docs)}
    if start + len(page) < len(keys):
        body["continuation"] = str(start + len(page))
    return Reply(200, body)


@functools.cache
def generated_catalog_schema() -> SchemaInfo:
    """The generator's ``generation_catalog`` schema (rendered once: pyvespa is slow)."""
    from clipsearch.index.vespa.generation_schema import catalog_schema
    from clipsearch.index.vespa.sd_parser import parse_schema

    return parse_schema(catalog_schema().schema_to_text)


def catalog_schema_of(files: dict[str, str]) -> SchemaInfo | None:
    from clipsearch.index.vespa.sd_parser import parse_schema

    text = files.get(f"schemas/{gn.CATALOG_SCHEMA}.sd")
    return parse_schema(text) if text else None


def float_field(schema: SchemaInfo | None, nn_field: str) -> str:
    """The float tensor field a nearestNeighbor's closeness is computed on: the field itself,
    or the source of a binarised ``<field>_bits`` companion."""
    suffix = f"_{gn.BITS}"
    if schema is not None and nn_field.endswith(suffix) and nn_field[:-len(suffix)] in \
            schema.fields:
        return nn_field[:-len(suffix)]
    return nn_field


def base_profile(profile: str) -> str:
    """The API profile a generation's profile ranks like: ``vector-g1`` -> ``vector``
    (``hybrid-linear`` stays itself)."""
    if profile in n.PROFILES:
        return profile
    for base in sorted(n.PROFILES, key=len, reverse=True):
        gen = profile[len(base) + 1:] if profile.startswith(base + gn.PROFILE_SEPARATOR) else ""
        if gen and gn.generation_of_field(f"{n.F_EMBEDDING}_{gen}") == gen:
            return base
    return profile
