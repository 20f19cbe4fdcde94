"""``clipsearch eval``: measure zero-shot classification and retrieval per search mode."""

from __future__ import annotations

import argparse
from pathlib import Path

from clipsearch.evaluation.queries import CaptionRelevance
from clipsearch.evaluation.sweep import DEFAULT_ALPHAS, DEFAULT_RRF_KS, DEFAULT_SATURATIONS
from clipsearch.evaluation.zeroshot import DEFAULT_TEMPLATES, ENSEMBLE_TEMPLATES
from clipsearch.search import (
    DEFAULT_ALPHA,
    DEFAULT_FUSION,
    DEFAULT_SATURATION,
    Fusion,
    HybridParameters,
)
from clipsearch.settings import Settings

# every fusion at its default parameters, for --compare-fusions
COMPARED_FUSIONS = [HybridParameters(fusion=f) for f in Fusion]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _shadow(args: argparse.Namespace) -> int:
    import json

    from clipsearch.evaluation.shadow import run_shadow_eval

    model_for = dict(x.split("=", 1) for x in (args.model_for or []) if "=" in x)
    report = run_shadow_eval(
        Settings(), source=args.source, fmt=args.format, dataset=args.dataset,
        splits=[s for s in args.split.split(",") if s] if args.split else [],
        generations=args.generations, model_for=model_for,
        hybrid=HybridParameters(fusion=Fusion(args.fusion), alpha=args.alpha, rrf_k=args.rrf_k),
        relevance=CaptionRelevance(args.caption_relevance),
        max_caption_queries=args.max_caption_queries, objective=args.objective)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = args.stem if args.stem != "eval" else "shadow"
    (out / f"{stem}.json").write_text(json.dumps(report.model_dump(mode="json"), indent=1))
    (out / f"{stem}.md").write_text(report.to_markdown() + "\n")
    print(report.to_markdown())
    print(f"wrote {out / f'{stem}.json'}, {out / f'{stem}.md'}")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.generations:
        return _shadow(args)
    from clipsearch.evaluation.report import to_markdown, write_report
    from clipsearch.evaluation.runner import EvalConfig, IndexChoice, run_eval

    settings = Settings()
    cfg = EvalConfig(
        source=Path(args.source), format=args.format, dataset=args.dataset,
        splits=[s for s in args.split.split(",") if s] if args.split else [],
        models=args.model or [], index=IndexChoice(args.index),
        templates=args.template or list(ENSEMBLE_TEMPLATES if args.prompt_ensemble
                                        else DEFAULT_TEMPLATES),
        hybrid=HybridParameters(fusion=Fusion(args.fusion), alpha=args.alpha, rrf_k=args.rrf_k,
                                saturation=args.saturation),
        caption_relevance=CaptionRelevance(args.caption_relevance),
        max_caption_queries=args.max_caption_queries, zero_shot=not args.no_zero_shot,
        sweep=args.sweep, objective=args.objective, candidates=settings.candidates,
        work_dir=Path(args.work_dir) if args.work_dir else None,
        sweep_alphas=_floats(args.alphas) if args.alphas else list(DEFAULT_ALPHAS),
        sweep_rrf_ks=_ints(args.rrf_ks) if args.rrf_ks else list(DEFAULT_RRF_KS),
        sweep_saturations=(_floats(args.saturations) if args.saturations
                           else list(DEFAULT_SATURATIONS)),
        choose_split=args.choose_split or None, calibrate=args.calibrate,
        compare=COMPARED_FUSIONS if args.compare_fusions else [])
    if args.apply and not (args.sweep or args.calibrate):
        raise SystemExit("--apply needs --sweep and/or --calibrate")
    report = run_eval(cfg, settings)
    written = write_report(report, Path(args.out), stem=args.stem)
    print(to_markdown(report))
    print(f"wrote {written.json_path}, {written.markdown_path}, {written.chart_path}"
          + (f", {written.reliability_path}" if written.reliability_path else ""))
    if args.apply:
        from clipsearch.evaluation.apply import apply_report

        for line in apply_report(report, settings, as_default=args.apply_default):
            print(line)
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "eval", help="evaluate zero-shot classification and lexical/vector/hybrid retrieval",
        description="Evaluate a dataset split: zero-shot hits@k, and Recall@k / MRR@10 / "
        "nDCG@10 per search mode for category-name and held-out-caption queries. Writes "
        "<out>/<stem>.json, .md and .png.")
    p.add_argument("--source", required=True, help="dataset (manifest, JSON file or folder)")
    p.add_argument("--format", default="auto",
                   help="auto|generic|rsicd|ucm|sydney|karpathy|imageclef")
    p.add_argument("--dataset", default=None, help="dataset name (default: the reader's)")
    p.add_argument("--split", default="test", help="comma-separated splits; '' for all")
    p.add_argument("--model", action="append",
                   help="model id or directory; repeat to compare (default: CLIPSEARCH_MODEL)")
    p.add_argument("--index", choices=["fresh", "live"], default="fresh",
                   help="fresh: build an index of the split with one caption per image held "
                   "out (default); live: search the configured index")
    p.add_argument("--template", action="append",
                   help="zero-shot prompt with {category}; repeat (default: aerial prompts)")
    p.add_argument("--fusion", choices=[f.value for f in Fusion], default=DEFAULT_FUSION.value)
    p.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                   help="linear/score fusion: vector weight")
    p.add_argument("--saturation", type=float, default=DEFAULT_SATURATION,
                   help="score fusion: BM25 s counts as s / (s + saturation)")
    p.add_argument("--rrf-k", type=int, default=60)
    p.add_argument("--caption-relevance", choices=["item", "category"], default="item",
                   help="caption queries: only the captioned image is relevant, or its category")
    p.add_argument("--max-caption-queries", type=int, default=1000)
    p.add_argument("--no-zero-shot", action="store_true")
    p.add_argument("--sweep", action="store_true", help="sweep hybrid α and RRF k")
    p.add_argument("--alphas", default="", help="sweep α values, comma-separated")
    p.add_argument("--rrf-ks", default="", help="sweep RRF k values, comma-separated")
    p.add_argument("--saturations", default="", help="sweep score-fusion saturations")
    p.add_argument("--choose-split", default="",
                   help="split the sweep chooses on (e.g. val); the evaluated --split reports "
                   "the choice (default: the sweep runs on the evaluated split)")
    p.add_argument("--apply", action="store_true",
                   help="store the sweep's best fusion as the API's default for the evaluated "
                   "dataset(s) of the configured index (needs --sweep and one --model)")
    p.add_argument("--apply-default", action="store_true",
                   help="with --apply: also the default for requests without a dataset filter")
    p.add_argument("--compare-fusions", action="store_true",
                   help="also measure every fusion at its default parameters (rrf, "
                   "rrf_textbook, linear, score)")
    p.add_argument("--calibrate", action="store_true",
                   help="fit calibrated relevance for hybrid hits (on --choose-split if given), "
                   "report ECE and a reliability diagram; --apply stores it for the API")
    p.add_argument("--prompt-ensemble", action="store_true",
                   help="zero-shot with three aerial prompts instead of the single default")
    p.add_argument("--objective", default="ndcg@10", help="metric the sweep maximises")
    p.add_argument("--out", default="eval-report", help="output folder")
    p.add_argument("--stem", default="eval", help="output file name stem")
    p.add_argument("--work-dir", default=None, help="where fresh indexes go (default: temp)")
    p.add_argument("--generations", nargs=2, metavar=("A", "B"), default=None,
                   help="shadow evaluation: compare two generations of the configured index "
                   "on the dataset's labelled queries, each with its own model, per mode, "
                   "with a paired randomisation test; says which is better")
    p.add_argument("--model-for", dest="model_for", action="append", metavar="GEN=MODEL",
                   help="with --generations: the model of a generation that does not record "
                   "a loadable one")
    p.set_defaults(func=_run)
