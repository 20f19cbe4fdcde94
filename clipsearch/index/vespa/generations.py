"""Vespa with index generations: ``GenerationalIndex`` over one tensor field per generation.

What ``open_index`` returns for the Vespa backend. The catalog (which generations exist,
their model, space, dimension, state, which is active) lives in Vespa
(``clipsearch.index.vespa.catalog``), so every API replica reads the same active pointer;
the field and profile names follow ``generation_names``. As a ``SearchIndex`` it acts on the
ACTIVE generation (the catalog is re-read after ``CLIPSEARCH_VESPA_CATALOG_TTL_S``, so a
running gateway follows ``clipsearch activate`` without a restart); ``at_generation(name)``
gives one generation's ``VespaGenerationView`` (the gateway pins one per request; a
re-index writes one).

A new generation needs its field in the deployed schema (a live change: no restart, no
re-feed). With ``CLIPSEARCH_VESPA_DEPLOY_GENERATIONS=true`` ``create_generation`` deploys
the single-node package with the catalog's generations itself (``PackageDeployer``);
otherwise it records the generation (``building``) and says how to deploy
(``clipsearch vespa package --from-catalog`` + ``clipsearch vespa deploy``, which also
fits a multi-node package); ``clipsearch reindex`` then resumes it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from clipsearch.documents import DocumentBatch, DocumentFields, ImageDocument
from clipsearch.errors import BackendError, InvalidRequest
from clipsearch.index.generations import (
    LEGACY_NAME,
    Catalog,
    Generation,
    GenerationInUse,
    GenerationState,
    check_claim,
    record_space,
    require_complete,
)
from clipsearch.index.vespa import generation_names as gn
from clipsearch.index.vespa import schema_names as n
from clipsearch.index.vespa.catalog import NoCatalogType, VespaCatalog
from clipsearch.index.vespa.client import VespaIndex
from clipsearch.index.vespa.docs import document_fields
from clipsearch.index.vespa.generation_schema import later_generations
from clipsearch.index.vespa.generation_view import VespaGenerationView
from clipsearch.search import Filters, Mode, SearchPlan, SearchResult
from clipsearch.settings import Settings

log = logging.getLogger(__name__)

VISIT_FIELDS = (n.F_ID, n.F_CAPTIONS, n.F_DATASET, n.F_CATEGORY, n.F_SPLIT, n.F_IMAGE_URI,
                n.F_MODEL_ID, gn.F_GENERATIONS)
VISIT_CHUNK = 400
CONTENT_CLUSTER = f"{n.APP_NAME}_content"  # pyvespa's content cluster id (hosts.CONTENT_ID)
FIELD_WAIT_S = 60.0


class SchemaDeployer(Protocol):
    """Deploys the application with a field and profiles for each of ``catalog``'s
    generations (called after a generation is added)."""

    async def __call__(self, catalog: Catalog) -> None: ...


class PackageDeployer:
    """The single-node package of ``clipsearch vespa package`` (settings' dimension, language,
    cells, vector index) plus the catalog's generations, zipped and activated on the config
    server; a deploy asking for a restart or re-feed fails (``change_actions``)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def _files(self, catalog: Catalog) -> dict[str, str]:
        from clipsearch.index.vespa import package

        s = self._settings
        options: dict[str, Any] = {}
        if s.vespa_vector_index == "binarized":
            from clipsearch.index.vespa.binarized import BinarizedOptions

            options["binarized"] = BinarizedOptions(candidates=s.vespa_binarized_candidates,
                                                    paged=s.vespa_binarized_paged)
        g0 = catalog.get(LEGACY_NAME).dim if any(
            g.name == LEGACY_NAME for g in catalog.generations) else s.embedding_dim
        return package.render(g0, s.vespa_language, s.vespa_cell_type,
                              later_generations(catalog), **options)

    def deploy_files(self, files: dict[str, str]) -> None:
        from clipsearch.index.vespa.deploy import (
            activate_checked,
            refuse_lint_problems,
            zip_files,
        )
        from clipsearch.index.vespa.lint import lint_files

        refuse_lint_problems(lint_files(files))
        activate_checked(self._settings.vespa_config_url, zip_files(files), report=log.info)

    async def __call__(self, catalog: Catalog) -> None:
        await asyncio.to_thread(self.deploy_files, self._files(catalog))


class GenerationalVespaIndex:
    """``SearchIndex`` + ``GenerationalIndex`` over a Vespa application."""

    def __init__(self, base: VespaIndex, *, catalog_ttl_s: float = 1.0,
                 deployer: SchemaDeployer | None = None,
                 field_wait_s: float = FIELD_WAIT_S) -> None:
        self._base = base
        self._catalog = VespaCatalog(base.request, namespace=base.namespace, dim=base.dim,
                                     ttl_s=catalog_ttl_s)
        self._deployer = deployer
        self._field_wait_s = field_wait_s
        self._fields_seen: set[str] = {n.F_EMBEDDING}

    @classmethod
    def from_settings(cls, settings: Settings) -> GenerationalVespaIndex:
        base = VespaIndex.from_settings(settings)
        return cls(base, catalog_ttl_s=settings.vespa_catalog_ttl_s,
                   deployer=PackageDeployer(settings) if settings.vespa_deploy_generations
                   else None)

    @property
    def catalog(self) -> VespaCatalog:
        return self._catalog

    # --- views ----------------------------------------------------------------------------
    def _view(self, gen: Generation, catalog: Catalog, *, create_missing: bool) -> VespaIndex:
        if gen.name == LEGACY_NAME and len(catalog.generations) == 1 and gen.dim == self._base.dim:
            return self._base  # an index without other generations: exactly as before
        return VespaGenerationView(generation=gen, create_missing=create_missing,
                                   sole=len(catalog.generations) == 1,
                                   **self._base.view_options())

    def at_generation(self, name: str) -> VespaIndex:
        """One generation's index (``UnknownGeneration`` if there is none of that name); its
        writes never create a document (a re-index fills existing ones)."""
        catalog = self._catalog.last
        return self._view(catalog.get(name), catalog, create_missing=False)

    async def _active(self) -> VespaIndex:
        catalog = await self._catalog.read()
        return self._view(catalog.active_generation(), catalog, create_missing=True)

    # --- SearchIndex on the active generation ---------------------------------------------
    @property
    def dim(self) -> int:
        return self._catalog.last.active_generation().dim

    async def ensure_ready(self) -> None:
        await self._base.ensure_ready()
        await self._catalog.read(fresh=True)

    async def ping(self) -> None:
        await self._base.ping()

    async def upsert_batch(self, batch: DocumentBatch) -> int:
        return await (await self._active()).upsert_batch(batch)

    async def upsert(self, docs: Sequence[ImageDocument]) -> int:
        return await (await self._active()).upsert(docs)

    async def delete(self, ids: Sequence[str]) -> int:
        return await (await self._active()).delete(ids)

    async def get(self, doc_id: str) -> ImageDocument | None:
        return await (await self._active()).get(doc_id)

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        return await (await self._active()).existing_ids(ids)

    async def count(self, filters: Filters | None = None) -> int:
        return await (await self._active()).count(filters)

    async def search(self, plan: SearchPlan) -> SearchResult:
        return await (await self._active()).search(plan)

    async def flush(self) -> None:
        """Vespa makes writes visible on acknowledgement; nothing to do."""

    async def close(self) -> None:
        await self._base.close()

    # --- generations ----------------------------------------------------------------------
    async def _counted(self, gen: Generation, catalog: Catalog) -> Generation:
        documents = await self._view(gen, catalog, create_missing=False).count()
        return gen.model_copy(update={"documents": documents,
                                      "active": gen.name == catalog.active})

    async def generations(self) -> list[Generation]:
        catalog = await self._catalog.read(fresh=True)
        return [await self._counted(g, catalog) for g in catalog.generations]

    async def generation(self, name: str) -> Generation:
        catalog = await self._catalog.read(fresh=True)
        return await self._counted(catalog.get(name), catalog)

    async def active_generation(self) -> Generation:
        catalog = await self._catalog.read()
        return catalog.active_generation().model_copy(update={"active": True})

    async def create_generation(self, *, model_id: str | None, space: str | None, dim: int,
                                name: str | None = None, expected: int | None = None,
                                source: str | None = None) -> Generation:
        """A new, empty, building generation: a catalog entry, then its field (deployed
        here with a deployer, else the message says how)."""
        if name is not None and name != LEGACY_NAME:
            gn.check_name(name)

        def add(catalog: Catalog) -> Generation:
            chosen = name or catalog.next_name()
            if any(g.name == chosen for g in catalog.generations):
                raise GenerationInUse(f"generation {chosen!r} exists already")
            gen = Generation(name=chosen, table=gn.field_for(chosen), dim=dim,
                             model_id=model_id, space=space, state=GenerationState.building,
                             expected=expected, source=source)
            catalog.generations.append(gen)
            return gen

        gen = await self._catalog.update(add)
        await self._ensure_field(gen, deploy=True)
        return gen

    async def _field_serves(self, gen: Generation) -> bool:
        """Whether the deployed schema has the generation's field and profiles: a query
        with its nearestNeighbor and profile (hits 0) is accepted."""
        field = gn.field_for(gen.name)
        if field in self._fields_seen:
            return True
        view = self._view(gen, self._catalog.last, create_missing=False)
        probe = SearchPlan(mode=Mode.vector, vector=[1.0] + [0.0] * (gen.dim - 1), limit=1)
        try:
            await view.search(probe)
        except (BackendError, InvalidRequest):  # 400: no such field or profile (yet)
            return False
        self._fields_seen.add(field)
        return True

    async def _ensure_field(self, gen: Generation, *, deploy: bool) -> None:
        """Make sure the deployed schema has the generation's field: deploy it (with a
        deployer; deploying the same package again changes nothing), or check it with a
        probe query (without one)."""
        if gn.field_for(gen.name) in self._fields_seen:
            return
        if deploy and self._deployer is not None:
            await self._deployer(await self._catalog.read(fresh=True))
            deadline = asyncio.get_running_loop().time() + self._field_wait_s
            while not await self._field_serves(gen):
                if asyncio.get_running_loop().time() > deadline:
                    raise BackendError(f"the field {gn.field_for(gen.name)} was deployed but "
                                       f"does not serve after {self._field_wait_s:.0f} s")
                await asyncio.sleep(0.5)
            return
        if await self._field_serves(gen):
            return
        raise InvalidRequest(
            f"generation {gen.name!r} is recorded (state {gen.state.value}) but the deployed "
            f"Vespa application has no field {gn.field_for(gen.name)} yet: add it with "
            "`clipsearch vespa package --from-catalog` (plus your cluster options) and "
            "`clipsearch vespa deploy` (a live schema change: no restart, no re-feed), or "
            "set CLIPSEARCH_VESPA_DEPLOY_GENERATIONS=true; then rerun `clipsearch reindex` "
            "(it resumes)", reason="generation_field_missing")

    async def set_expected(self, name: str, expected: int) -> None:
        await self._catalog.update(lambda catalog: catalog.set_expected(name, expected))

    async def complete_generation(self, name: str) -> Generation:
        return await self._catalog.update(lambda catalog: catalog.mark_complete(name))

    async def activate_generation(self, name: str) -> Generation:
        """Make ``name`` active for every replica (one catalog write); a building generation,
        or one whose field the deployed schema lacks, is refused."""
        gen = await self.generation(name)
        require_complete(gen)
        await self._ensure_field(gen, deploy=False)
        await self._catalog.update(lambda catalog: catalog.make_active(name))
        return gen.model_copy(update={"active": True})

    async def drop_generation(self, name: str) -> Generation:
        """Forget an inactive generation and clear its vectors from the documents (the next
        package generated from the catalog leaves its field out)."""
        catalog = await self._catalog.read(fresh=True)
        gen = catalog.get(name)
        if name == catalog.active:
            raise GenerationInUse(f"generation {name!r} is active: activate another first")
        ids = sorted(await self.ids(name))

        def remove(cat: Catalog) -> None:
            if cat.active == name:
                raise GenerationInUse(f"generation {name!r} became active meanwhile")
            cat.generations = [g for g in cat.generations if g.name != name]
        await self._catalog.update(remove)
        if await self._field_serves(gen):
            view = VespaGenerationView(generation=gen, create_missing=False, sole=False,
                                       **self._base.view_options())
            await view.clear(ids)
        self._fields_seen.discard(gn.field_for(name))
        return gen

    async def claim_space(self, name: str, *, model_id: str, space: str | None,
                          dim: int) -> Generation:
        """As the embedded engine's: refuse another space or dimension (nothing written),
        record the space of a generation that has none yet. Checks that the generation's
        field is deployed before anything is written into it."""
        gen = await self.generation(name)

        async def stored_models() -> set[str]:
            return {f.model_id for f in await self.scan_fields(name, limit=100)}

        record = await check_claim(gen, model_id=model_id, space=space, dim=dim,
                                   stored_models=stored_models)
        await self._ensure_field(gen, deploy=True)
        if not record:
            return gen
        try:
            return await self._catalog.update(record_space(name, model_id=model_id,
                                                           space=space))
        except NoCatalogType:  # a package from before generations: feed as before, unverified
            return gen

    async def scan_fields(self, name: str, *, filters: Filters | None = None,
                          limit: int | None = None) -> list[DocumentFields]:
        """The stored fields (no vectors) of a generation's documents, by visiting
        (``GET /document/v1/<ns>/image/docid`` with ``fieldSet`` and continuation tokens)."""
        catalog = await self._catalog.read()
        gen = catalog.get(name)
        wanted = _matcher(gen.name, filters)
        out: list[DocumentFields] = []
        async for fields in self._visit():
            if wanted(fields):
                doc = document_fields(fields)
                if gen.name != LEGACY_NAME and gen.model_id:
                    doc = doc.model_copy(update={"model_id": gen.model_id})
                out.append(doc)
                if limit is not None and len(out) >= limit:
                    break
        return out

    async def ids(self, name: str, *, filters: Filters | None = None) -> set[str]:
        return {d.id for d in await self.scan_fields(name, filters=filters)}

    async def _visit(self) -> Any:
        path = f"/document/v1/{self._base.namespace}/{n.SCHEMA}/docid"
        params: dict[str, str] = {
            "cluster": CONTENT_CLUSTER,
            "fieldSet": f"{n.SCHEMA}:{','.join(VISIT_FIELDS)}",
            "wantedDocumentCount": str(VISIT_CHUNK),
        }
        while True:
            resp = await self._base.request("GET", path, params=params)
            if resp.status_code != 200:
                raise BackendError(f"visiting the documents failed (HTTP {resp.status_code}): "
                                   f"{resp.text[:300]}")
            body = resp.json()
            for doc in body.get("documents", []):
                yield doc.get("fields", {})
            token = body.get("continuation")
            if not token:
                return
            params["continuation"] = str(token)


def _matcher(generation: str, filters: Filters | None) -> Callable[[dict[str, Any]], bool]:
    def wanted(fields: dict[str, Any]) -> bool:
        if generation != LEGACY_NAME and generation not in (fields.get(gn.F_GENERATIONS) or {}):
            return False
        return all(fields.get(name) in values for name, values in (filters or Filters()).items())
    return wanted
