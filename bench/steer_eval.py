"""Query steering on the demo model: share of text-labelled images in the top k vs the scale.

    .venv/bin/python bench/steer_eval.py [--model DIR] [--work DIR] [--scales -2,-1,0,1,2]

1. Draws a demo dataset (``--seed``, default 1: none of it was seen by the demo model, trained
   on seed 0) where ``--fraction`` of the images carry a drawn text label
   (``make_demo_dataset(text_label_fraction=...)``).
2. Encodes every image with the demo model (``--model``; default: build it with
   ``build_demo_model`` into ``<work>/model``, a few minutes) and trains the probe with the
   real ``clipsearch probe train`` code path (``train_probe``) on the *train* split's labels.
3. Searches the val+test images (exact cosine, what the vector leg returns below the ANN
   threshold) with text queries -- one prompt per category and held-out captions -- steered
   with ``apply_steer`` at each scale; prints the mean share of labelled images in the top k,
   the category precision@k, and a markdown table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clipsearch.datasets.scenes import TEXT_LABEL, make_demo_dataset  # noqa: E402
from clipsearch.models.model import ClipEncoder  # noqa: E402
from clipsearch.settings import Settings  # noqa: E402
from clipsearch.steering import ProbeStore, apply_steer  # noqa: E402
from clipsearch.steering.labels import LabelledImage  # noqa: E402
from clipsearch.steering.train import TrainRequest, encode_labelled, train_probe  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=None, help="demo model dir (default: build one)")
    ap.add_argument("--work", default="data/steer-eval")
    ap.add_argument("--n-per-category", type=int, default=150)
    ap.add_argument("--fraction", type=float, default=0.2, help="share of labelled images")
    ap.add_argument("--scales", default="-2,-1,-0.5,0,0.5,1,2")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1, help="demo data seed (the model saw seed 0)")
    ap.add_argument("--captions", type=int, default=200, help="held-out caption queries")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args()
    work = Path(args.work)
    t0 = time.perf_counter()

    model = Path(args.model) if args.model else _build_model(work)
    data = make_demo_dataset(work / "data", n_per_category=args.n_per_category, seed=args.seed,
                             text_label_fraction=args.fraction)
    settings = Settings(data_dir=work, model=str(model))
    encoder = ClipEncoder.load(str(model), threads=1, runtime="torch")

    train = [r for r in data.records if r.split == "train"]
    pool = [r for r in data.records if r.split != "train"]
    train_items = [LabelledImage(path=data.root / r.file, positive=TEXT_LABEL in (r.labels or []))
                   for r in train]
    result = train_probe(settings, TrainRequest(name="textness", attribute=TEXT_LABEL),
                         train_items, encoder=encoder)
    probe = ProbeStore(settings, model_id=encoder.model_id, dim=encoder.dim).get("textness")
    q = probe.quality
    print(f"probe: held-out accuracy {q.accuracy:.3f} (balanced {q.balanced_accuracy:.3f}) on "
          f"{q.n_test} images, trained on {q.n_train} ({probe.n_positive} labelled)")

    pool_items = [LabelledImage(path=data.root / r.file, positive=TEXT_LABEL in (r.labels or []))
                  for r in pool]
    encoded = encode_labelled(encoder, pool_items, settings)
    docs, labelled = encoded.vectors, encoded.labels
    cats = np.asarray([r.category for r in pool])
    base_rate = float(labelled.mean())

    rng = random.Random(0)
    queries: list[tuple[str, str, str]] = [
        ("category", f"an aerial photo of {c}", c) for c in data.categories]
    caps = [(r.captions[0], r.category) for r in pool]
    queries += [("caption", t, c) for t, c in rng.sample(caps, min(args.captions, len(caps)))]
    qvec = encoder.embed_texts([t for _, t, _ in queries]).vectors

    scales = [float(s) for s in args.scales.split(",")]
    rows: list[dict[str, float]] = []
    for scale in scales:
        per_kind: dict[str, list[tuple[float, float]]] = {"category": [], "caption": []}
        for (kind, _, cat), v in zip(queries, qvec, strict=True):
            steered = apply_steer(v, probe, scale)
            top = np.argsort(-(docs @ steered), kind="stable")[: args.k]
            per_kind[kind].append((float(labelled[top].mean()), float((cats[top] == cat).mean())))
        row: dict[str, float] = {"scale": scale}
        for kind, vals in per_kind.items():
            arr = np.asarray(vals)
            row[f"{kind}_labelled_share"] = float(arr[:, 0].mean())
            row[f"{kind}_precision"] = float(arr[:, 1].mean())
        rows.append(row)

    k = args.k
    print(f"\nindex: {len(pool)} images (val+test), {labelled.sum()} labelled "
          f"(base rate {base_rate:.3f}); {len(data.categories)} category prompts + "
          f"{len(queries) - len(data.categories)} caption queries; model {model}\n")
    print(f"| steer scale | labelled share in top {k} (category prompts) | category P@{k} | "
          f"labelled share in top {k} (caption queries) | category P@{k} (captions) |")
    print("|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['scale']:+g} | {r['category_labelled_share']:.3f} | "
              f"{r['category_precision']:.3f} | {r['caption_labelled_share']:.3f} | "
              f"{r['caption_precision']:.3f} |")
    for key in ("category_labelled_share", "caption_labelled_share"):
        series = [r[key] for r in rows]
        mono = all(b >= a for a, b in itertools.pairwise(series))
        print(f"{key}: {'monotonic non-decreasing' if mono else 'NOT monotonic'} in the scale")
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "probe": json.loads(probe.model_dump_json(exclude={"direction"})),
            "base_rate": base_rate, "pool": len(pool), "rows": rows, "model": str(model),
            "skipped": result.skipped}, indent=1))
    return 0


def _build_model(work: Path) -> Path:
    from clipsearch.training.demo_model import build_demo_model

    return build_demo_model(work / "model", dataset_dir=work / "model-data")


if __name__ == "__main__":
    raise SystemExit(main())
