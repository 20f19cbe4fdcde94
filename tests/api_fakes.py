"""Small stand-ins for the index and the encoder, to test the gateway's own behaviour
(validation, error mapping, degraded dependencies) without a model or an engine."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clipsearch.documents import ImageDocument
from clipsearch.embeddings import Embeddings, l2_normalize
from clipsearch.errors import BackendUnavailable
from clipsearch.search import Filters, Hit, LegScores, SearchPlan, SearchResult

DIM = 8


def unit(seed: int, dim: int = DIM) -> list[float]:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return [float(x) for x in l2_normalize(v)[0]]


def doc(i: int, **kw: object) -> ImageDocument:
    fields: dict[str, object] = dict(id=f"t:{i}", captions=[f"caption {i}"], dataset="t",
                                     category="c", split="test", image_uri="",
                                     model_id="fake", embedding=unit(i))
    fields.update(kw)
    return ImageDocument.model_validate(fields)


class RecordingIndex:
    """Answers every search with its stored docs in order and remembers the plans it got."""

    def __init__(self, docs: Sequence[ImageDocument] = (), *, down: bool = False) -> None:
        self.docs = {d.id: d for d in docs}
        self.plans: list[SearchPlan] = []
        self.down = down

    @property
    def dim(self) -> int:
        return DIM

    def _check(self) -> None:
        if self.down:
            raise BackendUnavailable("index is down (test)", reason="index_unavailable")

    async def ensure_ready(self) -> None:
        self._check()

    async def ping(self) -> None:
        self._check()

    async def upsert(self, docs: Sequence[ImageDocument]) -> int:
        self.docs.update({d.id: d for d in docs})
        return len(docs)

    async def delete(self, ids: Sequence[str]) -> int:
        return sum(self.docs.pop(i, None) is not None for i in ids)

    async def get(self, doc_id: str) -> ImageDocument | None:
        self._check()
        return self.docs.get(doc_id)

    async def existing_ids(self, ids: Sequence[str]) -> set[str]:
        return {i for i in ids if i in self.docs}

    async def count(self, filters: Filters | None = None) -> int:
        self._check()
        return len(self.docs)

    async def search(self, plan: SearchPlan) -> SearchResult:
        self._check()
        self.plans.append(plan)
        docs = [d for d in self.docs.values() if d.id not in plan.exclude_ids]
        hits = [Hit(id=d.id, score=1.0 / (1 + i), scores=LegScores(lexical=None, vector=0.5),
                    document=d) for i, d in enumerate(docs)]
        return SearchResult(hits=hits[plan.offset:plan.offset + plan.limit], total=len(docs))

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


class FakeEmbedder:
    def __init__(self, *, down: bool = False) -> None:
        self.down = down
        self.texts: list[str] = []

    @property
    def model_id(self) -> str:
        return "fake-clip"

    @property
    def dim(self) -> int:
        return DIM

    async def embed_texts(self, texts: Sequence[str]) -> Embeddings:
        if self.down:
            raise BackendUnavailable("encoder is down (test)", reason="encoder_unavailable")
        self.texts.extend(texts)
        return Embeddings("fake-clip", np.asarray([unit(len(t)) for t in texts], np.float32))

    async def embed_images(self, images: Sequence[bytes]) -> Embeddings:
        return await self.embed_texts([str(len(b)) for b in images])

    async def ping(self) -> None:
        if self.down:
            raise BackendUnavailable("encoder is down (test)", reason="encoder_unavailable")

    async def close(self) -> None:
        return None
