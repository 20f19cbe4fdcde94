"""The Vespa application package, generated from pyvespa objects.

``vespa-app/`` is this module's output, checked in; ``clipsearch vespa package --check``
(and a test) fail when the two differ. The ranking defined here is the Vespa side of
``clipsearch.fusion``:

* ``lexical``: ``bm25(caption)`` over the joined captions (``index: enable-bm25``).
* ``vector``: ``closeness(field, embedding)`` (prenormalized-angular, HNSW).
* ``hybrid``: first phase ``closeness + bm25 / (bm25 + 10)`` so that a hit of either leg scores
  above 0 and lexical-only matches (closeness is still computed for them, see below) stay
  in the rerank window; ``global-phase`` computes
  ``reciprocal_rank(lexical_score, 60) + reciprocal_rank(vector_score, 60)`` over
  ``rerank-count`` hits (the client raises it per query to the sum of both legs' candidates
  with ``ranking.globalPhase.rerankCount``).
* ``hybrid-linear``: same first phase; global phase
  ``query(alpha) * normalize_linear(vector_score) + (1 - query(alpha)) *
  normalize_linear(lexical_score)``.
* ``hybrid-score`` (the API's default fusion ``score``): first phase only,
  ``query(alpha) * vector_score + (1 - query(alpha)) * lexical_score / (lexical_score +
  query(saturation))``; a hit's score does not depend on the other hits, so there is no
  window and no tie difference.
* ``rrf_textbook`` (RRF over the legs that retrieved a hit) has no profile of its own: which
  leg retrieved a hit is its rank within that leg's ``targetHits``, which a global-phase
  expression cannot see, so the client runs ``hybrid`` and fuses the returned window with
  ``clipsearch.fusion`` (like another ``rrf_k``).

Differences from the formula in ``clipsearch.fusion`` that cannot be removed in the schema
(found in vespa-engine/documentation ``en/ranking/phased-ranking.html`` and the Vespa
sources):

1. Ties: Vespa's ``reciprocal_rank`` sorts the window and gives ORDINAL ranks (rank = 1 +
   position after a stable sort, ``ReciprocalRankNormalizer``), so equal scores get
   different ranks in first-phase order; ``clipsearch.fusion`` uses competition ranks (ties
   share a rank). The difference matters mostly for the many lexical scores of 0 of
   vector-only hits. The client re-fuses the returned window with ``clipsearch.fusion`` when
   exact agreement is asked for (``client_fusion=True``) or when ``rrf_k`` is not 60.
2. ``k`` of ``reciprocal_rank`` must be a numerical constant in the schema: there is no
   ``query(rrf_k)``. The ``hybrid`` profile compiles in 60; another ``rrf_k`` is fused by the
   client from the window's match-features (same formula, same window).
3. The window: the embedded engine fuses the union of each leg's top ``candidates``; Vespa
   fuses the top ``rerankCount`` hits by the first phase among everything matched by
   ``userQuery() or nearestNeighbor``. weakAnd exposes at least its targetHits, HNSW about
   ``targetHits`` per content node, so with rerankCount = 2 x candidates the windows hold
   the same documents unless many weak lexical matches crowd the first phase.
4. closeness for hits matched only by ``userQuery()``: Vespa 8 computes the distance from
   the attribute for every ranked hit when the query has a nearestNeighbor on the field
   (``ConvertRawscoreToDistance`` in searchlib ``distancefeature.cpp``), so the vector leg
   is exact for those hits too, as in the embedded engine. (The docs' note that closeness is
   "calculated only based on the vectors matched with nearestNeighbor" concerns multi-vector
   fields.) Without a nearestNeighbor (mode ``lexical``) closeness is 0 and the client
   reports the vector leg as absent.
5. Linguistics: Vespa's English stemmer (OpenNLP/kstem) is not LanceDB's Snowball stemmer;
   both lower-case and keep stop words, but a few words stem differently. The language is
   set, never detected: ``"<lang>" | set_language`` before the caption is indexed and
   ``model.locale`` on every query with text (docs: linguistics, "a very common query
   problem" when a short query is detected as another language).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vespa.package import (
    HNSW,
    ApplicationPackage,
    Document,
    Field,
    FieldSet,
    FirstPhaseRanking,
    Function,
    GlobalPhaseRanking,
    RankProfile,
    Schema,
)

from clipsearch.index.vespa import binarized as vbin
from clipsearch.index.vespa import generation_schema as gs
from clipsearch.index.vespa import schema_names as n
from clipsearch.search import DEFAULT_ALPHA, DEFAULT_SATURATION

DEFAULT_RERANK_COUNT = 200
DEFAULT_LANGUAGE = n.DEFAULT_LANGUAGE  # CLIPSEARCH_VESPA_LANGUAGE
DEFAULT_CELL_TYPE = "float"  # CLIPSEARCH_VESPA_CELL_TYPE (float | bfloat16)
CELL_TYPES = ("float", "bfloat16")


def first_phase_hybrid(field: str = n.F_EMBEDDING) -> str:
    return f"closeness(field, {field}) + bm25({n.F_CAPTION}) / (bm25({n.F_CAPTION}) + 10)"


FIRST_PHASE_HYBRID = first_phase_hybrid()
FIRST_PHASE_SCORE = (
    f"{n.INPUT_ALPHA} * {n.FN_VECTOR} + (1 - {n.INPUT_ALPHA}) * {n.FN_LEXICAL} / "
    f"({n.FN_LEXICAL} + {n.INPUT_SATURATION})"
)


def _fields(dim: int, language: str = DEFAULT_LANGUAGE,
            cell_type: str = DEFAULT_CELL_TYPE) -> list[Field]:
    return [
        Field(n.F_ID, "string", indexing=["attribute", "summary"],
              attribute=["fast-search"], match=["cased"]),
        # the language is set, not detected per caption (short captions get misdetected and
        # stemmed unlike the queries, which the client sends with the same model.locale)
        Field(n.F_CAPTION, "string",
              indexing=(f'"{language}" | set_language', "index | summary"),
              index="enable-bm25"),
        Field(n.F_CAPTIONS, "array<string>", indexing=["summary"]),
        *[
            Field(name, "string", indexing=["attribute", "summary"],
                  attribute=["fast-search"], match=["cased"])
            for name in n.FILTER_FIELDS
        ],
        Field(n.F_IMAGE_URI, "string", indexing=["summary"]),
        Field(n.F_MODEL_ID, "string", indexing=["attribute", "summary"]),
        # bfloat16 halves the vectors' memory; queries stay tensor<float> (Vespa converts)
        Field(n.F_EMBEDDING, f"tensor<{cell_type}>(x[{dim}])", indexing=["attribute", "index"],
              ann=HNSW(distance_metric="prenormalized-angular", max_links_per_node=16,
                       neighbors_to_explore_at_insert=200)),
    ]


def _functions(field: str = n.F_EMBEDDING) -> list[Function]:
    return [
        Function(n.FN_LEXICAL, f"bm25({n.F_CAPTION})"),
        Function(n.FN_VECTOR, f"closeness(field, {field})"),
    ]


def _inputs(dim: int) -> list[tuple[str, str, str] | tuple[str, str]]:
    return [(n.INPUT_Q, f"tensor<float>(x[{dim}])"),
            (n.INPUT_ALPHA, "double", str(DEFAULT_ALPHA)),
            (n.INPUT_SATURATION, "double", str(DEFAULT_SATURATION))]


def _profile(name: str, dim: int, first: str, global_phase: str | None,
             field: str = n.F_EMBEDDING) -> RankProfile:
    return RankProfile(
        name,
        inputs=_inputs(dim),
        functions=_functions(field),
        first_phase=FirstPhaseRanking(first),
        global_phase=(GlobalPhaseRanking(global_phase, rerank_count=DEFAULT_RERANK_COUNT)
                      if global_phase else None),
        match_features=[n.FN_LEXICAL, n.FN_VECTOR],
    )


def rank_profiles(dim: int, field: str = n.F_EMBEDDING, suffix: str = "") -> list[RankProfile]:
    """The API's profiles over one embedding field; a later generation's field gets the same
    profiles named ``<profile><suffix>`` (``generation_names``)."""
    rrf = (f"reciprocal_rank({n.FN_LEXICAL}, {n.RRF_K}) + "
           f"reciprocal_rank({n.FN_VECTOR}, {n.RRF_K})")
    linear = (f"{n.INPUT_ALPHA} * normalize_linear({n.FN_VECTOR}) + "
              f"(1 - {n.INPUT_ALPHA}) * normalize_linear({n.FN_LEXICAL})")
    hybrid_first = first_phase_hybrid(field)
    return [
        _profile(n.PROFILE_LEXICAL + suffix, dim, n.FN_LEXICAL, None, field),
        _profile(n.PROFILE_VECTOR + suffix, dim, n.FN_VECTOR, None, field),
        _profile(n.PROFILE_HYBRID + suffix, dim, hybrid_first, rrf, field),
        _profile(n.PROFILE_HYBRID_LINEAR + suffix, dim, hybrid_first, linear, field),
        _profile(n.PROFILE_HYBRID_SCORE + suffix, dim, FIRST_PHASE_SCORE, None, field),
    ]


def application_package(dim: int = 512, language: str = DEFAULT_LANGUAGE,
                        cell_type: str = DEFAULT_CELL_TYPE,
                        generations: Sequence[gs.GenerationField] = (),
                        binarized: vbin.BinarizedOptions | None = None) -> ApplicationPackage:
    """The whole application: the schema ``image`` and the generations' catalog type
    ``generation_catalog``; services.xml from pyvespa's defaults (a container with search +
    document-api, one content cluster). ``generations``: the later index generations, each
    with its own tensor field and profiles (``generation_schema``, ``generation_names``).
    ``binarized``: every vector field gets an int8 ``_bits`` HNSW field and binarised
    profiles (``binarized``; CLIPSEARCH_VESPA_VECTOR_INDEX=binarized)."""
    def profiles_for(d: int, field: str = n.F_EMBEDDING, suffix: str = "") -> list[RankProfile]:
        if binarized is not None:
            return vbin.binarized_profiles(field, d, options=binarized, suffix=suffix)
        return rank_profiles(d, field, suffix)

    profiles = profiles_for(dim)
    for g in generations:
        profiles += profiles_for(g.dim, g.field, g.suffix)
    fields = [*_fields(dim, language, cell_type), gs.membership_field(),
              *gs.generation_fields(generations, cell_type)]
    synthetic: list[Field] = []
    if binarized is not None:
        fields, synthetic = vbin.binarize_fields(fields, binarized)
    schema = Schema(
        n.SCHEMA,
        document=Document(fields=fields),
        fieldsets=[FieldSet("default", [n.F_CAPTION])],
        rank_profiles=profiles,
    )
    for f in synthetic:  # outside the document block: filled by the indexing statement
        schema.add_fields(f)
    return ApplicationPackage(name=n.APP_NAME, schema=[schema, gs.catalog_schema()],
                              create_query_profile_by_default=False)


def render(dim: int = 512, language: str = DEFAULT_LANGUAGE,
           cell_type: str = DEFAULT_CELL_TYPE,
           generations: Sequence[gs.GenerationField] = (),
           binarized: vbin.BinarizedOptions | None = None) -> dict[str, str]:
    """Relative path -> file text, exactly what is checked in under ``vespa-app/``."""
    app = application_package(dim, language, cell_type, generations, binarized)
    files = {"services.xml": app.services_to_text}
    for schema in app.schemas:
        files[f"schemas/{schema.name}.sd"] = schema.schema_to_text
    return {path: text if text.endswith("\n") else text + "\n" for path, text in files.items()}


def write(target: Path, dim: int = 512, language: str = DEFAULT_LANGUAGE) -> list[Path]:
    """Write the package to ``target``; returns the files written."""
    written = []
    for rel, text in render(dim, language).items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def differences(target: Path, dim: int = 512, language: str = DEFAULT_LANGUAGE) -> list[str]:
    """Files under ``target`` that are missing or differ from the generator's output."""
    return differences_from(target, render(dim, language))


def differences_from(target: Path, files: dict[str, str]) -> list[str]:
    """Which of ``files`` (relative path -> expected text) are missing or differ under
    ``target``: the check of every generated package, single-node or cluster."""
    out = []
    for rel, text in files.items():
        path = target / rel
        if not path.is_file():
            out.append(f"{rel}: missing")
        elif path.read_text(encoding="utf-8") != text:
            out.append(f"{rel}: differs from the generator's output")
    return out
