"""Feeder throughput, measured in one run against plain baselines.

1. documents/s from precomputed embeddings into the embedded index (``feed --from-embeddings``)
   vs. plain ``index.upsert`` of ready-made documents in the same batch size, and plain
   ``index.upsert_batch`` of ready-made ``DocumentBatch``es (the floor the engine sets for the
   feeder's write path). Target: >= 10k documents/s.
2. end-to-end images/s with the tiny CLIP (read, decode, preprocess, encode, shard, upsert) for
   each worker count vs. the bare model loop (decode + preprocess + embed, nothing else).

    .venv/bin/python bench/feed.py [--docs 20000] [--images 200] [--workers 0,1,2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
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


async def bench_images(tmp: Path, n_images: int, workers: list[int]) -> None:
    from clipsearch.datasets.sample import make_sample_dataset
    from clipsearch.models.model import ClipEncoder
    from clipsearch.models.tiny import build_tiny_clip
    from feeder.prepare import prepare_pixels

    model_dir = build_tiny_clip(tmp / "model")
    ds = make_sample_dataset(tmp / "images", n_per_category=max(1, n_images // 5),
                             image_size=256)
    clip = ClipEncoder.load(str(model_dir), threads=1)
    settings = Settings(data_dir=tmp / "e2e", model=str(model_dir))
    files = [str(ds.root / r.file) for r in ds.records]
    t0 = time.perf_counter()
    for i in range(0, len(files), 32):
        pix = [prepare_pixels(f, spec=clip.preprocess_spec,
                              max_bytes=settings.max_image_bytes,
                              max_pixels=settings.max_image_pixels).payload
               for f in files[i:i + 32]]
        clip.embed_pixels(np.stack(pix))  # type: ignore[arg-type]
    bare = len(files) / (time.perf_counter() - t0)
    print(f"[images] {len(files)} images of 256 px, tiny CLIP, batch 32")
    print(f"  bare loop (decode+preprocess+embed)   : {bare:10.1f} images/s")
    for w in workers:
        shutil.rmtree(settings.data_dir, ignore_errors=True)
        req = FeedRequest(source=ds.manifest, progress=False, workers=w)
        t0 = time.perf_counter()
        report = await run_feed_async(settings, req, encoder=clip)
        seconds = time.perf_counter() - t0
        assert report.indexed == len(files), report.summary()
        print(f"  feed, workers={w}                       : {len(files) / seconds:10.1f} "
              f"images/s (ratio to bare {len(files) / seconds / bare:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=2_000)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--workers", default="0,1,2")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-feed-") as tmp:
        asyncio.run(bench_docs(Path(tmp), args.docs, args.batch))
        asyncio.run(bench_images(Path(tmp), args.images,
                                 [int(w) for w in args.workers.split(",")]))


if __name__ == "__main__":
    main()
