"""One index generation on Vespa as a ``SearchIndex`` (what ``at_generation`` returns).

The documents are shared by all generations; each generation has its own tensor field
(``generation_names``). A view:

* searches with ``nearestNeighbor(<its field>, q)`` and its own rank profiles, and (for a
  generation other than g0) only among documents whose ``generations`` set names it;
* writes with partial updates (``PUT /document/v1/...`` with ``{"fields": {f: {"assign":
  ...}}}``), so the other generations' vectors of a document are kept: the stored fields
  (captions, labels, location), its own vector and ``generations`` ``add`` ``{G: 1}``
  (a weighted set: idempotent). A re-index writes with ``condition=image`` and no
  ``create``: Vespa answers 412 for a document that no longer exists and creates nothing
  (no ghost documents; docs: document-v1 "412 ... also the result when a condition is
  specified, but the document does not exist"); feeding the active generation may create
  new documents (``create=true``). While g0 is the only generation, its writes stay the
  plain puts of ``VespaIndex``;
* reads a document's vector from its own field; a document without it is absent here.

Deleting through a view removes the whole document (from every generation), as a document
that left the source leaves the index.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from clipsearch.documents import DocumentFields, ImageDocument
from clipsearch.errors import BackendError
from clipsearch.index.generations import LEGACY_NAME, Generation
from clipsearch.index.vespa import docs as vdocs
from clipsearch.index.vespa import generation_names as gn
from clipsearch.index.vespa import query as vquery
from clipsearch.index.vespa import schema_names as n
from clipsearch.index.vespa.client import VespaIndex
from clipsearch.search import SearchPlan, SearchResult

EXISTING_ONLY = n.SCHEMA  # a document selection true for every stored image document


def membership_clause(generation: str) -> list[str]:
    """The YQL clause limiting a query to a generation's documents (none for g0)."""
    if generation == LEGACY_NAME:
        return []
    return [f"{gn.F_GENERATIONS} contains {vquery.yql_string(gn.check_name(generation))}"]


def update_fields(doc: DocumentFields, vector: Sequence[float], generation: str) -> dict[str, Any]:
    """The partial update writing ``doc``'s fields and its vector of ``generation``."""
    put = vdocs.to_fields(doc, vector)
    vector_value = put.pop(n.F_EMBEDDING)
    if generation != LEGACY_NAME:
        put.pop(n.F_MODEL_ID)  # the document's model_id is g0's; a generation's is its own
    fields: dict[str, Any] = {name: {"assign": value} for name, value in put.items()}
    fields[gn.field_for(generation)] = {"assign": vector_value}
    fields[gn.F_GENERATIONS] = {"add": {generation: 1}}
    return fields


class VespaGenerationView(VespaIndex):
    """``VespaIndex`` for one generation (shares the owning index's HTTP client)."""

    def __init__(self, *, generation: Generation, create_missing: bool, sole: bool,
                 **kwargs: Any) -> None:
        super().__init__(dim=generation.dim, **kwargs)
        self._gen = generation
        self._field = gn.field_for(generation.name)  # what VespaIndex queries and reads
        self._profile_suffix = gn.profile_suffix(generation.name)
        self._extra_where = tuple(membership_clause(generation.name))
        self._create_missing = create_missing
        self._plain = sole and generation.name == LEGACY_NAME  # no other field to keep

    @property
    def generation(self) -> Generation:
        return self._gen

    async def search(self, plan: SearchPlan) -> SearchResult:
        result = await super().search(plan)
        if self._gen.name == LEGACY_NAME or not self._gen.model_id:
            return result
        model = self._gen.model_id  # the stored model_id is g0's: name this generation's
        return result.model_copy(update={"hits": [
            h.model_copy(update={"document": h.document.model_copy(update={"model_id": model})})
            for h in result.hits]})

    # ------------------------------------------------------------------ documents
    async def _put(self, fields: DocumentFields, vector: list[float]) -> None:
        if self._plain:
            await super()._put(fields, vector)
            return
        path = vdocs.document_path(self._namespace, fields.id)
        params = {"create": "true"} if self._create_missing else {"condition": EXISTING_ONLY}
        resp = await self._with_retry(
            "PUT", path, params=params,
            json={"fields": update_fields(fields, vector, self._gen.name)})
        if resp.status_code == 412 and not self._create_missing:
            return  # the document is gone (deleted since the re-index read it): not recreated
        self._check_write(resp, f"update of {fields.id} ({self._field})")

    async def get(self, doc_id: str) -> ImageDocument | None:
        resp = await self._request("GET", vdocs.document_path(self._namespace, doc_id))
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise BackendError(f"Vespa get of {doc_id} failed (HTTP {resp.status_code})")
        fields = resp.json()["fields"]
        held = fields.get(gn.F_GENERATIONS) or {}
        if self._field not in fields or (self._gen.name != LEGACY_NAME
                                         and self._gen.name not in held):
            return None
        doc = vdocs.document_fields(fields)
        if self._gen.name != LEGACY_NAME and self._gen.model_id:
            doc = doc.model_copy(update={"model_id": self._gen.model_id})
        return ImageDocument(**doc.model_dump(),
                             embedding=vdocs.tensor_values(fields[self._field]))

    async def clear(self, ids: Sequence[str]) -> None:
        """Remove this generation's vector (and its name in ``generations``) from the
        documents ``ids``; the documents stay (``drop``)."""
        body = {"fields": {self._field: {"assign": None},
                           gn.F_GENERATIONS: {"remove": {self._gen.name: 0}}}}

        async def one(key: str) -> None:
            resp = await self._with_retry("PUT", vdocs.document_path(self._namespace, key),
                                          params={"condition": EXISTING_ONLY}, json=body)
            if resp.status_code != 412:  # 412: deleted meanwhile
                self._check_write(resp, f"clearing {self._field} of {key}")

        await self._unwrap(self._bounded([one(k) for k in ids]))
