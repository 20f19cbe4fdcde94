"""Checks over a Vespa application package that Vespa itself would only report at deploy
time (or not at all, by ranking silently with zeros).

Rules:

* every ``bm25(f)`` targets an indexed string field with ``index: enable-bm25``;
* every ``closeness(field, f)`` / ``distance(field, f)`` targets a tensor attribute with an
  HNSW index and a distance metric (``prenormalized-angular`` for the embedding);
* every ``query(x)`` a profile uses is declared in its ``inputs``, and every input the client
  sends is declared with the right type and size;
* ``normalize_linear`` / ``reciprocal_rank`` / ``reciprocal_rank_fusion`` appear only in
  ``global-phase``; functions named in expressions and match-features exist;
* every profile the API names exists and exposes each leg's score in ``match-features``;
* the caption field sets its language (``set_language``) instead of having it detected;
* binarised vectors: hamming only on int8, ``binarize | pack_bits`` fields sized ``D/8`` from
  a dense field of ``D`` (divisible by 8), no ``paged`` with HNSW or in a first phase
  (``binarized_lint``);
* services.xml has a container with ``search`` and ``document-api`` and a content cluster
  that holds every schema;
* a multi-node services.xml has a hosts.xml declaring its hosts and a consistent content
  topology (``topology_lint``).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

from pydantic import BaseModel

from clipsearch.index.vespa import schema_names as n
from clipsearch.index.vespa.binarized_lint import lint_binarized
from clipsearch.index.vespa.generation_lint import lint_generations
from clipsearch.index.vespa.sd_parser import SchemaInfo, SchemaSyntaxError, parse_schema
from clipsearch.index.vespa.topology_lint import lint_topology

_BM25 = re.compile(r"\bbm25\(\s*(\w+)\s*\)")
_NN_FEATURE = re.compile(r"\b(closeness|distance)\(\s*field\s*,\s*(\w+)\s*\)")
_QUERY = re.compile(r"\bquery\(\s*(\w+)\s*\)")
_GLOBAL_ONLY = re.compile(r"\b(normalize_linear|reciprocal_rank_fusion|reciprocal_rank)\s*\(")
_NORMALIZER_ARGS = re.compile(
    r"\b(normalize_linear|reciprocal_rank)\(\s*([A-Za-z_]\w*(?:\([^()]*\))?)\s*(?:,\s*([^()]*(?:\([^()]*\))?))?\)"
)


class Problem(BaseModel):
    file: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


def _expressions(schema: SchemaInfo, profile: str) -> dict[str, str]:
    """Where -> expression text, for one profile (inheritance resolved)."""
    p = schema.resolved(profile)
    out = {f"{phase}": expr for phase, expr in p.phases.items()}
    out.update({f"function {name}": expr for name, expr in p.functions.items()})
    return out


def _check_features(schema: SchemaInfo, profile: str, where: str, expr: str) -> list[str]:
    problems = []
    for field_name in _BM25.findall(expr):
        f = schema.fields.get(field_name)
        if f is None:
            problems.append(f"{where}: bm25({field_name}) names an unknown field")
        elif "index" not in f.indexing or "enable-bm25" not in f.index_options:
            problems.append(f"{where}: bm25({field_name}) needs 'index: enable-bm25' on the field "
                            "(and 'index' in its indexing); without it bm25 is always 0")
    for feature, field_name in _NN_FEATURE.findall(expr):
        f = schema.fields.get(field_name)
        if f is None:
            problems.append(f"{where}: {feature}(field, {field_name}) names an unknown field")
        elif f.tensor_dim is None or "attribute" not in f.indexing:
            problems.append(f"{where}: {feature}(field, {field_name}) needs a dense tensor "
                            "attribute field")
        elif not f.hnsw or "index" not in f.indexing:
            problems.append(f"{where}: {feature}(field, {field_name}) targets a field without "
                            "an HNSW index")
        elif f.distance_metric is None:
            problems.append(f"{where}: field {field_name} has no distance-metric")
    return problems


def _check_profile(schema: SchemaInfo, name: str) -> list[str]:
    problems: list[str] = []
    p = schema.resolved(name)
    for where, expr in _expressions(schema, name).items():
        label = f"rank-profile {name} {where}"
        problems += _check_features(schema, name, label, expr)
        for q in _QUERY.findall(expr):
            if f"query({q})" not in p.inputs:
                problems.append(f"{label}: query({q}) is used but not declared in inputs")
        global_only = _GLOBAL_ONLY.search(expr)
        if where != "global-phase" and global_only:
            problems.append(f"{label}: {global_only.group(1)} is only allowed in global-phase")
        for normalizer, arg, k in _NORMALIZER_ARGS.findall(expr):
            if "(" not in arg and arg not in p.functions:
                problems.append(f"{label}: {normalizer}({arg}) names no function of the profile")
            if k and not re.fullmatch(r"\d+(\.\d+)?", k.strip()):
                problems.append(f"{label}: the k of {normalizer} must be a number constant, "
                                f"not {k.strip()!r}")
    for feature in p.match_features:
        if "(" not in feature and feature not in p.functions:
            problems.append(f"rank-profile {name}: match-feature '{feature}' is not a function")
    return list(dict.fromkeys(problems))


def _check_client_contract(schema: SchemaInfo, dim: int | None) -> list[str]:
    problems = []
    emb = schema.fields.get(n.F_EMBEDDING)
    if emb is None or emb.tensor_dim is None:
        problems.append(f"field {n.F_EMBEDDING} must be a dense tensor<float>(x[DIM])")
    else:
        if emb.distance_metric != "prenormalized-angular":
            problems.append(f"field {n.F_EMBEDDING}: distance-metric must be "
                            "prenormalized-angular (the closeness the fusion assumes)")
        if dim is not None and emb.tensor_dim != dim:
            problems.append(f"field {n.F_EMBEDDING} has {emb.tensor_dim} dimensions, the model "
                            f"has {dim}")
    dim = dim or (emb.tensor_dim if emb else None)
    expected = n.expected_inputs(dim or 0)
    for profile in n.PROFILES:
        if profile not in schema.profiles:
            problems.append(f"rank-profile {profile} (named by the API) is missing")
            continue
        p = schema.resolved(profile)
        for inp in n.INPUTS_SENT[profile]:
            declared = p.inputs.get(inp)
            if declared is None:
                problems.append(f"rank-profile {profile}: the client sends {inp} but it is not "
                                "declared in inputs (Vespa rejects the query)")
            elif declared != expected[inp]:
                problems.append(f"rank-profile {profile}: {inp} is declared as {declared}, "
                                f"expected {expected[inp]}")
        for fn in (n.FN_LEXICAL, n.FN_VECTOR):
            if fn not in p.match_features:
                problems.append(f"rank-profile {profile}: match-features must include {fn}")
    for f in (*n.FILTER_FIELDS, n.F_ID):
        info = schema.fields.get(f)
        if info is None or "attribute" not in info.indexing:
            problems.append(f"field {f} must be an attribute (used in filters)")
        elif not info.cased:
            problems.append(f"field {f} needs 'match: cased': uncased, Vespa lower-cases the "
                            "values of 'in (...)' and matches ids or labels that differ only "
                            "by case")
    caption = schema.fields.get(n.F_CAPTION)
    if caption is not None and caption.language is None:
        problems.append(f"field {n.F_CAPTION}: no '\"<lang>\" | set_language' in its indexing: "
                        "Vespa then detects the language of every caption (short texts get "
                        "misdetected and stemmed unlike the queries)")
    return problems


def lint_schema(text: str, dim: int | None = None) -> list[str]:
    try:
        schema = parse_schema(text)
    except SchemaSyntaxError as exc:
        return [f"cannot parse schema: {exc}"]
    problems: list[str] = []
    for name in schema.profiles:
        problems += _check_profile(schema, name)
    problems += lint_binarized(schema)  # hamming, pack_bits, paged (binarized_lint)
    if schema.name == n.SCHEMA:
        problems += _check_client_contract(schema, dim)
        problems += lint_generations(schema)
    return problems


def lint_services(text: str, schema_names: list[str]) -> list[str]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        return [f"not valid XML: {exc}"]
    problems = []
    containers = root.findall("container")
    if not any(c.find("search") is not None for c in containers):
        problems.append("no container has <search> (queries would get 404)")
    if not any(c.find("document-api") is not None for c in containers):
        problems.append("no container has <document-api> (feeding would get 404)")
    declared = {d.get("type") for c in root.findall("content") for d in c.iter("document")}
    for s in schema_names:
        if s not in declared:
            problems.append(f"schema {s} is not in any content cluster's <documents>")
    return problems


def lint_files(files: dict[str, str], dim: int | None = None) -> list[Problem]:
    """Lint a package given as relative path -> text."""
    problems: list[Problem] = []
    schemas = {p: t for p, t in files.items() if p.startswith("schemas/") and p.endswith(".sd")}
    if f"schemas/{n.SCHEMA}.sd" not in schemas:
        problems.append(Problem(file="schemas/", message=f"schema {n.SCHEMA}.sd is missing"))
    for path, text in sorted(schemas.items()):
        problems += [Problem(file=path, message=m) for m in lint_schema(text, dim)]
    if "services.xml" not in files:
        problems.append(Problem(file="services.xml", message="missing"))
    else:
        names = [Path(p).stem for p in schemas]
        problems += [Problem(file="services.xml", message=m)
                     for m in lint_services(files["services.xml"], names)]
        problems += [Problem(file="services.xml", message=m)
                     for m in lint_topology(files["services.xml"], files.get("hosts.xml"))]
    return problems


def read_package(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
            for p in sorted(root.rglob("*")) if p.is_file() and p.suffix in (".sd", ".xml")}


def lint_package(root: Path, dim: int | None = None) -> list[Problem]:
    if not root.is_dir():
        return [Problem(file=str(root), message="not a directory")]
    return lint_files(read_package(root), dim)
