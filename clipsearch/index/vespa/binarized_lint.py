"""Package lint rules for binarised vectors (``binarized``), from Vespa's documentation:

* ``distance-metric: hamming`` only on ``int8`` cells: on other cell types Vespa counts the
  CELLS that differ, not the bits (searchlib ``hamming_distance``), so packed bits would rank
  by the wrong distance;
* a ``... | binarize | pack_bits | ...`` field is ``tensor<int8>(x[D/8])`` filled from
  ``input F`` where ``F`` is a dense tensor document field of ``D`` dimensions, ``D``
  divisible by 8; it is synthetic (outside the ``document`` block: fed documents never
  carry it); ``pack_bits`` needs the 0/1 values of ``binarize`` before it;
* ``paged`` never together with an HNSW index on the same field ("strongly discouraged":
  HNSW reads vectors at random while feeding) and never read in the first phase (every
  retrieved hit would touch disk) — attributes guide, "paged attributes";
* a profile ranking with a hamming field declares the packed query input
  ``query(q_bits) tensor<int8>(x[D/8])`` the client sends.
"""

from __future__ import annotations

import re

from clipsearch.index.vespa.sd_parser import FieldInfo, SchemaInfo

Q_BITS_INPUT = "query(q_bits)"  # binarized.INPUT_Q_BITS (not imported: no pyvespa here)
_NAMED_FIELD = re.compile(r"\b(?:closeness|distance)\(\s*field\s*,\s*(\w+)\s*\)|"
                          r"\battribute\(\s*(\w+)\s*\)")
_WORD = re.compile(r"\b[A-Za-z_]\w*\b")


def _input_field(f: FieldInfo) -> str | None:
    first = f.indexing[0].split() if f.indexing else []
    return first[1] if len(first) == 2 and first[0] == "input" else None


def _check_bits_field(schema: SchemaInfo, f: FieldInfo) -> list[str]:
    where = f"field {f.name}"
    problems = []
    if f.cell_type != "int8" or f.tensor_dim is None:
        problems.append(f"{where}: pack_bits writes tensor<int8>(x[D/8]), not {f.type}")
    steps = [s.split()[0] for s in f.indexing if s]
    if "binarize" not in steps or steps.index("binarize") > steps.index("pack_bits"):
        problems.append(f"{where}: pack_bits needs 0/1 values: put 'binarize' before it")
    if f.in_document:
        problems.append(f"{where}: a field computed by its indexing statement belongs outside "
                        "the document block (a synthetic field, never fed)")
    source_name = _input_field(f)
    source = schema.fields.get(source_name or "")
    if source is None or source.tensor_dim is None:
        problems.append(f"{where}: its indexing must start with 'input F', F a dense tensor "
                        "field (the full vector)")
    elif source.tensor_dim % 8:
        problems.append(f"{where}: {source.name} has {source.tensor_dim} dimensions, not a "
                        "multiple of 8 (pack_bits would pad the last byte with zeros)")
    elif f.tensor_dim is not None and f.tensor_dim != source.tensor_dim // 8:
        problems.append(f"{where}: {source.name} has {source.tensor_dim} dimensions, so "
                        f"x[{source.tensor_dim // 8}] cells, not x[{f.tensor_dim}]")
    return problems


def _first_phase_reads(schema: SchemaInfo, profile: str) -> set[str]:
    """Fields the first phase reads, through the functions it calls (transitively)."""
    p = schema.resolved(profile)
    todo = [p.phases.get("first-phase", "")]
    seen: set[str] = set()
    fields: set[str] = set()
    while todo:
        expr = todo.pop()
        for closeness, attribute in _NAMED_FIELD.findall(expr):
            fields.add(closeness or attribute)
        for word in _WORD.findall(expr):
            if word in p.functions and word not in seen:
                seen.add(word)
                todo.append(p.functions[word])
    return fields


def lint_binarized(schema: SchemaInfo) -> list[str]:
    problems: list[str] = []
    for f in schema.fields.values():
        if f.distance_metric == "hamming" and f.cell_type != "int8":
            problems.append(f"field {f.name}: distance-metric hamming on {f.type} counts the "
                            "cells that differ, not the bits: use tensor<int8> packed bits")
        if "pack_bits" in [s.split()[0] for s in f.indexing if s]:
            problems += _check_bits_field(schema, f)
        if f.paged and f.hnsw:
            problems.append(f"field {f.name}: 'paged' with an HNSW index is strongly "
                            "discouraged (HNSW reads vectors at random while feeding)")
    hamming = {name for name, f in schema.fields.items() if f.distance_metric == "hamming"}
    for name in schema.profiles:
        reads = _first_phase_reads(schema, name)
        for field_name in sorted(reads):
            read = schema.fields.get(field_name)
            if read is not None and read.paged:
                problems.append(f"rank-profile {name} first-phase: reads the paged attribute "
                                f"{field_name} for every retrieved hit (disk); read it in a "
                                "second phase with a rerank-count")
        p = schema.resolved(name)
        exprs = " ".join([*p.phases.values(), *p.functions.values()])
        used = {a or b for a, b in _NAMED_FIELD.findall(exprs)} & hamming
        for field_name in sorted(used):
            dim = schema.fields[field_name].tensor_dim
            want = f"tensor<int8>(x[{dim}])"
            if p.inputs.get(Q_BITS_INPUT) != want:
                problems.append(f"rank-profile {name}: ranks with the hamming field "
                                f"{field_name} but does not declare {Q_BITS_INPUT} {want} "
                                "(the packed query the client sends)")
    return problems
