"""RSS of writing many small batches into the embedded index, with LanceDB's metadata cache
capped (``CLIPSEARCH_LANCEDB_METADATA_CACHE_MB``) and effectively uncapped, each in a fresh
process, same documents. Every write is a table version whose manifest lists every fragment
so far; LanceDB caches the manifests it reads, so uncapped the cache grows with the square of
the writes of one long feed.

    .venv/bin/python bench/lance_metadata_cache.py --docs 60000 --batch 256 --caps 65536 64
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_mib() -> float:
    from clipsearch.machine import process_kib

    return (process_kib(os.getpid()) or 0) / 1024


async def write(path: Path, docs: int, batch: int, cap_mb: int, dim: int) -> None:
    import numpy as np

    from clipsearch.documents import DocumentBatch, DocumentFields
    from clipsearch.embeddings import l2_normalize
    from clipsearch.index.embedded import EmbeddedIndex

    index = EmbeddedIndex(path, dim=dim, metadata_cache_mb=cap_mb)
    rng = np.random.default_rng(0)
    marks = {docs // 4, docs // 2, 3 * docs // 4}
    start = None
    for lo in range(0, docs, batch):
        n = min(batch, docs - lo)
        fields = [DocumentFields(id=f"d{lo + i:07d}", dataset="bench", captions=["a tile"],
                                 image_uri=f"/img/{lo + i}.jpg") for i in range(n)]
        vectors = l2_normalize(rng.normal(size=(n, dim)).astype(np.float32))
        await index.upsert_batch(DocumentBatch(fields, vectors))
        if start is None:
            start = rss_mib()
        if any(lo < m <= lo + n for m in marks):
            print(f"  cap {cap_mb} MiB: {lo + n} documents, RSS {rss_mib():.0f} MiB", flush=True)
    end = rss_mib()
    await index.close()
    assert start is not None
    print(f"cap {cap_mb} MiB: RSS after the first write {start:.0f} MiB, after {docs} "
          f"documents {end:.0f} MiB: {(end - start) * 1024 / docs:.2f} KiB per document",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=60_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--caps", type=int, nargs="+", default=[65_536, 64])
    ap.add_argument("--one", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(write(Path(tmp), args.docs, args.batch, args.one, args.dim))
        return
    print(f"{args.docs} documents, {args.batch} per write, {args.dim}-d; load average "
          f"{os.getloadavg()[0]:.1f}")
    for cap in args.caps:  # a fresh process each: the allocator's state is not shared
        subprocess.run([sys.executable, __file__, "--docs", str(args.docs), "--batch",
                        str(args.batch), "--dim", str(args.dim), "--one", str(cap)],
                       check=True)


if __name__ == "__main__":
    main()
