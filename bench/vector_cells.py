"""Closeness parity of cheaper vector cells against float (issue 17 item 9), in numpy:
recall@10 against the exact float top 10 (cosine of L2-normalised vectors, what
``prenormalized-angular`` ranks by) for

* ``bfloat16``: every cell rounded to bfloat16 (round to nearest even, as a float32 -> bfloat16
  conversion does), exact search over the rounded vectors;
* ``binarized``: what ``CLIPSEARCH_VESPA_VECTOR_INDEX=binarized`` generates
  (``clipsearch.index.vespa.binarized``): ``binarize | pack_bits`` (1 bit per dimension,
  > 0 -> 1, the same ``pack_bits`` function the client uses for ``query(q_bits)``), the top
  ``targetHits`` by hamming distance, then the full float vectors re-rank them (the second
  phase); "bits only" is the hamming top 10 without the re-rank;

and the memory per document of each (vector cells + HNSW links, from the capacity planner's
formulas; the binarised profile pages the float vectors out to disk).

Data sets: isotropic Gaussian vectors (the hard case for binarization), clustered vectors
(50 centroids + noise), and, with ``--demo-model``, real CLIP embeddings: the demo CLIP
(``clipsearch demo-model --out DIR``, or ``data/demo/model`` after ``make demo``) on freshly
drawn demo scenes (``clipsearch.datasets.scenes``), queried with captions through the text
tower (text -> image search, the product's case). Exact search, so the figures are the cell
types' loss alone, not HNSW's.

    .venv/bin/python bench/vector_cells.py --docs 50000 --queries 200 \\
        --demo-model data/demo/model --demo-per-category 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from clipsearch.index.vespa.binarized import bits_dim, pack_bits  # noqa: E402
from clipsearch.index.vespa.capacity import hnsw_bytes  # noqa: E402
from clipsearch.machine import cpu_flags  # noqa: E402

MAX_LINKS = 16


def normalise(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def to_bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 (round to nearest even) -> float32."""
    bits = x.astype(np.float32).view(np.uint32)
    rounded = bits + 0x7FFF + ((bits >> 16) & 1)
    return (rounded & 0xFFFF0000).view(np.float32)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    part = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth,
                                                                          strict=True)]))


_POPCOUNT = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1)


def packed(vectors: np.ndarray) -> np.ndarray:
    """The ``_bits`` field of each row (int8 cells, viewed as bytes for the popcount)."""
    return np.array([pack_bits(v) for v in vectors], dtype=np.int8).view(np.uint8)


def hamming_top(doc_bits: np.ndarray, q_bits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest hamming distances, nearest first."""
    out = []
    for q in q_bits:
        dist = _POPCOUNT[np.bitwise_xor(doc_bits, q)].sum(axis=1)
        part = np.argpartition(dist, k)[:k]
        out.append(part[np.argsort(dist[part], kind="stable")])
    return np.array(out)


def clustered(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    centroids = rng.normal(size=(50, dim))
    return normalise(centroids[rng.integers(0, 50, n)] + 0.6 * rng.normal(size=(n, dim)))


def near_queries(docs: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    dim = docs.shape[1]
    return normalise(docs[rng.integers(0, len(docs), count)]
                     + 0.3 * rng.normal(size=(count, dim)) / dim ** 0.5)


def demo_embeddings(model: str, per_category: int, queries: int,
                    rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(image embeddings of freshly drawn demo scenes, text embeddings of their captions)."""
    from clipsearch.datasets.scenes import make_demo_dataset
    from clipsearch.models.model import ClipEncoder

    encoder = ClipEncoder.load(model, threads=1, announce=False)
    with tempfile.TemporaryDirectory() as tmp:
        ds = make_demo_dataset(Path(tmp), n_per_category=per_category, seed=1)
        images, captions = [], []
        for r in ds.records:
            images.append((ds.root / r.file).read_bytes())
            captions.append(r.captions[int(rng.integers(0, len(r.captions)))])
    vectors = [encoder.embed_images(images[i:i + 256], max_bytes=1 << 24,
                                    max_pixels=1 << 24).vectors
               for i in range(0, len(images), 256)]
    picked = rng.choice(len(captions), size=min(queries, len(captions)), replace=False)
    text = encoder.embed_texts([captions[i] for i in picked]).vectors
    return np.concatenate(vectors), text


def evaluate(name: str, docs: np.ndarray, queries: np.ndarray, depths: list[int]) -> None:
    start = time.perf_counter()
    truth = top_k(queries @ docs.T, 10)
    t_exact = time.perf_counter() - start
    bf = recall(top_k(queries @ to_bfloat16(docs).T, 10), truth)
    doc_bits, q_bits = packed(docs), packed(queries)
    bits_only = recall(hamming_top(doc_bits, q_bits, 10), truth)
    row = [f"{name:22s}", f"{len(docs):7d}", "1.000", f"{bf:.3f}", f"{bits_only:.3f}"]
    for k in depths:
        if k >= len(docs):
            row.append("  -  ")
            continue
        cand = hamming_top(doc_bits, q_bits, k)
        rescored = np.einsum("qd,qkd->qk", queries, docs[cand])
        found = np.take_along_axis(cand, top_k(rescored, 10), axis=1)
        row.append(f"{recall(found, truth):.3f}")
    print(" | ".join(row) + f"   (exact float search {t_exact:.2f} s)")


def memory_table(dim: int) -> None:
    links = hnsw_bytes(MAX_LINKS)
    print(f"\nmemory per document, {dim}-d (HNSW max-links-per-node {MAX_LINKS}: "
          f"{links:.0f} B of links per HNSW field, capacity.py formula):")
    print("index                      | in memory (cells + HNSW) | paged to disk")
    print(f"float                      | {4 * dim + links:6.0f} B                 | -")
    print(f"bfloat16                   | {2 * dim + links:6.0f} B                 | -")
    print(f"binarized (float, paged)   | {bits_dim(dim) + links:6.0f} B                 | "
          f"{4 * dim} B")
    print(f"binarized (bfloat16, paged)| {bits_dim(dim) + links:6.0f} B                 | "
          f"{2 * dim} B")
    print(f"binarized, not paged       | {bits_dim(dim) + 4 * dim + links:6.0f} B"
          "                 | -")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--target-hits", type=int, nargs="+", default=[100, 200, 400])
    ap.add_argument("--demo-model", default=None,
                    help="a demo CLIP folder: adds real embeddings (demo scenes, caption "
                         "queries)")
    ap.add_argument("--demo-per-category", type=int, default=1000,
                    help="demo scenes per category (8 categories)")
    args = ap.parse_args()
    rng = np.random.default_rng(9)
    print(f"recall@10 against exact float; {args.queries} queries; cpu flags: {cpu_flags()}; "
          f"cores: {os.cpu_count()}")
    print(" | ".join(["data set".ljust(22), "   docs", "float", "bf16 ", "bits only"]
                     + [f"bits top {k} + float re-rank" for k in args.target_hits]))
    gauss = normalise(rng.normal(size=(args.docs, args.dim)))
    evaluate("gaussian", gauss, normalise(rng.normal(size=(args.queries, args.dim))),
             args.target_hits)
    cl = clustered(args.docs, args.dim, rng)
    evaluate("clustered", cl, near_queries(cl, args.queries, rng), args.target_hits)
    if args.demo_model:
        start = time.perf_counter()
        docs, text = demo_embeddings(args.demo_model, args.demo_per_category, args.queries,
                                     rng)
        print(f"(demo CLIP: {len(docs)} scenes and {len(text)} captions encoded in "
              f"{time.perf_counter() - start:.0f} s)")
        evaluate("demo CLIP, text->image", docs, text, args.target_hits)
    memory_table(args.dim)


if __name__ == "__main__":
    main()
