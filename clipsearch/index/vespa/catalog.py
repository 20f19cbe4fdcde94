"""The generations catalog of a Vespa index, stored in Vespa itself.

One document ``id:<ns>:generation_catalog::generations`` (``generation_schema``) holds the
catalog as JSON (``clipsearch.index.generations.Catalog``) and a ``revision``. Every API
replica and every command reads the same document through ``/document/v1``, so switching
the active generation is one write that all replicas see:

* readers keep what they read for ``ttl_s`` (``CLIPSEARCH_VESPA_CATALOG_TTL_S``, 1 s) and
  then read again: a running gateway follows ``clipsearch activate`` within that time,
  without a restart; until then it keeps answering from the previous generation, whose
  field and values are still there (``drop`` refuses the active generation);
* writers do a read-modify-write guarded by test-and-set: a put with
  ``condition=generation_catalog.revision==N`` (``N`` the revision read). Vespa answers 412
  when the condition fails (another writer came first): read again and retry. The very first
  write puts with ``create=true`` and the condition on revision 0, so that a document
  created meanwhile by someone else fails the condition too (docs: document-v1 API
  reference, "condition" / "create", status 412; document JSON format, "create can also be
  used together with conditional Put operations", Vespa >= 8.178).

An application deployed before generations has no such document (404): it is read as one
complete generation ``g0`` over the field ``embedding``. If even the document type is
missing (400, a package from before this change), reads still work; writes explain that the
package must be regenerated and deployed first.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import httpx

from clipsearch.errors import BackendError, Conflict, InvalidRequest
from clipsearch.index.generations import LEGACY_NAME, Catalog, Generation, GenerationState
from clipsearch.index.vespa import generation_names as gn
from clipsearch.index.vespa import schema_names as n

T = TypeVar("T")
WRITE_ATTEMPTS = 8


class NoCatalogType(InvalidRequest):
    reason = "vespa_package_outdated"


def catalog_path(namespace: str) -> str:
    return (f"/document/v1/{quote(namespace, safe='')}/{gn.CATALOG_SCHEMA}/docid/"
            f"{gn.CATALOG_KEY}")


def legacy_catalog(dim: int) -> Catalog:
    """An application without a catalog: one complete generation g0 over ``embedding``."""
    gen = Generation(name=LEGACY_NAME, table=n.F_EMBEDDING, dim=dim,
                     state=GenerationState.complete, created=datetime.now(UTC))
    return Catalog(active=LEGACY_NAME, generations=[gen])


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:300]
    return str(body.get("message", resp.text[:300])) if isinstance(body, dict) else ""


Requester = Callable[..., Any]  # VespaIndex.request(method, path, **httpx kwargs)


class VespaCatalog:
    """Read (with a TTL) and update (test-and-set) the catalog document."""

    def __init__(self, request: Requester, *, namespace: str, dim: int, ttl_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._request = request
        self._path = catalog_path(namespace)
        self._dim = dim
        self._ttl_s = ttl_s
        self._clock = clock
        self._cached: Catalog | None = None
        self._revision: int | None = None  # None: the document type is not deployed
        self._read_at = float("-inf")

    @property
    def last(self) -> Catalog:
        """The catalog read last (the legacy one before any read): for sync callers."""
        return self._cached or legacy_catalog(self._dim)

    async def read(self, *, fresh: bool = False) -> Catalog:
        if not fresh and self._cached is not None and (
                self._clock() - self._read_at) < self._ttl_s:
            return self._cached
        catalog, revision = await self._fetch()
        self._cached, self._revision, self._read_at = catalog, revision, self._clock()
        return catalog

    async def _fetch(self) -> tuple[Catalog, int | None]:
        resp = await self._request("GET", self._path)
        if resp.status_code == 404:
            return legacy_catalog(self._dim), 0
        if resp.status_code == 400 and "does not exist" in _message(resp):
            return legacy_catalog(self._dim), None
        if resp.status_code != 200:
            raise BackendError(f"reading the generations catalog failed (HTTP "
                               f"{resp.status_code}): {_message(resp)}")
        fields = resp.json().get("fields", {})
        try:
            catalog = Catalog.model_validate_json(fields[gn.F_CATALOG_JSON])
            return catalog, int(fields[gn.F_CATALOG_REVISION])
        except (KeyError, ValueError) as exc:
            raise BackendError(f"the generations catalog in Vespa is unreadable: {exc}") from exc

    async def update(self, change: Callable[[Catalog], T]) -> T:
        """Apply ``change`` to a fresh copy and write it unless another writer came first
        (then read again and re-apply; ``change`` may raise to refuse)."""
        for attempt in range(WRITE_ATTEMPTS):
            catalog = (await self.read(fresh=True)).model_copy(deep=True)
            revision = self._revision
            if revision is None:
                raise NoCatalogType(
                    "the deployed Vespa application has no document type "
                    f"'{gn.CATALOG_SCHEMA}' for the generations catalog: regenerate and "
                    "deploy the package (`clipsearch vespa package && clipsearch vespa "
                    "deploy`; adding a document type needs no restart or re-feed)")
            result = change(catalog)
            if await self._put(catalog, revision):
                self._cached, self._revision, self._read_at = catalog, revision + 1, self._clock()
                return result
            await asyncio.sleep(min(0.05 * 2 ** attempt, 1.0))
        raise Conflict("the generations catalog kept changing under this write; try again",
                       reason="catalog_contention")

    async def _put(self, catalog: Catalog, revision: int) -> bool:
        stored = catalog.model_copy(update={"generations": [
            g.model_copy(update={"documents": None, "active": False})
            for g in catalog.generations]})
        params = {"condition": f"{gn.CATALOG_SCHEMA}.{gn.F_CATALOG_REVISION}=={revision}"}
        if revision == 0:
            params["create"] = "true"
        body = {"fields": {gn.F_CATALOG_REVISION: revision + 1,
                           gn.F_CATALOG_JSON: stored.model_dump_json(exclude_none=True)}}
        resp = await self._request("POST", self._path, params=params, json=body)
        if resp.status_code == 412:
            return False
        if resp.status_code != 200:
            raise BackendError(f"writing the generations catalog failed (HTTP "
                               f"{resp.status_code}): {_message(resp)}")
        return True


def read_catalog_sync(settings: Any) -> Catalog:
    """The catalog of the Vespa at ``settings.vespa_url`` (for ``clipsearch vespa package
    --from-catalog``)."""
    from clipsearch.index.vespa.client import VespaIndex

    async def go() -> Catalog:
        index = VespaIndex.from_settings(settings)
        try:
            return await VespaCatalog(index.request, namespace=settings.vespa_namespace,
                                      dim=settings.embedding_dim, ttl_s=0.0).read(fresh=True)
        finally:
            await index.close()

    return asyncio.run(go())
