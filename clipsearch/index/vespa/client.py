"""``VespaIndex``: the ``SearchIndex`` protocol over Vespa's HTTP APIs.

One ``httpx.AsyncClient`` owned by the index (HTTP/2 when the server offers it through TLS
ALPN, HTTP/1.1 otherwise). Documents go through ``/document/v1`` (idempotent puts, bounded
concurrency, retries with exponential backoff and jitter on 429/503/504 and connection
errors, a plain message on 507, no retry on other 4xx); queries through ``POST /search/``
with the templates of ``clipsearch.index.vespa.query``. See ``package`` for how the Vespa
ranking relates to ``clipsearch.fusion``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from clipsearch.documents import DocumentBatch, DocumentFields, ImageDocument
from clipsearch.embeddings import check_dimension
from clipsearch.errors import BackendError, BackendUnavailable, FeedBlocked
from clipsearch.fusion import Candidate, fuse
from clipsearch.index.fusion_window import (
    VESPA_MAX_HITS,
    VESPA_MAX_OFFSET,
    check_fusion_window,
)
from clipsearch.index.vespa import docs as vdocs
from clipsearch.index.vespa import query as vquery
from clipsearch.index.vespa import schema_names as n
from clipsearch.index.vespa.binarized import BinarizedQuery
from clipsearch.index.vespa.results import Legs, QueryResponse, raise_for_errors, to_hit
from clipsearch.search import Filters, Fusion, Hit, LegScores, Mode, SearchPlan, SearchResult
from clipsearch.settings import Settings

RETRYABLE_STATUS = frozenset({429, 503, 504})
MAX_HITS = VESPA_MAX_HITS
ID_CHUNK = 400


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8
    initial_s: float = 0.2
    max_s: float = 10.0


class _Retryable(Exception):
    """A transient failure (429/503/504 or a connection error) worth another try."""


def _message(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:500]
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return resp.text[:500]


class VespaIndex:
    """Vespa behind the index protocol. Construct with ``from_settings``; nothing connects
    until the first call."""

    def __init__(
        self,
        *,
        url: str,
        namespace: str,
        dim: int,
        timeout_s: float = 5.0,
        concurrency: int = 16,
        retry: RetryPolicy | None = None,
        client_fusion: bool = False,
        transport: httpx.AsyncBaseTransport | None = None,
        language: str = vquery.DEFAULT_LANGUAGE,
        client: httpx.AsyncClient | None = None,
        binarized: BinarizedQuery | None = None,
    ) -> None:
        self._url = url.rstrip("/")
        self._namespace = namespace
        self._dim = dim
        self._timeout_s = timeout_s
        self._concurrency = concurrency
        self._retry = retry or RetryPolicy()
        self._client_fusion = client_fusion
        self._language = language
        self._binarized = binarized  # None: the float HNSW field; else its _bits field
        self._owns_client = client is None  # a generation's view shares its index's client
        # the index generation this client queries (``generation_view`` sets another):
        # its tensor field, its profiles' suffix and the YQL clause of its documents
        self._field = n.F_EMBEDDING
        self._profile_suffix = ""
        self._extra_where: tuple[str, ...] = ()
        self._client = client or httpx.AsyncClient(
            base_url=self._url,
            http2=transport is None,
            transport=transport,
            # plain http needs no TLS context (building one costs ~0.15 s); https verifies
            verify=self._url.startswith("https://"),
            timeout=httpx.Timeout(timeout_s + max(0.5, timeout_s / 2), connect=min(timeout_s, 5.0)),
            limits=httpx.Limits(max_connections=max(concurrency, 4)),
            headers={"Content-Type": "application/json"},
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> VespaIndex:
        return cls(url=settings.vespa_url, namespace=settings.vespa_namespace,
                   dim=settings.embedding_dim, timeout_s=settings.vespa_timeout_s,
                   concurrency=settings.vespa_feed_concurrency,
                   language=settings.vespa_language,
                   binarized=(BinarizedQuery(candidates=settings.vespa_binarized_candidates)
                              if settings.vespa_vector_index == "binarized" else None))

    @property
    def dim(self) -> int:
        return self._dim

    # ------------------------------------------------------------------ transport
    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise BackendUnavailable(f"Vespa at {self._url} did not answer in time "
                                     f"({type(exc).__name__})") from exc
        except httpx.TransportError as exc:
            raise BackendUnavailable(f"Vespa at {self._url} is not reachable: {exc}") from exc

    async def _with_retry(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A request retried on 429/503/504 and connection errors (for idempotent writes)."""
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Retryable),
            stop=stop_after_attempt(self._retry.attempts),
            wait=wait_exponential_jitter(initial=self._retry.initial_s, max=self._retry.max_s),
            reraise=True,
        )
        last: httpx.Response | None = None
        try:
            async for attempt in retrying:
                with attempt:
                    try:
                        last = await self._request(method, path, **kwargs)
                    except BackendUnavailable as exc:
                        raise _Retryable(str(exc)) from exc
                    if last.status_code in RETRYABLE_STATUS:
                        raise _Retryable(f"HTTP {last.status_code}: {_message(last)}")
        except _Retryable as exc:
            raise BackendUnavailable(
                f"Vespa kept refusing {method} {path} after {self._retry.attempts} attempts: "
                f"{exc}") from exc
        assert last is not None
        return last

    def _check_write(self, resp: httpx.Response, what: str) -> None:
        if resp.status_code == 200:
            return
        msg = _message(resp)
        if resp.status_code == 507:
            raise FeedBlocked(
                "Vespa refuses writes: the content node is over its disk or memory limit "
                f"(HTTP 507). Free space or add capacity, then feed again. Vespa said: {msg}")
        if 400 <= resp.status_code < 500:
            raise BackendError(f"Vespa rejected {what} (HTTP {resp.status_code}): {msg}")
        raise BackendError(f"Vespa failed on {what} (HTTP {resp.status_code}): {msg}")

    async def _query(self, body: dict[str, Any]) -> QueryResponse:
        resp = await self._request("POST", "/search/", json=body)
        try:
            data = resp.json()
            parsed = QueryResponse.model_validate(data)
        except ValueError as exc:
            if resp.status_code in (502, 503, 504):
                raise BackendUnavailable(
                    f"Vespa search is unavailable (HTTP {resp.status_code})") from exc
            raise BackendError(
                f"Vespa answered HTTP {resp.status_code} without a result: {resp.text[:300]}"
            ) from exc
        raise_for_errors(parsed, resp.status_code)
        if resp.status_code != 200:
            raise BackendError(f"Vespa search failed with HTTP {resp.status_code}")
        return parsed

    # ------------------------------------------------------------------ lifecycle
    async def ping(self) -> None:
        resp = await self._request("GET", "/ApplicationStatus")
        if resp.status_code != 200:
            raise BackendUnavailable(
                f"Vespa container at {self._url} answers HTTP {resp.status_code}; "
                "is the application deployed (clipsearch vespa deploy)?")

    async def ensure_ready(self) -> None:
        await self.ping()
        await self.count()  # fails clearly if schema 'image' is not deployed

    async def flush(self) -> None:
        """Vespa makes writes visible on acknowledgement; nothing to do."""

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One HTTP request to Vespa (``BackendUnavailable`` when it cannot be reached)."""
        return await self._request(method, path, **kwargs)

    @property
    def namespace(self) -> str:
        return self._namespace

    def view_options(self) -> dict[str, Any]:
        """What a generation's view (``generation_view``) shares with this index: the same
        Vespa, HTTP client and query settings (its dimension and field are its own)."""
        return {"url": self._url, "namespace": self._namespace, "timeout_s": self._timeout_s,
                "concurrency": self._concurrency, "retry": self._retry,
                "client_fusion": self._client_fusion, "language": self._language,
                "client": self._client, "binarized": self._binarized}

    # hooks for a generation's view (``clipsearch.index.vespa.generation_view``)
    def _search_body(self, plan: SearchPlan, *, hits: int, offset: int,
                     rerank_count: int) -> dict[str, Any]:
        return vquery.search_body(plan, timeout_s=self._timeout_s, hits=hits, offset=offset,
                                  rerank_count=rerank_count, language=self._language,
                                  binarized=self._binarized, field=self._field,
                                  profile_suffix=self._profile_suffix,
                                  extra_where=self._extra_where)

    def _count_body(self, filters: Filters | None) -> dict[str, Any]:
        return vquery.count_body(filters, self._timeout_s, self._extra_where)

    def _ids_body(self, ids: Sequence[str]) -> dict[str, Any]:
        return vquery.ids_body(ids, self._timeout_s, self._extra_where)

    # ------------------------------------------------------------------ documents
    async def _put(self, fields: DocumentFields, vector: list[float]) -> None:
        path = vdocs.document_path(self._namespace, fields.id)
        resp = await self._with_retry("POST", path,
                                      json={"fields": vdocs.to_fields(fields, vector)})
        self._check_write(resp, f"document {fields.id}")

    async def _bounded(self, jobs: Sequence[Any]) -> None:
        sem = asyncio.Semaphore(self._concurrency)

        async def run(job: Any) -> None:
            async with sem:
                await job

        async with asyncio.TaskGroup() as tg:
            for job in jobs:
                tg.create_task(run(job))

    async def _unwrap(self, coro: Any) -> None:
        try:
            await coro
        except* Exception as group:  # TaskGroup wraps failures; surface the first one
            raise group.exceptions[0] from None

    async def upsert(self, docs: Sequence[ImageDocument]) -> int:
        return await self.upsert_batch(DocumentBatch.from_documents(docs, dim=self._dim))

    async def upsert_batch(self, batch: DocumentBatch) -> int:
        batch.check_dim(self._dim)  # refuse the whole batch before writing anything
        unique = batch.dedupe_last()  # concurrent puts of one id would race
        vectors = unique.vectors.tolist()
        await self._unwrap(self._bounded([self._put(f, v) for f, v in
                                          zip(unique.fields, vectors, strict=True)]))
        return len(unique)

    async def _delete_one(self, key: str) -> None:
        resp = await self._with_retry("DELETE", vdocs.document_path(self._namespace, key))
        self._check_write(resp, f"delete of {key}")

    async def delete(self, ids: Sequence[str]) -> int:
        present = await self.existing_ids(ids)
        await self._unwrap(self._bounded([self._delete_one(k) for k in sorted(present)]))
        return len(present)

    async def get(self, doc_id: str) -> ImageDocument | None:
        resp = await self._request("GET", vdocs.document_path(self._namespace, doc_id))
        if resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise BackendError(f"Vespa get of {doc_id} failed (HTTP {resp.status_code}): "
                               f"{_message(resp)}")
        return vdocs.from_fields(resp.json()["fields"])

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        wanted = list(dict.fromkeys(ids))
        found: set[str] = set()
        for start in range(0, len(wanted), ID_CHUNK):
            chunk = wanted[start:start + ID_CHUNK]
            result = await self._query(self._ids_body(chunk))
            found.update(str(c.fields.get(n.F_ID)) for c in result.root.children)
        return found & set(wanted)

    async def count(self, filters: Filters | None = None) -> int:
        result = await self._query(self._count_body(filters))
        return result.root.fields.total_count

    # ------------------------------------------------------------------ search
    def _fuse_here(self, plan: SearchPlan) -> bool:
        if plan.mode != Mode.hybrid:
            return False
        if plan.hybrid.fusion == Fusion.rrf_textbook:
            return True  # needs each leg's retrieval depth: fused here (clipsearch.fusion)
        return self._client_fusion or (plan.hybrid.fusion == Fusion.rrf
                                       and plan.hybrid.rrf_k != n.RRF_K)

    async def search(self, plan: SearchPlan) -> SearchResult:
        if plan.vector is not None:
            check_dimension(plan.vector, self._dim)
        if plan.mode == Mode.lexical and not vquery.has_terms(plan.text):
            return SearchResult(hits=[], total=0)  # nothing to match (Vespa would refuse)
        rerank = 2 * plan.window
        fuse_here = self._fuse_here(plan)
        if fuse_here:
            check_fusion_window(plan, client_fused=True)  # 422 beyond what Vespa can return
            results = await self._whole_window(plan, rerank)
        else:
            results = [await self._query(self._search_body(
                plan, hits=plan.limit, offset=plan.offset, rerank_count=rerank))]
        legs = Legs(lexical=plan.mode != Mode.vector and bool(plan.text and plan.text.strip()),
                    vector=plan.mode != Mode.lexical)
        seen: set[str] = set()
        out = []
        for c in (c for r in results for c in r.root.children):
            hit = to_hit(c, legs)
            if hit.id not in seen:  # pages of one ranking; an id twice only if data moved
                seen.add(hit.id)
                out.append(hit)
        if fuse_here:
            out = self._refuse(out, plan, legs)
        return SearchResult(hits=out, total=results[0].root.fields.total_count,
                            total_approximate=True,
                            degraded=any(r.degraded for r in results))

    async def _whole_window(self, plan: SearchPlan, rerank: int) -> list[QueryResponse]:
        """The top ``rerank`` hits in pages of ``maxHits`` (a client-side fusion needs the
        whole window, not just the page asked for); stops at a short page."""
        results: list[QueryResponse] = []
        offset = 0
        while offset < rerank:
            hits = min(MAX_HITS, rerank - offset)
            if offset < VESPA_MAX_OFFSET < offset + hits:  # the next page starts at maxOffset
                hits = VESPA_MAX_OFFSET - offset
            results.append(await self._query(self._search_body(
                plan, hits=hits, offset=offset, rerank_count=rerank)))
            if len(results[-1].root.children) < hits:
                break
            offset += hits
        return results

    @staticmethod
    def _refuse(window: list[Hit], plan: SearchPlan, legs: Legs) -> list[Hit]:
        """Fuse the returned window with ``clipsearch.fusion`` (exact ranks, any rrf_k)."""
        by_id = {h.id: h for h in window}
        cands = [Candidate(h.id, h.scores.lexical or 0.0, h.scores.vector or 0.0) for h in window]
        fused = fuse(cands, plan.hybrid, depth=plan.window)[plan.offset:plan.offset + plan.limit]
        return [by_id[c.id].model_copy(update={
            "score": score,
            "scores": LegScores(lexical=c.lexical if legs.lexical else None, vector=c.vector),
        }) for c, score in fused]
