"""Feeder throughput, measured in one run against plain baselines.

1. documents/s from precomputed embeddings into the embedded index (``feed --from-embeddings``)
   vs. plain ``index.upsert`` of ready-made documents in the same batch size, and plain
   ``index.upsert_batch`` of ready-made ``DocumentBatch``es (the floor the engine sets for the
   feeder's write path). Target: >= 10k documents/s.
2. the realistic case (bench/feed_images.py): a ViT-B/32-shaped random CLIP, 224 px JPEG tiles
   (RSICD-like) and 500-1000 px JPEG figures (ImageCLEF-like); images/s end to end for the
   feeder (worker processes, and one process with threads) vs. the bare best-runtime loop
   (decode + preprocess + embed, both ways) and plain eager fp32, in the same run, with the
   projected time for 200k images and the CPU flags.
3. ``--long N``: one feed of N images, RSS (feeder + workers) at its start, at checkpoints and
   at its end, and the growth per 1,000 images after warm-up (``--trace-after``: tracemalloc).

    .venv/bin/python bench/feed.py --docs 0 --images 200            # quick
    .venv/bin/python bench/feed.py --docs 0 --images 1000 --rounds 2
    .venv/bin/python bench/feed.py --long 20000 --sets tiles --model tiny
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from clipsearch.documents import DocumentBatch, DocumentFields, ImageDocument
from clipsearch.embeddings import l2_normalize
from clipsearch.index import open_index
from clipsearch.settings import Settings
from feeder.commands import FeedRequest, run_feed_async
from feeder.store import EmbeddingStore

DIM = 512


def make_shards(root: Path, n: int, chunk: int = 4096) -> tuple[list[ImageDocument],
                                                                DocumentBatch]:
    """Shards of ``n`` synthetic documents under ``root``; the same documents as objects and
    as one batch (the inputs of the two plain baselines)."""
    rng = np.random.default_rng(0)
    store = EmbeddingStore(root)
    docs: list[ImageDocument] = []
    batches: list[DocumentBatch] = []
    cats = ["airport", "beach", "forest", "harbor", "river"]
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        vecs = l2_normalize(rng.normal(size=(size, DIM)).astype(np.float32))
        fields = [DocumentFields(id=f"bench:{i}", dataset="bench", category=cats[i % 5],
                                 split="train", captions=[f"an aerial photo of a {cats[i % 5]}",
                                                          f"image number {i}"],
                                 image_uri=f"/data/{i}.jpg", model_id="bench-model")
                  for i in range(start, start + size)]
        store.write(fields, ["h"] * size, vecs)
        docs += [ImageDocument.model_construct(**dict(f), embedding=v.tolist())
                 for f, v in zip(fields, vecs, strict=True)]
        batches.append(DocumentBatch(fields, vecs))
    return docs, DocumentBatch.concat(batches)


async def plain_upsert(settings: Settings, docs: list[ImageDocument] | DocumentBatch,
                       batch: int) -> tuple[float, float]:
    """Seconds and CPU-seconds to write ``docs`` in slices of ``batch`` and flush: with
    ``upsert`` for a list of documents, ``upsert_batch`` for a ``DocumentBatch``."""
    index = open_index(settings)
    await index.ensure_ready()
    c0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(0, len(docs), batch):
        if isinstance(docs, DocumentBatch):
            await index.upsert_batch(docs[i:i + batch])
        else:
            await index.upsert(docs[i:i + batch])
    await index.flush()  # the feed flushes too (optimize + FTS): same work on both sides
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    assert await index.count() == len(docs)
    await index.close()
    return seconds, cpu


async def bench_docs(tmp: Path, n: int, batch: int) -> None:
    docs, ready = make_shards(tmp / "shards", n)
    plain_s, plain_cpu = await plain_upsert(
        Settings(data_dir=tmp / "plain", embedding_dim=DIM), docs, batch)
    batch_s, batch_cpu = await plain_upsert(
        Settings(data_dir=tmp / "plain-batch", embedding_dim=DIM), ready, batch)
    settings = Settings(data_dir=tmp / "feed", embedding_dim=DIM)
    req = FeedRequest(from_embeddings=tmp / "shards", progress=False, feed_batch_size=batch)
    c0 = time.process_time()
    report = await run_feed_async(settings, req)
    feed_cpu = time.process_time() - c0  # includes opening the index (small)
    feed_s = report.seconds  # read shards .. last write acknowledged and flushed
    assert report.indexed == n, report.summary()
    print(f"[docs] {n} documents, upsert batch {batch}")
    print(f"  plain upsert+flush of ready documents : {n / plain_s:10.0f} docs/s wall, "
          f"{n / plain_cpu:10.0f} docs per CPU-second")
    print(f"  plain upsert_batch+flush of a batch   : {n / batch_s:10.0f} docs/s wall, "
          f"{n / batch_cpu:10.0f} docs per CPU-second")
    print(f"  feed --from-embeddings (shards->index): {n / feed_s:10.0f} docs/s wall, "
          f"{n / feed_cpu:10.0f} docs per CPU-second")
    print(f"  ratio feed/plain upsert: wall {plain_s / feed_s:.2f}, CPU {plain_cpu / feed_cpu:.2f}"
          f"; feed/plain upsert_batch: wall {batch_s / feed_s:.2f}, "
          f"CPU {batch_cpu / feed_cpu:.2f} (target: >= 10000 docs/s wall)")


from bench.feed_images import bench_images, bench_long  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=20_000, help="0: skip the docs bench")
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--images", type=int, default=200, help="images per set (0: skip)")
    parser.add_argument("--sets", default="tiles,figures")
    parser.add_argument("--workers", default=f"{os.cpu_count() or 1},0",
                        help="feeder worker counts to compare (0: one process, N threads)")
    parser.add_argument("--eager-images", type=int, default=48,
                        help="images for the (slow) plain eager fp32 baseline")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (best kept)")
    parser.add_argument("--long", type=int, default=0,
                        help="instead: one feed of N images, RSS at start, checkpoints, end "
                        "and the growth per 1,000 images after warm-up")
    parser.add_argument("--every-s", type=float, default=15.0,
                        help="with --long: seconds between RSS checkpoints")
    parser.add_argument("--warmup", type=int, default=0,
                        help="with --long: images before the growth is fitted "
                        "(0: max(2000, N/10))")
    parser.add_argument("--index", choices=("embedded", "null"), default="embedded",
                        help="with --long: null = an index that keeps nothing (the feeder's "
                        "and the encoder's memory without the index engine's)")
    parser.add_argument("--trace-after", type=int, default=0,
                        help="with --long: tracemalloc growth from this many images to the end")
    parser.add_argument("--auto-int8", action="store_true",
                        help="CLIPSEARCH_AUTO_INT8: auto may pick onnx-int8 (cos >= 0.999)")
    parser.add_argument("--model", choices=("vit-b32", "tiny", "none"), default="vit-b32",
                        help="with --long: tiny = the tests' CLIP (the pipeline's memory); "
                        "none = no model, no decoding (the feeder's and the index's memory)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="keep the model and images here between runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-feed-") as tmp:
        if args.long:
            bench_long(Path(tmp), args.long, args.sets.split(",")[0],
                       int(args.workers.split(",")[0]), work_dir=args.work_dir,
                       model_kind=args.model, every_s=args.every_s, warmup=args.warmup,
                       trace_after=args.trace_after, null_index=args.index == "null")
            return
        if args.docs:
            asyncio.run(bench_docs(Path(tmp), args.docs, args.batch))
        if args.images:
            asyncio.run(bench_images(Path(tmp), args.images,
                                     [int(w) for w in args.workers.split(",")],
                                     sets=tuple(args.sets.split(",")),
                                     eager_images=args.eager_images, work_dir=args.work_dir,
                                     rounds=args.rounds, auto_int8=args.auto_int8))


if __name__ == "__main__":
    main()
