"""``clipsearch eval --sweep --apply``: store the sweep's best fusion as the served default."""

from __future__ import annotations

from clipsearch.errors import InvalidRequest
from clipsearch.evaluation.runner import EvalReport, ModelReport
from clipsearch.quality import calibration, tuned
from clipsearch.settings import Settings


def _one_model(report: EvalReport) -> ModelReport:
    if len(report.models) != 1:
        raise InvalidRequest("--apply needs exactly one --model (the model the index serves)")
    return report.models[0]


def tuned_entries(report: EvalReport, *, as_default: bool = False) -> dict[str, tuned.TunedFusion]:
    """One entry per evaluated dataset (and ``*`` with ``as_default``) from the one model's
    sweep. Refuses a report of several models: only one model's numbers can be served."""
    m = _one_model(report)
    if m.sweep is None:
        raise InvalidRequest("--apply needs --sweep")
    reported = None
    if m.tuned is not None:
        values = [v[report.objective] for v in m.tuned.metrics.values()
                  if report.objective in v]
        reported = sum(values) / len(values) if values else None
    entry = tuned.TunedFusion(
        hybrid=m.sweep.best.hybrid, label=m.sweep.best.label, objective=report.objective,
        chosen_on=",".join(m.sweep_split or report.splits), objective_chosen=m.sweep.best.objective,
        reported_on=",".join(report.splits), objective_reported=reported, model=m.model,
        source=report.source)
    keys = list(m.datasets) + ([tuned.ANY_DATASET] if as_default else [])
    return dict.fromkeys(keys, entry)


def apply_report(report: EvalReport, settings: Settings, *, as_default: bool = False,
                 generation: str | None = None) -> list[str]:
    """Store what the report learned (tuned fusion, calibration); returns what was done."""
    m = _one_model(report)
    done = []
    if m.sweep is not None:
        path = tuned.apply(settings, tuned_entries(report, as_default=as_default))
        done.append(f"applied {m.sweep.best.label} as the default fusion of "
                    f"{', '.join(m.datasets)} in {path}")
    if m.calibration is not None:
        path = calibration.save(settings, m.calibration, generation)
        done.append(f"stored the relevance calibration in {path}")
    return done
