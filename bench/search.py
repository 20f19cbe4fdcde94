"""Embedded-engine search benchmark: latency of every mode and ANN recall, in one run.

Builds a synthetic corpus (clustered unit vectors, Zipf-distributed caption words, labels for
filters), feeds it through ``EmbeddedIndex.upsert`` (the feeder's path), ``flush()``es (ANN
index build), then measures through ``EmbeddedIndex.search`` (the gateway's path):

* latency p50 / p95 of lexical, vector (ANN), hybrid (RRF) and filtered vector (~10 %
  selectivity, prefilter) top-10 queries, one query at a time;
* vector recall@10 of the ANN leg against exact numpy search over the same vectors, and the
  latency of that exact search as the baseline, with the ratios printed.

    .venv/bin/python bench/search.py --n 50000
    .venv/bin/python bench/search.py --n 200000 --ef 300 --queries 300
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from clipsearch.documents import ImageDocument
from clipsearch.embeddings import l2_normalize
from clipsearch.index.embedded import EmbeddedIndex
from clipsearch.search import Filters, Mode, SearchPlan

CATEGORIES = 10  # one category is ~10 % of the corpus: the filtered-vector selectivity
VOCAB = 4000


@dataclass(frozen=True)
class Corpus:
    vectors: np.ndarray  # (n, dim) float32, unit rows
    categories: np.ndarray  # (n,) int
    vocab: list[str]
    seed: int


def make_corpus(n: int, dim: int, seed: int) -> Corpus:
    """Clustered unit vectors (CLIP embeddings are clustered, not uniform on the sphere)."""
    rng = np.random.default_rng(seed)
    clusters = 200
    centroids = l2_normalize(rng.normal(size=(clusters, dim)).astype(np.float32))
    assign = rng.integers(0, clusters, size=n)
    noise = rng.normal(scale=1.2 / np.sqrt(dim), size=(n, dim)).astype(np.float32)
    vectors = l2_normalize(centroids[assign] + noise)
    categories = assign % CATEGORIES
    vocab = [f"{w}{i}" for i, w in enumerate(["airport", "river", "park", "harbor", "forest",
                                               "desert", "bridge", "road"] * (VOCAB // 8))]
    return Corpus(vectors=vectors, categories=categories, vocab=vocab, seed=seed)


def captions_for(rng: np.random.Generator, vocab: list[str], count: int) -> list[str]:
    words = rng.zipf(1.2, size=(count, 12)) % len(vocab)
    return [" ".join(["the", *(vocab[w] for w in row)]) for row in words]


def documents(corpus: Corpus, start: int, stop: int) -> list[ImageDocument]:
    rng = np.random.default_rng(corpus.seed + start)
    captions = captions_for(rng, corpus.vocab, stop - start)
    return [
        ImageDocument.model_construct(
            id=f"bench:{i}", captions=[captions[i - start]], dataset="bench",
            category=f"c{int(corpus.categories[i])}", split="train", image_uri="",
            model_id="synthetic", embedding=corpus.vectors[i].tolist(),
        )
        for i in range(start, stop)
    ]


def batches(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


async def timed(calls: list[Callable[[], Awaitable[object]]]) -> tuple[list[float], list[object]]:
    latencies, results = [], []
    for call in calls:
        t0 = time.perf_counter()
        results.append(await call())
        latencies.append((time.perf_counter() - t0) * 1000.0)
    return latencies, results


def summary(name: str, ms: list[float]) -> dict[str, float | str]:
    return {"name": name, "p50_ms": round(percentile(ms, 50), 2),
            "p95_ms": round(percentile(ms, 95), 2), "mean_ms": round(statistics.fmean(ms), 2)}


async def run(args: argparse.Namespace) -> dict[str, object]:
    corpus = make_corpus(args.n, args.dim, args.seed)
    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="clipsearch-bench-"))
    index = EmbeddedIndex(root, table="bench", dim=args.dim, hnsw_ef=args.ef,
                          vector_index_min_rows=min(args.n, args.vector_index_min_rows))
    report: dict[str, object] = {"n": args.n, "dim": args.dim, "ef": args.ef,
                                 "queries": args.queries, "candidates": args.candidates}
    if args.dir and await index.count() == args.n and await index.has_vector_index():
        report["ingest_s"] = report["flush_s"] = "reused"  # same seed and n: same corpus
    else:
        t0 = time.perf_counter()
        for start, stop in batches(args.n, args.batch):
            await index.upsert(documents(corpus, start, stop))
        report["ingest_s"] = round(time.perf_counter() - t0, 2)
        t0 = time.perf_counter()
        await index.flush()
        report["flush_s"] = round(time.perf_counter() - t0, 2)
    report["ann_index"] = await index.has_vector_index()

    rng = np.random.default_rng(args.seed + 1)
    picks = rng.integers(0, args.n, size=args.queries)
    noise = rng.normal(scale=0.8 / np.sqrt(args.dim), size=(args.queries, args.dim))
    queries = l2_normalize(corpus.vectors[picks] + noise.astype(np.float32))
    texts = [" ".join(corpus.vocab[w] for w in rng.zipf(1.2, size=3) % len(corpus.vocab))
             for _ in range(args.queries)]
    category = Filters(category=["c3"])

    def plan(mode: Mode, i: int, **kw: object) -> SearchPlan:
        fields = {"mode": mode, "text": texts[i], "vector": queries[i].tolist(), "limit": 10,
                  "candidates": args.candidates}
        return SearchPlan.model_validate(fields | kw)

    def calls(mode: Mode, **kw: object) -> list[Callable[[], Awaitable[object]]]:
        return [partial(index.search, plan(mode, i, **kw)) for i in range(args.queries)]

    await timed(calls(Mode.hybrid)[:10])  # warm caches
    rows = []
    lex_ms, _ = await timed(calls(Mode.lexical))
    rows.append(summary("lexical (BM25)", lex_ms))
    vec_ms, vec_results = await timed(calls(Mode.vector))
    rows.append(summary("vector (ANN)", vec_ms))
    k10_ms, k10_results = await timed(calls(Mode.vector, candidates=10))
    rows.append(summary("vector (ANN, 10 candidates)", k10_ms))
    hyb_ms, _ = await timed(calls(Mode.hybrid))
    rows.append(summary("hybrid (RRF)", hyb_ms))
    fil_ms, fil_results = await timed(calls(Mode.vector, filters=category))

    rows.append(summary("vector, 10 % filter", fil_ms))

    # exact numpy baseline over the same vectors, same run
    exact_ms: list[float] = []
    recalls: list[float] = []
    k10_recalls: list[float] = []
    filtered_recalls: list[float] = []
    in_category = np.flatnonzero(corpus.categories == 3)
    for i in range(args.queries):
        t0 = time.perf_counter()
        sims = corpus.vectors @ queries[i]
        top = np.argpartition(-sims, 10)[:10]
        exact_ms.append((time.perf_counter() - t0) * 1000.0)
        truth = {f"bench:{j}" for j in top}
        got = {h.id for h in vec_results[i].hits}  # type: ignore[attr-defined]
        recalls.append(len(truth & got) / 10.0)
        k10 = {h.id for h in k10_results[i].hits}  # type: ignore[attr-defined]
        k10_recalls.append(len(truth & k10) / 10.0)
        sub = in_category[np.argpartition(-sims[in_category], 10)[:10]]
        ftruth = {f"bench:{j}" for j in sub}
        fgot = {h.id for h in fil_results[i].hits}  # type: ignore[attr-defined]
        filtered_recalls.append(len(ftruth & fgot) / 10.0)
    rows.append(summary("exact numpy (baseline)", exact_ms))
    report["latency"] = rows
    report["recall_at_10"] = round(statistics.fmean(recalls), 4)
    report["recall_at_10_k10"] = round(statistics.fmean(k10_recalls), 4)
    report["filtered_recall_at_10"] = round(statistics.fmean(filtered_recalls), 4)
    p50 = {r["name"]: float(r["p50_ms"]) for r in rows}
    report["ratios"] = {
        "exact_numpy_p50 / ann_p50": round(p50["exact numpy (baseline)"] / p50["vector (ANN)"], 2),
        "hybrid_p50 / (lexical_p50 + vector_p50)": round(
            p50["hybrid (RRF)"] / (p50["lexical (BM25)"] + p50["vector (ANN)"]), 2),
        "filtered_p50 / vector_p50": round(p50["vector, 10 % filter"] / p50["vector (ANN)"], 2),
    }
    await index.close()
    if not args.dir and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return report


def print_report(report: dict[str, object]) -> None:
    print(f"n={report['n']} dim={report['dim']} ef={report['ef']} "
          f"queries={report['queries']} ann_index={report['ann_index']}")
    print(f"ingest {report['ingest_s']} s, flush (optimize + FTS + ANN build) "
          f"{report['flush_s']} s")
    print(f"{'query':28} {'p50 ms':>8} {'p95 ms':>8} {'mean ms':>8}")
    for row in report["latency"]:  # type: ignore[attr-defined]
        print(f"{row['name']:28} {row['p50_ms']:>8} {row['p95_ms']:>8} {row['mean_ms']:>8}")
    print(f"vector recall@10 vs exact: {report['recall_at_10']} with {report['candidates']} "
          f"candidates re-ranked exactly, {report['recall_at_10_k10']} with 10 "
          f"(filtered: {report['filtered_recall_at_10']})")
    for name, value in report["ratios"].items():  # type: ignore[attr-defined]
        print(f"ratio {name}: {value}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", type=int, default=300)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--batch", type=int, default=5_000)
    parser.add_argument("--vector-index-min-rows", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default="", help="index directory (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the temp index directory")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_report(report)


if __name__ == "__main__":
    main()
