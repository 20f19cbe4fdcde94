"""The evaluation's outputs: a JSON file, a Markdown table and a PNG chart."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from clipsearch.evaluation.runner import EvalReport, ModelReport

CHART_METRICS = ("recall@10", "mrr@10", "ndcg@10")


class WrittenReport(BaseModel):
    json_path: Path
    markdown_path: Path
    chart_path: Path
    reliability_path: Path | None = None


def _model_name(model: str) -> str:
    return model.rstrip("/").split("/")[-1] or model


def retrieval_rows(m: ModelReport) -> list[tuple[str, str, dict[str, float]]]:
    return [(qs, r.label, metrics) for r in m.retrieval for qs, metrics in r.metrics.items()]


def to_markdown(report: EvalReport) -> str:
    lines = [f"# Evaluation of `{report.source}` (split: {', '.join(report.splits)})", "",
             f"Index: {report.index.value}"
             + (" (one caption per image held out of the index and used as the query)"
                if report.index.value == "fresh" else " (captions are indexed: caption queries "
                "can match their own text)")
             + f"; caption relevance: {report.caption_relevance.value}.", ""]
    metric_names = _metric_names(report)
    lines += ["## Retrieval", "",
              "| model | queries | mode | " + " | ".join(metric_names) + " |",
              "|---|---|---|" + "---|" * len(metric_names)]
    for m in report.models:
        for qs, label, metrics in retrieval_rows(m):
            cells = " | ".join(f"{metrics.get(n, float('nan')):.3f}" for n in metric_names)
            lines.append(f"| {_model_name(m.model)} | {qs} ({m.queries[qs]}) | {label} "
                         f"| {cells} |")
    zs = [(m, m.zero_shot) for m in report.models if m.zero_shot]
    if zs:
        hits = list(zs[0][1].hits) if zs[0][1] else []
        lines += ["", "## Zero-shot classification", "",
                  f"Prompts: {', '.join(repr(t) for t in zs[0][1].templates)}" if zs[0][1]
                  else "", "",
                  "| model | images | classes | " + " | ".join(hits) + " |",
                  "|---|---|---|" + "---|" * len(hits)]
        for m, z in zs:
            assert z is not None
            lines.append(f"| {_model_name(m.model)} | {z.n_images} | {len(z.categories)} | "
                         + " | ".join(f"{z.hits[h]:.3f}" for h in hits) + " |")
    for m in report.models:
        if m.sweep is None:
            continue
        lines += ["", f"## Fusion sweep: {_model_name(m.model)} "
                  f"(objective: mean {m.sweep.objective} over {', '.join(m.sweep.query_sets)})",
                  "", "| setting | objective |", "|---|---|"]
        for p in m.sweep.points:
            mark = " **best**" if p.label == m.sweep.best.label else ""
            lines.append(f"| {p.label}{mark} | {p.objective:.4f} |")
        lines += ["", f"Best: **{m.sweep.best.label}** ({m.sweep.best.objective:.4f})"
                  f" on split {', '.join(m.sweep_split or report.splits)}."]
        if m.tuned is not None:
            cells = "; ".join(f"{qs} {v.get(report.objective, float('nan')):.3f}"
                              for qs, v in m.tuned.metrics.items())
            lines += ["", f"Measured on {', '.join(report.splits) or 'all'}: {cells}."]
    cal = [m for m in report.models if m.calibration is not None]
    if cal:
        lines += ["", "## Calibrated relevance (hybrid hits, logistic regression)", "",
                  "| model | fitted on | samples | measured on | ECE |", "|---|---|---|---|---|"]
        for m in cal:
            c = m.calibration
            assert c is not None
            q = c.quality
            lines.append(f"| {_model_name(m.model)} | {c.fitted_on} | {c.samples} | "
                         f"{q.split if q else '-'} | {f'{q.ece:.3f}' if q else '-'} |")
    lines += ["", f"Ties: {report.tie_breaking}."]
    return "\n".join(lines) + "\n"


def _metric_names(report: EvalReport) -> list[str]:
    for m in report.models:
        for r in m.retrieval:
            for metrics in r.metrics.values():
                return list(metrics)
    return []


def write_chart(report: EvalReport, path: Path) -> None:
    """Grouped bars (metric x mode) per model and query set, plus the sweep curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(m, qs) for m in report.models for qs in m.queries]
    sweeps = [m for m in report.models if m.sweep]
    n = max(1, len(panels) + len(sweeps))
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, grid = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    axes = [list(grid.flat)]
    for ax in axes[0][n:]:
        ax.set_visible(False)
    for ax, (m, qs) in zip(axes[0], panels, strict=False):
        labels = [r.label for r in m.retrieval]
        width = 0.8 / max(1, len(labels))
        for j, r in enumerate(m.retrieval):
            vals = [r.metrics.get(qs, {}).get(name, 0.0) for name in CHART_METRICS]
            ax.bar([i + j * width for i in range(len(CHART_METRICS))], vals, width,
                   label=labels[j])
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(CHART_METRICS))],
                      list(CHART_METRICS))
        ax.set_ylim(0, 1)
        ax.set_title(f"{_model_name(m.model)}: {qs} queries", fontsize=9)
        ax.legend(fontsize=7)
    for ax, m in zip(axes[0][len(panels):], sweeps, strict=False):
        assert m.sweep is not None
        lin = [(p.hybrid.alpha, p.objective) for p in m.sweep.points
               if p.hybrid.fusion.value == "linear"]
        rrf = [(p.hybrid.rrf_k, p.objective) for p in m.sweep.points
               if p.hybrid.fusion.value == "rrf"]
        handles = []
        if lin:
            handles += ax.plot([a for a, _ in lin], [v for _, v in lin], marker="o",
                               label="linear (α)")
        ax.set_xlabel("α (vector weight)")
        ax.set_ylabel(m.sweep.objective)
        if rrf:
            top = ax.twiny()
            handles += top.plot(range(len(rrf)), [v for _, v in rrf], marker="s",
                                color="tab:orange", label="rrf (k)")
            top.set_xticks(range(len(rrf)), [str(k) for k, _ in rrf])
            top.set_xlabel("RRF k", fontsize=8)
        ax.set_title(f"sweep: best {m.sweep.best.label}", fontsize=9)
        ax.legend(handles=handles, fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: EvalReport, out_dir: Path, stem: str = "eval") -> WrittenReport:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = WrittenReport(json_path=out_dir / f"{stem}.json",
                            markdown_path=out_dir / f"{stem}.md",
                            chart_path=out_dir / f"{stem}.png")
    written.json_path.write_text(report.model_dump_json(indent=2))
    written.markdown_path.write_text(to_markdown(report))
    write_chart(report, written.chart_path)
    if any(m.calibration and m.calibration.quality for m in report.models):
        written.reliability_path = out_dir / f"{stem}-reliability.png"
        write_reliability(report, written.reliability_path)
    return written


def write_reliability(report: EvalReport, path: Path) -> None:
    """Reliability diagram per model: mean predicted relevance vs fraction relevant per bin."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in report.models if m.calibration and m.calibration.quality]
    fig, grid = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4.0), squeeze=False)
    for ax, m in zip(grid.flat, models, strict=False):
        assert m.calibration is not None and m.calibration.quality is not None
        q = m.calibration.quality
        pts = [(b.mean_predicted, b.fraction_relevant, b.count) for b in q.bins if b.count]
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
        ax.plot([p for p, _, _ in pts], [f for _, f, _ in pts], marker="o")
        for p, f, c in pts:
            ax.annotate(str(c), (p, f), fontsize=6, xytext=(3, -8), textcoords="offset points")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted relevance")
        ax.set_ylabel("fraction relevant")
        ax.set_title(f"{_model_name(m.model)}: ECE {q.ece:.3f} ({q.split}, "
                     f"fitted on {m.calibration.fitted_on})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
