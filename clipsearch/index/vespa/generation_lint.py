"""Lint of index generations in a schema (called by ``lint.lint_schema``): for every later
generation's field ``embedding_<G>`` (``generation_names``) the client sends
``nearestNeighbor(embedding_<G>, q)`` with ``ranking.profile=<profile>-<G>`` and
``generations contains "G"``, so the package must have

* each of the API's profiles as ``<profile>-<G>``, declaring ``query(q)`` with the field's
  dimension and computing ``vector_score`` from ``closeness(field, embedding_<G>)`` (or
  from the field's binarised ``_bits`` companion);
* the weighted set ``generations`` as a fast-search attribute;
* no profile ``<profile>-<G>`` left without its field (a dropped generation's profiles go
  with it).
"""

from __future__ import annotations

from clipsearch.index.vespa import generation_names as gn
from clipsearch.index.vespa import schema_names as n
from clipsearch.index.vespa.sd_parser import SchemaInfo


def lint_generations(schema: SchemaInfo) -> list[str]:
    problems: list[str] = []
    gens = {g: f for f in schema.fields.values()
            if (g := gn.generation_of_field(f.name)) is not None and g != "g0"}
    if gens:
        member = schema.fields.get(gn.F_GENERATIONS)
        if member is None or not member.type.startswith("weightedset<") or \
                "attribute" not in member.indexing:
            problems.append(f"field {gn.F_GENERATIONS} must be a weightedset<string> attribute "
                            "(the client filters a generation's documents with it)")
    for gen, f in sorted(gens.items()):
        if f.tensor_dim is None:
            problems.append(f"field {f.name} (generation {gen}) must be a dense tensor")
            continue
        for base in n.PROFILES:
            name = gn.profile_for(base, gen)
            if name not in schema.profiles:
                problems.append(f"rank-profile {name} (generation {gen}) is missing")
                continue
            p = schema.resolved(name)
            declared = p.inputs.get(n.INPUT_Q)
            if n.INPUT_Q in n.INPUTS_SENT[base] and declared != f"tensor<float>(x[{f.tensor_dim}])":
                problems.append(f"rank-profile {name}: {n.INPUT_Q} must be declared as "
                                f"tensor<float>(x[{f.tensor_dim}]), not {declared}")
            vector = p.functions.get(n.FN_VECTOR, "")
            if f.name not in vector:
                problems.append(f"rank-profile {name}: {n.FN_VECTOR} must use the field "
                                f"{f.name}, not {vector!r}")
    expected = {gn.profile_for(b, g) for b in n.PROFILES for g in gens}
    for name in schema.profiles:
        if name in n.PROFILES or name in expected:
            continue
        for base in n.PROFILES:
            gen = name[len(base) + 1:] if name.startswith(base + gn.PROFILE_SEPARATOR) else ""
            if gen and gn.generation_of_field(f"{n.F_EMBEDDING}_{gen}") == gen:
                problems.append(f"rank-profile {name} names generation {gen}, whose field "
                                f"{gn.field_for(gen)} is not in the schema")
    return list(dict.fromkeys(problems))
