"""How index generations appear in the Vespa application: one tensor field per generation.

* generation ``g0`` (every index made before generations) keeps the field ``embedding`` and
  the rank profiles named as the API's modes (``lexical``, ``vector``, ``hybrid``,
  ``hybrid-linear``, ``hybrid-score``);
* a later generation ``G`` has the field ``embedding_<G>`` (its own dimension, its own HNSW
  index) and the profiles ``<profile>-<G>`` (e.g. ``vector-g1``, ``hybrid-score-g1``): Vespa
  accepts ``-`` in rank-profile names (``hybrid-linear`` is one) but not in field names,
  so the field takes ``_`` and the profile ``-``; each profile declares ``query(q)`` with the
  dimension of its generation and ranks with ``closeness(field, embedding_<G>)``;
* every document lists the generations that hold a vector for it in the weighted set
  ``generations`` (attribute, fast-search): a query on ``G`` adds ``generations contains
  "G"`` so a document not (yet) re-embedded never answers for ``G``; ``g0`` is every document
  (documents written before generations existed carry no ``generations`` at all);
* the catalog (which generations exist, which is active) is one document of the type
  ``generation_catalog`` (``clipsearch.index.vespa.catalog``).

``G`` is restricted to ``[a-z0-9_]`` (and the engine-independent ``NAME_PATTERN``): it is
spliced into field and profile names and YQL, so anything else is refused up front.
"""

from __future__ import annotations

import re

from clipsearch.errors import InvalidRequest
from clipsearch.index.generations import LEGACY_NAME
from clipsearch.index.vespa import schema_names as n

F_GENERATIONS = "generations"  # weightedset<string>: the generations holding a vector
CATALOG_SCHEMA = "generation_catalog"
CATALOG_KEY = "generations"  # the one catalog document: id:<ns>:generation_catalog::generations
F_CATALOG_REVISION = "revision"  # long attribute, compared by test-and-set conditions
F_CATALOG_JSON = "catalog"  # the catalog as JSON (clipsearch.index.generations.Catalog)
PROFILE_SEPARATOR = "-"
BITS = "bits"  # <field>_bits: a field's binarised int8 companion (issue 17), never a generation
_SUFFIX = re.compile(r"^[a-z0-9_]{1,32}$")


class BadGenerationName(InvalidRequest):
    reason = "bad_generation_name"


def check_name(name: str) -> str:
    """``name`` if it can name a Vespa generation field, else ``BadGenerationName``."""
    if not _SUFFIX.fullmatch(name) or not name[0].isalpha():
        raise BadGenerationName(
            f"generation name {name!r} cannot name a Vespa field: use a lower-case letter "
            "followed by up to 31 of [a-z0-9_] (it becomes the field embedding_<name>)")
    if name == BITS or name.endswith(f"_{BITS}"):
        raise BadGenerationName(
            f"generation name {name!r} is reserved: <field>_{BITS} names the binarised "
            "companion of a generation's field (clipsearch.index.vespa.binarized)")
    return name


def field_for(generation: str) -> str:
    """The tensor field of a generation: ``embedding`` for g0, ``embedding_<G>`` otherwise."""
    if generation == LEGACY_NAME:
        return n.F_EMBEDDING
    return f"{n.F_EMBEDDING}_{check_name(generation)}"


def profile_suffix(generation: str) -> str:
    """What the generation's profiles append to the API's profile names ('' for g0)."""
    if generation == LEGACY_NAME:
        return ""
    return f"{PROFILE_SEPARATOR}{check_name(generation)}"


def profile_for(profile: str, generation: str) -> str:
    return f"{profile}{profile_suffix(generation)}"


def generation_of_field(field: str) -> str | None:
    """The generation a tensor field belongs to (None: not a generation field)."""
    if field == n.F_EMBEDDING:
        return LEGACY_NAME
    prefix = f"{n.F_EMBEDDING}_"
    rest = field[len(prefix):]
    if field.startswith(prefix) and _SUFFIX.fullmatch(rest) and rest[0].isalpha() and not (
            rest == BITS or rest.endswith(f"_{BITS}")):
        return rest
    return None
