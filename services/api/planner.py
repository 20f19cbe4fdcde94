"""Turn an HTTP search request into a SearchPlan: encode the query, resolve image ids."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from clipsearch.embedder import Embedder
from clipsearch.embeddings import check_dimension, l2_normalize
from clipsearch.errors import (
    BackendUnavailable,
    InvalidRequest,
    NotFound,
)
from clipsearch.image_payloads import decode_base64_image
from clipsearch.index.base import SearchIndex
from clipsearch.quality.tuned import TunedFusions
from clipsearch.search import Filters, Fusion, HybridParameters, Mode, SearchPlan
from clipsearch.settings import Settings
from services.api.schemas import QueryPart, SearchParams

# Parts whose weighted sum is shorter than this fraction of sum(|weight|) cancel out.
DEGENERATE_FRACTION = 0.05


@dataclass
class PlannedQuery:
    plan: SearchPlan
    model_id: str | None
    encode_ms: float
    vector_text: str | None
    fusion_source: str = "default"


def fusion_echo(hybrid: HybridParameters, source: str) -> dict[str, object]:
    """The fusion a hybrid search ran with, for the response's query echo."""
    f = hybrid.fusion
    return {
        "fusion": f, "fusion_source": source,
        "rrf_k": hybrid.rrf_k if f in (Fusion.rrf, Fusion.rrf_textbook) else None,
        "alpha": hybrid.alpha if f in (Fusion.linear, Fusion.score) else None,
        "saturation": hybrid.saturation if f == Fusion.score else None,
    }


def hybrid_parameters(req: SearchParams, tuned: TunedFusions | None
                      ) -> tuple[HybridParameters, str]:
    """The request's own fusion parameters, else the dataset's tuned fusion, else the
    default; with where they came from."""
    if req.fusion_given:
        return HybridParameters(fusion=req.fusion, rrf_k=req.rrf_k, alpha=req.alpha,
                                saturation=req.saturation), "request"
    entry = tuned.for_datasets(req.dataset) if tuned is not None else None
    if entry is not None:
        key, fusion = entry
        return fusion.hybrid, f"tuned:{key}"
    return HybridParameters(), "default"


def prompt_for(text: str, datasets: list[str], templates: dict[str, str]) -> str:
    """The text the vector leg encodes: the dataset's template (or ``*``) around the query.

    A template applies when the request filters on exactly one dataset that has one, or when a
    ``*`` template exists. The query is substituted with ``str.replace``, never ``format``, so
    braces in user text are harmless.
    """
    template = None
    if len(datasets) == 1:
        template = templates.get(datasets[0])
    template = template or templates.get("*")
    return template.replace("{q}", text) if template else text


def _need_embedder(embedder: Embedder | None, why: str | None = None) -> Embedder:
    if embedder is None:
        detail = f" ({why})" if why else ""
        raise BackendUnavailable(
            f"the encoder is not available{detail}; lexical mode still works",
            reason="encoder_unavailable")
    return embedder


@dataclass
class _Encoded:
    vectors: list[np.ndarray] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    text_vectors: list[np.ndarray] = field(default_factory=list)
    text_weights: list[float] = field(default_factory=list)
    model_id: str | None = None
    texts: list[str] = field(default_factory=list)


async def _encode_parts(
    parts: list[QueryPart], *, index: SearchIndex, embedder: Embedder | None,
    templates: dict[str, str], datasets: list[str], use_prompt: bool, upload: bytes | None,
    max_image_bytes: int, embedder_error: str | None = None,
) -> _Encoded:
    out = _Encoded()
    texts = [(p.weight, prompt_for(p.text.strip(), datasets, templates) if use_prompt
              else p.text.strip()) for p in parts if p.text]
    images = [(p.weight, decode_base64_image(p.image, max_image_bytes)) for p in parts if p.image]
    if upload is not None:
        images.append((1.0, upload))
    for p in parts:
        if p.image_id:
            doc = await index.get(p.image_id)
            if doc is None:
                raise NotFound(f"no indexed image with id {p.image_id!r}")
            out.vectors.append(np.asarray(doc.embedding, dtype=np.float32))
            out.weights.append(p.weight)
            out.model_id = doc.model_id or out.model_id
    if texts:
        emb = await _need_embedder(embedder, embedder_error).embed_texts([t for _, t in texts])
        out.text_vectors.extend(emb.vectors)
        out.text_weights.extend(w for w, _ in texts)
        out.model_id, out.texts = emb.model_id, [t for _, t in texts]
    if images:
        emb = await _need_embedder(embedder, embedder_error).embed_images([b for _, b in images])
        out.vectors.extend(emb.vectors)
        out.weights.extend(w for w, _ in images)
        out.model_id = emb.model_id
    return out


def combine(vectors: list[np.ndarray], weights: list[float]) -> np.ndarray:
    """``sum(weight * vector)`` normalised; parts that (nearly) cancel out are refused."""
    total = np.sum([w * v for w, v in zip(weights, vectors, strict=True)], axis=0)
    scale = float(np.sum(np.abs(weights)))
    if float(np.linalg.norm(total)) < DEGENERATE_FRACTION * scale:
        raise InvalidRequest(
            "the weighted query parts cancel each other out: the combined vector has no "
            "direction; change the weights", reason="degenerate_query")
    return l2_normalize(total)[0]


def _steered(enc: _Encoded, steer: str, settings: Settings, dim: int) -> _Encoded:
    """Replace the text parts by their combination moved along the probe's direction."""
    from clipsearch.steering import ProbeStore, apply_steer, parse_steer

    spec = parse_steer(steer)
    if not enc.text_vectors:
        raise InvalidRequest("steer applies to text queries: give q or a text part",
                             reason="invalid_steer")
    probe = ProbeStore(settings, model_id=enc.model_id, dim=dim).for_steer(spec)
    weight = float(np.sum(enc.text_weights))
    if abs(weight) < 1e-6:
        raise InvalidRequest("the text parts' weights sum to zero: nothing to steer",
                             reason="invalid_steer")
    text = combine(enc.text_vectors, enc.text_weights)
    enc.text_vectors = [apply_steer(text, probe, spec.scale)]
    enc.text_weights = [weight]
    return enc


async def plan_search(
    req: SearchParams,
    *,
    index: SearchIndex,
    embedder: Embedder | None,
    candidates: int,
    templates: dict[str, str] | None = None,
    upload: bytes | None = None,
    max_image_bytes: int = 20 * 1024 * 1024,
    settings: Settings | None = None,
    embedder_error: str | None = None,
    tuned: TunedFusions | None = None,
) -> PlannedQuery:
    started = time.perf_counter()
    vector: list[float] | None = None
    model_id: str | None = None
    vector_text: str | None = None
    if req.mode in (Mode.vector, Mode.hybrid):
        enc = await _encode_parts(
            req.query_parts(), index=index, embedder=embedder, templates=templates or {},
            datasets=req.dataset, use_prompt=req.prompt, upload=upload,
            max_image_bytes=max_image_bytes, embedder_error=embedder_error)
        for v in (*enc.vectors, *enc.text_vectors):
            check_dimension(v, index.dim)
        if req.steer:
            enc = _steered(enc, req.steer, settings or Settings(), index.dim)
        vector = combine([*enc.text_vectors, *enc.vectors],
                         [*enc.text_weights, *enc.weights]).tolist()
        model_id = enc.model_id
        vector_text = " | ".join(enc.texts) or None
    # Hybrid without text has no lexical leg: it is a vector search.
    mode = Mode.vector if (req.mode == Mode.hybrid and not req.text) else req.mode
    hybrid, fusion_source = hybrid_parameters(req, tuned)
    plan = SearchPlan(
        mode=mode,
        text=req.text,
        vector=vector,
        limit=req.limit,
        offset=req.offset,
        filters=Filters(dataset=req.dataset, category=req.category, split=req.split),
        hybrid=hybrid,
        candidates=candidates,
        exclude_ids=[req.image_id] if (req.image_id and req.exclude_image) else [],
    )
    return PlannedQuery(plan, model_id, (time.perf_counter() - started) * 1000, vector_text,
                        fusion_source)
