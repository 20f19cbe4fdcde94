"""Closeness parity of cheaper vector cells against float (issue 17 item 9), in numpy:
recall@10 against the exact float top 10 (cosine of L2-normalised vectors, what
``prenormalized-angular`` ranks by) for

* ``bfloat16``: every cell rounded to bfloat16 (round to nearest even, as a float32 -> bfloat16
  conversion does), exact search over the rounded vectors;
* ``binary`` + re-rank: Vespa's binarization pattern (``binarize | pack_bits``: 1 bit per
  dimension, > 0 -> 1), the top ``targetHits`` by hamming distance, then the full float
  vectors re-rank them (what a second phase over the float attribute does).

Two data sets: isotropic Gaussian vectors (the hard case for binarization) and clustered
vectors (50 centroids + noise, closer to a CLIP embedding space). Exact search, so the
figures are the cell types' loss alone, not HNSW's.

    .venv/bin/python bench/vector_cells.py --docs 50000 --queries 200
"""

from __future__ import annotations

import argparse
import time

import numpy as np


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


def hamming_top(doc_bits: np.ndarray, q_bits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k smallest hamming distances (bits packed in uint8)."""
    popcount = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).sum(1)
    out = []
    for q in q_bits:
        dist = popcount[np.bitwise_xor(doc_bits, q)].sum(axis=1)
        out.append(np.argpartition(dist, k)[:k])
    return np.array(out)


def data(kind: str, n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "gaussian":
        return normalise(rng.normal(size=(n, dim)))
    centroids = rng.normal(size=(50, dim))
    return normalise(centroids[rng.integers(0, 50, n)] + 0.6 * rng.normal(size=(n, dim)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=50_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--target-hits", type=int, nargs="+", default=[100, 400])
    args = ap.parse_args()
    rng = np.random.default_rng(9)
    print(f"{args.docs} docs, {args.queries} queries, {args.dim}-d; recall@10 vs exact float")
    for kind in ("gaussian", "clustered"):
        docs = data(kind, args.docs, args.dim, rng)
        queries = normalise(docs[rng.integers(0, args.docs, args.queries)]
                            + 0.3 * rng.normal(size=(args.queries, args.dim)) / args.dim ** 0.5)
        start = time.perf_counter()
        truth = top_k(queries @ docs.T, 10)
        t_exact = time.perf_counter() - start
        bf = recall(top_k(queries @ to_bfloat16(docs).T, 10), truth)
        doc_bits = np.packbits(docs > 0, axis=1)
        q_bits = np.packbits(queries > 0, axis=1)
        parts = [f"{kind:9s}: bfloat16 {bf:.3f} (memory 1/2)"]
        for k in args.target_hits:
            cand = hamming_top(doc_bits, q_bits, k)
            rescored = np.einsum("qd,qkd->qk", queries, docs[cand])
            found = np.take_along_axis(cand, top_k(rescored, 10), axis=1)
            parts.append(f"binary top {k} + float re-rank {recall(found, truth):.3f}")
        print(" | ".join(parts) + f" (binary index 1/32 of float; exact float {t_exact:.2f} s)")


if __name__ == "__main__":
    main()
