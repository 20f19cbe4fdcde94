"""``clipsearch feed`` and ``clipsearch export``, and the programmatic entry ``run_feed``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from clipsearch.datasets.readers import SourceFormat
from clipsearch.errors import InvalidRequest
from clipsearch.index import open_index
from clipsearch.index.base import SearchIndex
from clipsearch.index.writer_lock import index_dir_of, writer_lock
from clipsearch.settings import Settings
from feeder.encoders import FeedEncoder, adapt, open_encoder
from feeder.export import ExportRequest, write_vespa_feed
from feeder.pipeline import feed
from feeder.report import FeedReport
from feeder.request import FeedRequest

__all__ = ["FeedReport", "FeedRequest", "register", "run_feed", "run_feed_async"]


async def run_feed_async(settings: Settings, request: FeedRequest, *,
                         index: SearchIndex | None = None,
                         encoder: object | None = None) -> FeedReport:
    """Feed ``request`` into ``index`` (default: ``open_index(settings)``).

    ``encoder``: a ``ClipEncoder``-like model (``embed_pixels``) or any ``Embedder``; default:
    the encoder service at ``settings.encoder_url``, else ``settings.model`` loaded in-process.
    Objects passed in are not closed; the ones opened here are.
    """
    if request.source is not None and not request.source.exists():  # before loading a model
        raise InvalidRequest(f"dataset source {request.source} does not exist",
                             reason="bad_source")
    own_index = index is None
    idx = open_index(settings) if index is None else index
    enc: FeedEncoder | None = None
    own_encoder = False
    lock_dir = index_dir_of(idx)
    try:
        with (nullcontext() if lock_dir is None
              else writer_lock(lock_dir, "clipsearch feed", wait=request.wait)):
            await idx.ensure_ready()
            if request.from_embeddings is None:
                if encoder is None:
                    enc, own_encoder = await open_encoder(settings, request), True
                else:
                    enc = adapt(encoder, settings, request)
            return await feed(settings, request, idx, enc)
    finally:
        if own_encoder and enc is not None:
            await enc.close()
        if own_index:
            await idx.close()


def run_feed(settings: Settings, request: FeedRequest, *, index: SearchIndex | None = None,
             encoder: object | None = None) -> FeedReport:
    """Synchronous ``run_feed_async`` (for the CLI, ``make demo`` and scripts)."""
    return asyncio.run(run_feed_async(settings, request, index=index, encoder=encoder))


# --- CLI ----------------------------------------------------------------------------------------
def _feed_cmd(args: argparse.Namespace) -> int:
    options: dict[str, Any] = {k: v for k, v in vars(args).items()
                               if k in FeedRequest.model_fields and v is not None}
    if args.no_progress:
        options["progress"] = False
    if args.prune and options.get("shard"):
        raise InvalidRequest("--prune needs the whole source: run it without --shard",
                             reason="bad_options")
    request = FeedRequest(**options)
    settings = Settings() if args.device is None else Settings(device=args.device)
    try:
        report = run_feed(settings, request)
    except (FileNotFoundError, ValueError) as exc:  # the source itself is unusable
        raise InvalidRequest(str(exc), reason="bad_source") from exc
    print(report.summary())
    if report.aborted:
        return 1
    if args.prune:
        from feeder.prune import run_prune

        print(run_prune(Settings(), request, force=args.force).summary())
    return 0 if report.consistent else 1


def _export_cmd(args: argparse.Namespace) -> int:
    settings = Settings()
    req = ExportRequest(embeddings=args.embeddings or settings.data_dir / "embeddings",
                        namespace=args.namespace or settings.vespa_namespace,
                        model_id=args.model_id, dataset=args.dataset, split=args.split,
                        limit=args.limit)
    if args.out == "-":
        written, skipped = write_vespa_feed(req, sys.stdout)
    else:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            written, skipped = write_vespa_feed(req, fh)
        tmp.replace(out)
    print(f"exported {written} documents to {args.out}"
          + (f" ({skipped} with a broken embedding skipped)" if skipped else ""),
          file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "feed", help="encode a dataset and write it to the index (resumable)",
        description="Read a dataset, encode its images with CLIP (reusing embeddings already "
        "in the shard folder), and upsert one document per image. Rerun after any "
        "interruption: it continues where it stopped. Options not given come from "
        "CLIPSEARCH_FEED_* variables.")
    p.add_argument("source", nargs="?", type=Path,
                   help="dataset folder, generic manifest (.jsonl/.csv) or Karpathy JSON")
    p.add_argument("--format", choices=[f.value for f in SourceFormat], default=None)
    p.add_argument("--dataset", default=None, help="dataset label (default: from the source)")
    p.add_argument("--images-dir", dest="images_dir", type=Path, default=None,
                   help="RSICD/UCM/Sydney: the image folder")
    p.add_argument("--classes-dir", dest="classes_dir", type=Path, default=None,
                   help="RSICD: the txtclasses_rsicd folder")
    p.add_argument("--split", default=None, help="feed only this split (train, val, test)")
    p.add_argument("--limit", type=int, default=None, help="feed only the first N rows")
    p.add_argument("--from-embeddings", dest="from_embeddings", type=Path, default=None,
                   metavar="DIR", help="feed precomputed shards from DIR (no model needed)")
    p.add_argument("--model-id", dest="model_id", default=None,
                   help="with --from-embeddings: which model's embeddings")
    p.add_argument("--embeddings-dir", dest="embeddings_dir", type=Path, default=None,
                   help="where shards are written (default: $CLIPSEARCH_DATA_DIR/embeddings)")
    p.add_argument("--reencode", action="store_true", default=None,
                   help="encode every image again (e.g. after changing the model)")
    p.add_argument("--dead-letter", dest="dead_letter", type=Path, default=None,
                   help="dead-letter JSONL (default: $CLIPSEARCH_DATA_DIR/feeder/...)")
    p.add_argument("--workers", type=int, default=None,
                   help="0 (default): the model in this process with every core as threads; "
                   "N: N encoder processes of one thread each; with --device cuda: decoding "
                   "processes (0: the number of cores)")
    p.add_argument("--device", default=None,
                   help="cpu or cuda[:N] (default: CLIPSEARCH_DEVICE); on cuda the runtime "
                   "'auto' measures fp32, fp16 and bf16")
    p.add_argument("--batch-size", dest="batch_size", type=int, default=None)
    p.add_argument("--feed-batch-size", dest="feed_batch_size", type=int, default=None)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="feed only shard K of N (0 <= K < N; sha1 of the document id): N "
                   "feeders on N machines split one collection without overlap")
    p.add_argument("--wait", action="store_true", default=None,
                   help="if another writer holds the index, wait for it instead of stopping")
    p.add_argument("--prune", action="store_true",
                   help="after feeding, remove this dataset's documents the source no longer "
                   "lists (prints the count; refuses more than half unless --force)")
    p.add_argument("--force", action="store_true", help="with --prune: allow removing more "
                   "than half of the dataset's documents")
    p.set_defaults(func=_feed_cmd)

    p = subparsers.add_parser("export", help="write embedding shards as Vespa feed JSONL",
                              description="Write one Vespa put per stored document, for "
                              "`vespa feed FILE`.")
    p.add_argument("--embeddings", type=Path, default=None,
                   help="shard folder (default: $CLIPSEARCH_DATA_DIR/embeddings)")
    p.add_argument("--out", default="-", help="output file ('-': stdout)")
    p.add_argument("--namespace", default=None, help="default: CLIPSEARCH_VESPA_NAMESPACE")
    p.add_argument("--model-id", dest="model_id", default=None)
    p.add_argument("--dataset", default=None)
    p.add_argument("--split", default=None)
    p.add_argument("--limit", type=int, default=None)
    p.set_defaults(func=_export_cmd)
