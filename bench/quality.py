"""Regenerate every search-quality table of the README from one run.

    .venv/bin/python bench/quality.py [--out data/quality] [--readme README.md] [--threads 1]

Builds (or reuses) the trained demo model and its untrained twin under ``--out`` (``clipsearch
demo-model``), then runs ``clipsearch eval`` on the demo test split twice (caption queries
judged by category, and by the captioned image alone), each with every fusion at its default
parameters (``--compare-fusions``), the sweep chosen on the val split (``--choose-split
val``) and calibrated relevance (``--calibrate``). The README's block between
``<!-- quality:begin -->`` and ``<!-- quality:end -->`` is replaced by the tables (nDCG@10,
zero-shot hits@1, the sweep's choice and ECE); the full reports go to ``--out/reports``.
A few minutes per evaluation on 2 cores (the sweep dominates).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from clipsearch.machine import cpu_flags

BEGIN, END = "<!-- quality:begin -->", "<!-- quality:end -->"
MODES = [("lexical", "lexical"), ("vector", "vector"),
         ("hybrid (score α=0.7 s=3)", "**score** (default)"),
         ("hybrid (rrf k=60)", "rrf (window)"), ("hybrid (textbook rrf k=60)", "rrf_textbook"),
         ("hybrid (linear α=0.7)", "linear α 0.7")]
SWEEP = ["--alphas", "0,0.3,0.5,0.6,0.7,0.8,0.9,1", "--saturations", "1,3,10",
         "--rrf-ks", "10,60"]


def run(cmd: list[str]) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1",
                                         "TOKENIZERS_PARALLELISM": "false"})


def models(out: Path, bin_dir: Path, threads: int) -> tuple[Path, Path]:
    trained, untrained = out / "model", out / "untrained"
    if not (trained / "config.json").exists():
        run([str(bin_dir / "clipsearch"), "demo-model", "--out", str(trained),
             "--threads", str(threads)])
    if not (untrained / "config.json").exists():
        run([str(bin_dir / "clipsearch"), "demo-model", "--init-only", "--out", str(untrained)])
    return trained, untrained


def evaluate(out: Path, bin_dir: Path, trained: Path, untrained: Path, relevance: str) -> dict:
    stem = f"demo-{relevance}"
    report = out / "reports" / f"{stem}.json"
    run([str(bin_dir / "clipsearch"), "eval", "--source", str(out / "model-data" /
                                                              "manifest.jsonl"),
         "--split", "test", "--choose-split", "val", "--model", str(untrained),
         "--model", str(trained), "--caption-relevance", relevance, "--compare-fusions",
         "--sweep", *SWEEP, "--calibrate", "--out", str(out / "reports"), "--stem", stem])
    return json.loads(report.read_text())


def ndcg(model: dict, label: str, query_set: str) -> float:
    for r in model["retrieval"]:
        if r["label"] == label:
            return float(r["metrics"][query_set]["ndcg@10"])
    return float("nan")


def tables(by_relevance: dict[str, dict]) -> str:
    lines = ["| model | queries / relevance | " + " | ".join(n for _, n in MODES)
             + " | tuned on val (measured on test) |",
             "|---|---|" + "---|" * (len(MODES) + 1)]
    rows = [("category", "category names / category", "category"),
            ("category", "held-out captions / same category", "caption"),
            ("item", "held-out captions / same image", "caption")]
    for name in ("untrained", "model"):
        for rel, title, qs in rows:
            m = next(x for x in by_relevance[rel]["models"] if x["model"].endswith(name))
            vals = [ndcg(m, label, qs) for label, _ in MODES]
            best_leg = max(vals[:2])
            cells = [f"**{v:.3f}**" if v >= best_leg and i >= 2 else f"{v:.3f}"
                     for i, v in enumerate(vals)]
            tuned = m.get("tuned")
            tuned_cell = (f"{tuned['metrics'][qs]['ndcg@10']:.3f} ({tuned['label'][8:-1]})"
                          if tuned else "-")
            lines.append(f"| {'trained' if name == 'model' else name} | {title} | "
                         + " | ".join(cells) + f" | {tuned_cell} |")
    cat = by_relevance["category"]["models"]
    zs = " / ".join(f"{m['zero_shot']['hits']['hits@1']:.3f}" for m in cat if m["zero_shot"])
    eces = " / ".join(f"{m['calibration']['quality']['ece']:.3f}" for m in cat
                      if m.get("calibration") and m["calibration"].get("quality"))
    lines += ["", f"Zero-shot hits@1 (single prompt, untrained / trained): {zs}. "
              f"Calibrated relevance (category relevance, fitted on val, measured on test): "
              f"ECE {eces}. Ties in every ranking are broken by a seeded hash, not by id."]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="data/quality")
    ap.add_argument("--readme", default="README.md")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--bin", default=str(Path(sys.executable).parent))
    args = ap.parse_args()
    out, bin_dir = Path(args.out), Path(args.bin)
    out.mkdir(parents=True, exist_ok=True)
    trained, untrained = models(out, bin_dir, args.threads)
    by_relevance = {rel: evaluate(out, bin_dir, trained, untrained, rel)
                    for rel in ("category", "item")}
    block = (f"{BEGIN}\n<!-- Produced by bench/quality.py (demo seed 0, test split, choices on "
             f"val; CPU flags: {cpu_flags()}). -->\n{tables(by_relevance)}\n{END}")
    readme = Path(args.readme)
    text = readme.read_text(encoding="utf-8")
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        readme.write_text(head + block + rest.split(END, 1)[1], encoding="utf-8")
        print(f"updated {readme}")
    else:
        print(block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
