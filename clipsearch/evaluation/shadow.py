"""Shadow evaluation: two generations of one index, the same labelled queries, which is better.

``clipsearch eval --generations A B --source DATASET`` reads the dataset's labelled images
(the documents both generations hold), builds category-name and caption queries
(``clipsearch.evaluation.queries``), encodes each query with EACH generation's own model
(its vectors live in that model's space), searches each generation per mode with the
dataset/split filters, and compares per-query metrics with a paired randomisation test.

The paired randomisation (sign-flip) test, written here in numpy (scipy is not a dependency;
``tests/test_shadow_eval.py`` checks it against ``scipy.stats.permutation_test``): under the
null hypothesis the two systems are exchangeable per query, so every per-query difference
``d_i = B_i - A_i`` is as likely to have had the other sign. The two-sided p-value is
``(1 + #{rounds: |mean(s * d)| >= |mean(d)|}) / (1 + rounds)`` over ``rounds`` random sign
vectors ``s`` (seeded: the same report for the same data). See Smucker, Allan & Carterette,
"A comparison of statistical significance tests for IR evaluation" (CIKM 2007).

The verdict uses the objective metric (default ``ndcg@10``) on the modes that depend on the
model (vector, hybrid): a generation is better when it wins significantly (p < ``alpha``) on
some query set and mode and loses significantly on none. Lexical results are the same for
both (same captions) and are reported for completeness.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from pydantic import BaseModel

from clipsearch.evaluation.data import LabelledImage
from clipsearch.evaluation.metrics import DEFAULT_RECALL_KS, per_query_metrics
from clipsearch.evaluation.queries import (
    CaptionRelevance,
    QuerySet,
    caption_queries,
    category_queries,
)
from clipsearch.evaluation.retrieval import ModeSetting, run_query_set, standard_settings
from clipsearch.index.base import GenerationalIndex
from clipsearch.index.generations import Generation
from clipsearch.models.identity import short_space
from clipsearch.search import Filters, HybridParameters, Mode

TextEncoder = Callable[[Sequence[str]], np.ndarray]
ROUNDS = 10_000


def paired_randomisation(a: Sequence[float], b: Sequence[float], *, rounds: int = ROUNDS,
                         seed: int = 0) -> float:
    """Two-sided p-value of the sign-flip test on the paired differences ``b - a``."""
    d = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    if d.size == 0 or not np.any(d):
        return 1.0
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    hits = 0
    for start in range(0, rounds, 2000):  # bounded memory: 2000 x n signs at a time
        n = min(2000, rounds - start)
        signs = rng.integers(0, 2, size=(n, d.size), dtype=np.int8) * 2 - 1
        hits += int(np.count_nonzero(np.abs(signs @ d) / d.size >= observed - 1e-12))
    return (1 + hits) / (1 + rounds)


class Side(BaseModel):
    generation: str
    model: str | None
    space: str
    documents: int | None


class Comparison(BaseModel):
    query_set: str
    mode: str
    metric: str
    queries: int
    a: float
    b: float
    delta: float
    p_value: float


class ShadowReport(BaseModel):
    a: Side
    b: Side
    objective: str
    alpha: float
    comparisons: list[Comparison]
    winner: str | None
    verdict: str

    def to_markdown(self) -> str:
        lines = [f"# Shadow evaluation: {self.a.generation} vs {self.b.generation}", "",
                 f"* A = {self.a.generation}: model {self.a.model}, space {self.a.space}, "
                 f"{self.a.documents} documents",
                 f"* B = {self.b.generation}: model {self.b.model}, space {self.b.space}, "
                 f"{self.b.documents} documents",
                 f"* paired randomisation test, {ROUNDS} rounds, alpha {self.alpha:g}", "",
                 "| queries | mode | metric | A | B | Δ (B−A) | p |",
                 "|---|---|---|---:|---:|---:|---:|"]
        for c in self.comparisons:
            star = " *" if c.p_value < self.alpha and c.delta else ""
            lines.append(f"| {c.query_set} ({c.queries}) | {c.mode} | {c.metric} | "
                         f"{c.a:.3f} | {c.b:.3f} | {c.delta:+.3f} | {c.p_value:.4f}{star} |")
        lines += ["", f"**Verdict:** {self.verdict}"]
        return "\n".join(lines)


def query_sets(items: Sequence[LabelledImage], *, relevance: CaptionRelevance,
               max_caption_queries: int | None) -> list[QuerySet]:
    sets = [category_queries(items),
            caption_queries(items, relevance=relevance, max_queries=max_caption_queries)]
    return [qs for qs in sets if len(qs)]


def _vectors(sets: Sequence[QuerySet], encode: TextEncoder) -> dict[str, np.ndarray]:
    pairs = [(qid, text) for qs in sets for qid, text in qs.texts.items()]
    if not pairs:
        return {}
    vecs = encode([t for _, t in pairs])
    return {qid: vecs[i] for i, (qid, _) in enumerate(pairs)}


async def _per_query(index: GenerationalIndex, name: str, sets: Sequence[QuerySet],
                     vectors: Mapping[str, np.ndarray], settings: Sequence[ModeSetting], *,
                     filters: Filters, candidates: int, recall_ks: Sequence[int],
                     cutoff: int) -> dict[tuple[str, str], dict[str, dict[str, float]]]:
    view = index.at_generation(name)
    depth = max(*recall_ks, cutoff)
    out: dict[tuple[str, str], dict[str, dict[str, float]]] = {}
    for setting in settings:
        for qs in sets:
            run = await run_query_set(view, qs, vectors, setting, depth=depth, filters=filters,
                                      candidates=candidates)
            out[(qs.name, setting.label)] = per_query_metrics(qs.qrels, run,
                                                              recall_ks=recall_ks,
                                                              cutoff=cutoff)
    return out


def _verdict(comparisons: Sequence[Comparison], a: str, b: str, objective: str,
             alpha: float) -> tuple[str | None, str]:
    judged = [c for c in comparisons if c.metric == objective and c.mode != Mode.lexical.value]
    b_wins = [c for c in judged if c.p_value < alpha and c.delta > 0]
    a_wins = [c for c in judged if c.p_value < alpha and c.delta < 0]

    def where(cs: list[Comparison]) -> str:
        return ", ".join(f"{c.mode} on {c.query_set} ({c.delta:+.3f}, p={c.p_value:.4f})"
                         for c in cs)

    if b_wins and not a_wins:
        return b, f"{b} is better than {a} on {objective}: {where(b_wins)}"
    if a_wins and not b_wins:
        return a, f"{a} is better than {b} on {objective}: {where(a_wins)}"
    if a_wins and b_wins:
        return None, (f"mixed: {b} wins {where(b_wins)}; {a} wins {where(a_wins)}")
    return None, f"no significant difference on {objective} (alpha {alpha:g})"


async def compare_generations(
    index: GenerationalIndex, a: str, b: str, items: Sequence[LabelledImage],
    encoders: Mapping[str, TextEncoder], *, hybrid: HybridParameters | None = None,
    relevance: CaptionRelevance = CaptionRelevance.item,
    max_caption_queries: int | None = 1000, objective: str = "ndcg@10", alpha: float = 0.05,
    candidates: int = 100, recall_ks: Sequence[int] = DEFAULT_RECALL_KS, cutoff: int = 10,
) -> ShadowReport:
    """``encoders``: generation name -> its model's text encoder (unit rows)."""
    gen_a, gen_b = await index.generation(a), await index.generation(b)
    sets = query_sets(items, relevance=relevance, max_caption_queries=max_caption_queries)
    settings = standard_settings(hybrid or HybridParameters())
    filters = Filters(dataset=sorted({it.dataset for it in items}),
                      split=sorted({it.split for it in items if it.split}))
    runs = {}
    for name in (a, b):
        runs[name] = await _per_query(index, name, sets, _vectors(sets, encoders[name]),
                                      settings, filters=filters, candidates=candidates,
                                      recall_ks=recall_ks, cutoff=cutoff)
    comparisons = []
    for key, per_a in runs[a].items():
        per_b = runs[b][key]
        qids = sorted(per_a)
        for metric in next(iter(per_a.values()), {}):
            va = [per_a[q][metric] for q in qids]
            vb = [per_b[q][metric] for q in qids]
            comparisons.append(Comparison(
                query_set=key[0], mode=key[1], metric=metric, queries=len(qids),
                a=float(np.mean(va)), b=float(np.mean(vb)),
                delta=float(np.mean(vb) - np.mean(va)), p_value=paired_randomisation(va, vb)))
    winner, verdict = _verdict(comparisons, a, b, objective, alpha)

    def side(g: Generation) -> Side:
        return Side(generation=g.name, model=g.model_id, space=short_space(g.space),
                    documents=g.documents)

    return ShadowReport(a=side(gen_a), b=side(gen_b), objective=objective, alpha=alpha,
                        comparisons=comparisons, winner=winner, verdict=verdict)


def run_shadow_eval(settings: object, *, source: str, fmt: str, dataset: str | None,
                    splits: Sequence[str], generations: Sequence[str],
                    model_for: Mapping[str, str], **options: object) -> ShadowReport:
    """The CLI's entry: open the index, load each generation's model, compare."""
    import asyncio
    from pathlib import Path

    from clipsearch.errors import InvalidRequest
    from clipsearch.evaluation.data import load_labelled
    from clipsearch.evaluation.encoding import EvalEncoder
    from clipsearch.index import open_index
    from clipsearch.settings import Settings

    assert isinstance(settings, Settings)
    a, b = generations
    items = load_labelled(Path(source), fmt=fmt, dataset=dataset, splits=splits)
    if not items:
        raise InvalidRequest(f"no labelled images in split(s) {list(splits)} of {source}")

    async def go() -> ShadowReport:
        index = open_index(settings)
        try:
            if not isinstance(index, GenerationalIndex):
                raise InvalidRequest("this index engine has no generations",
                                     reason="no_generations")
            encoders: dict[str, TextEncoder] = {}
            for name in (a, b):
                gen = await index.generation(name)
                model = model_for.get(name) or gen.model_id
                if not model:
                    raise InvalidRequest(
                        f"generation {name!r} does not record its model: give "
                        f"--model-for {name}=MODEL", reason="unknown_model")
                enc = await asyncio.to_thread(EvalEncoder.load, model, settings)
                encoders[name] = enc.texts
            return await compare_generations(index, a, b, items, encoders,
                                             **options)  # type: ignore[arg-type]
        finally:
            await index.close()

    return asyncio.run(go())
