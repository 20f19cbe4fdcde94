"""``clipsearch reindex --model NEW``: build a new index generation beside the live one.

The documents' stored fields and image locations are read from the source generation (the
active one unless ``--from``) and written as a generic JSONL manifest under
``<data_dir>/reindex/``; the feeder then encodes that manifest with the new model into the
new generation's own table (own shard folder ``<data_dir>/embeddings/<generation>``, own
ledger, the usual dead letters). Searches keep being served from the active generation.
Rerunning the same command resumes a generation still ``building`` for the same space:
shards already encoded are reused, documents already written are skipped. When the feed
accounts for every document, the generation is marked ``complete``; ``clipsearch activate``
then switches to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, Field

from clipsearch.documents import DocumentFields
from clipsearch.errors import InvalidRequest
from clipsearch.index import open_index
from clipsearch.index.base import GenerationalIndex, SearchIndex
from clipsearch.index.generations import Generation, GenerationState
from clipsearch.models.identity import identify, space_of
from clipsearch.settings import Settings
from feeder.commands import run_feed_async
from feeder.report import FeedReport
from feeder.request import FeedRequest


class LoadedModel(Protocol):
    """A model already loaded for ``--model`` (``ClipEncoder``, an ``Embedder``)."""

    @property
    def model_id(self) -> str: ...

    @property
    def dim(self) -> int: ...


class ReindexRequest(BaseModel):
    model: str = Field(min_length=1, description="the new model (hub id or folder)")
    name: str | None = Field(None, description="name of the new generation (default: gN)")
    from_generation: str | None = Field(None, description="source (default: the active one)")
    workers: int | None = Field(None, ge=0, le=64)
    batch_size: int | None = Field(None, ge=1, le=4096)
    progress: bool = True
    wait: bool = False


class ReindexReport(BaseModel):
    generation: Generation
    source_generation: str
    documents: int
    feed: FeedReport
    resumed: bool

    def summary(self) -> str:
        state = self.generation.state.value
        lines = [f"generation {self.generation.name} ({state}) from "
                 f"{self.source_generation}: {self.documents} documents"
                 + (" (resumed)" if self.resumed else ""), self.feed.summary()]
        if self.generation.state == GenerationState.complete:
            lines.append(f"next: clipsearch eval --generations {self.source_generation} "
                         f"{self.generation.name} ...; clipsearch activate "
                         f"{self.generation.name}")
        return "\n".join(lines)


def manifest_row(f: DocumentFields) -> dict[str, object]:
    """A stored document as a generic-manifest row that maps back to the same id."""
    source_id = f.id.split(":", 1)[1] if ":" in f.id else f.id
    return {"id": source_id, "file": f.image_uri, "captions": f.captions,
            "dataset": f.dataset, "category": f.category, "split": f.split}


def write_manifest(path: Path, docs: list[DocumentFields]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for f in sorted(docs, key=lambda d: d.id):
            fh.write(json.dumps(manifest_row(f), ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


async def _target(index: GenerationalIndex, req: ReindexRequest, space: str | None,
                  dim: int, model_id: str, source: str) -> tuple[Generation, bool]:
    """The generation to build: a named or resumable building one, else a new one."""
    gens = await index.generations()
    if req.name is not None and any(g.name == req.name for g in gens):
        return await index.generation(req.name), True
    if req.name is None:
        for g in gens:
            if (g.state == GenerationState.building and g.source == source and space
                    and g.space == space and g.dim == dim):
                return g, True
    gen = await index.create_generation(model_id=model_id, space=space, dim=dim, name=req.name,
                                        source=source)
    return gen, False


async def run_reindex_async(settings: Settings, req: ReindexRequest, *,
                            index: SearchIndex | None = None,
                            encoder: LoadedModel | None = None) -> ReindexReport:
    """``encoder``: a loaded model for ``req.model`` (tests); default: the feeder opens it."""
    own = index is None
    idx = open_index(settings) if index is None else index
    try:
        if not isinstance(idx, GenerationalIndex):
            raise InvalidRequest("this index engine has no generations (see README "
                                 "'Changing the model')", reason="no_generations")
        await idx.ensure_ready()
        source = req.from_generation or (await idx.active_generation()).name
        await idx.generation(source)  # UnknownGeneration early
        if encoder is not None:
            space, dim, model_id = space_of(encoder), encoder.dim, encoder.model_id
        else:
            ident, dim, model_id = await asyncio.to_thread(
                identify, req.model, revision=settings.model_revision,
                cache_dir=settings.data_dir / "cache" / "fingerprints")
            space = ident.space
        gen, resumed = await _target(idx, req, space, dim, model_id, source)
        docs = await idx.scan_fields(source)
        if not docs:
            raise InvalidRequest(f"generation {source!r} holds no documents to re-index",
                                 reason="empty_generation")
        await idx.set_expected(gen.name, len(docs))
        await idx.claim_space(gen.name, model_id=model_id, space=space, dim=dim)
        manifest = write_manifest(settings.data_dir / "reindex" / f"{gen.name}.jsonl", docs)
        options: dict[str, object] = {"source": manifest, "progress": req.progress,
                                      "wait": req.wait,
                                      "embeddings_dir": settings.data_dir / "embeddings"
                                      / gen.name}
        if req.workers is not None:
            options["workers"] = req.workers
        if req.batch_size is not None:
            options["batch_size"] = req.batch_size
        gen_settings = settings.model_copy(update={"table": gen.table, "model": req.model,
                                                   "embedding_dim": dim})
        feed_request = FeedRequest(**options)  # type: ignore[arg-type]  # + CLIPSEARCH_FEED_*
        report = await run_feed_async(gen_settings, feed_request,
                                      index=idx.at_generation(gen.name), encoder=encoder)
        if report.consistent and not report.aborted:
            await idx.complete_generation(gen.name)
        final = await idx.generation(gen.name)
        return ReindexReport(generation=final, source_generation=source,
                             documents=len(docs), feed=report, resumed=resumed)
    finally:
        if own:
            await idx.close()


def _reindex_cmd(args: argparse.Namespace) -> int:
    req = ReindexRequest(model=args.model, name=args.name, from_generation=args.from_generation,
                         workers=args.workers, batch_size=args.batch_size,
                         progress=not args.no_progress, wait=args.wait)
    report = asyncio.run(run_reindex_async(Settings(), req))
    print(report.summary())
    return 0 if report.generation.state == GenerationState.complete else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "reindex", help="build a new index generation with another model (beside the live one)",
        description="Encode the stored documents' images with MODEL into a new generation. "
        "Searches keep using the active generation. Rerun to resume. Then compare with "
        "`clipsearch eval --generations`, switch with `clipsearch activate`.")
    p.add_argument("--model", required=True, help="hub id or folder of the new model")
    p.add_argument("--name", default=None, help="generation name (default: next gN)")
    p.add_argument("--from", dest="from_generation", default=None,
                   help="source generation (default: the active one)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    p.add_argument("--wait", action="store_true", help="wait for another writer to finish")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_reindex_cmd)
