"""A fresh embedded index of the evaluated split, with one caption per image held out.

Documents are written through the same ``SearchIndex`` interface the feeder uses (the
embedding comes from the evaluated model), so the evaluation searches the engine users search;
only the held-out caption is missing, so caption queries cannot match their own text.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import ValidationError

from clipsearch.documents import ImageDocument
from clipsearch.evaluation.encoding import ImageVectors
from clipsearch.evaluation.queries import held_out_caption
from clipsearch.index import open_index
from clipsearch.index.base import SearchIndex
from clipsearch.settings import Backend, Settings


def eval_index_settings(base: Settings, work_dir: Path, model_id: str, dim: int) -> Settings:
    return base.model_copy(update={"backend": Backend.embedded, "data_dir": work_dir,
                                   "table": "eval", "model": model_id, "embedding_dim": dim})


async def build_eval_index(settings: Settings, images: ImageVectors, model_id: str, *,
                           hold_out: bool = True, batch: int = 500) -> tuple[SearchIndex, int]:
    """Write every embedded image; returns the index and how many documents were refused."""
    index = open_index(settings)
    await index.ensure_ready()
    docs: list[ImageDocument] = []
    refused = 0
    for it, vec in zip(images.items, images.vectors, strict=True):
        captions = list(it.captions)
        if hold_out and held_out_caption(it) is not None:
            captions = captions[:-1]
        try:
            docs.append(ImageDocument(
                id=it.doc_id, captions=captions, dataset=it.dataset, category=it.category,
                split=it.split, image_uri=str(it.path), model_id=model_id,
                embedding=[float(x) for x in vec]))
        except ValidationError:
            refused += 1
    for start in range(0, len(docs), batch):
        await index.upsert(docs[start:start + batch])
    await index.flush()
    return index, refused
