"""``clipsearch probe train`` and ``clipsearch probe list``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from clipsearch.errors import InvalidRequest
from clipsearch.settings import Settings


def _train(args: argparse.Namespace) -> int:
    from clipsearch.steering.fit import FitOptions
    from clipsearch.steering.labels import from_folders, from_labels_file
    from clipsearch.steering.train import TrainRequest, train_probe

    settings = Settings()
    if args.model:
        settings = settings.model_copy(update={"model": args.model})
    attribute = args.attribute or args.name
    if args.labels:
        items = from_labels_file(Path(args.labels), attribute)
    elif args.positives and args.negatives:
        items = from_folders(Path(args.positives), Path(args.negatives))
    else:
        raise InvalidRequest("give --labels FILE, or both --positives DIR and --negatives DIR")
    request = TrainRequest(name=args.name, attribute=attribute, overwrite=not args.no_overwrite,
                           fit=FitOptions(test_fraction=args.test_fraction, c=args.c,
                                          seed=args.seed))
    result = train_probe(settings, request, items)
    q = result.probe.quality
    print(f"probe {result.probe.name!r} ({result.probe.attribute}) on {result.probe.model_id}: "
          f"held-out accuracy {q.accuracy:.3f} (balanced {q.balanced_accuracy:.3f}, "
          f"{q.n_test} images; trained on {q.n_train}); "
          f"{result.probe.n_positive} positive / {result.probe.n_negative} negative; "
          f"{len(result.skipped)} skipped -> {result.path}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from clipsearch.steering.store import ProbeStore

    store = ProbeStore(Settings())
    rows: list[dict[str, object]] = []
    for name in store.names():
        try:
            p = store.read(name)
        except InvalidRequest as exc:
            rows.append({"name": name, "error": exc.message})
            continue
        rows.append({"name": p.name, "attribute": p.attribute, "model_id": p.model_id,
                     "dim": p.dim, "accuracy": round(p.quality.accuracy, 4),
                     "n": p.n_positive + p.n_negative, "created": p.created.isoformat()})
    if args.json:
        print(json.dumps(rows, indent=1))
    elif not rows:
        print(f"no probes in {store.directory}")
    else:
        for r in rows:
            if "error" in r:
                print(f"{r['name']}: unreadable ({r['error']})")
            else:
                print(f"{r['name']}\t{r['attribute']}\tacc {r['accuracy']}\tn {r['n']}\t"
                      f"{r['dim']}-d\t{r['model_id']}\t{r['created']}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("probe", help="linear probes for query steering (train, list)")
    psub = p.add_subparsers(dest="probe_command", required=True, metavar="ACTION")

    t = psub.add_parser(
        "train", help="fit a linear probe for a binary image attribute",
        description="Encode labelled images with the model (CLIPSEARCH_MODEL or --model), fit "
        "a logistic regression on the unit embeddings, report held-out accuracy and save the "
        "unit direction to <data_dir>/probes/<name>.json.")
    t.add_argument("--name", required=True, help="probe name (letters, digits, _ . -)")
    t.add_argument("--attribute", default=None,
                   help="attribute name; with --labels, the label that marks a positive "
                   "(default: the probe name)")
    t.add_argument("--positives", default=None, help="folder of images WITH the attribute")
    t.add_argument("--negatives", default=None, help="folder of images WITHOUT it")
    t.add_argument("--labels", default=None,
                   help="JSONL/CSV with file + label (bool) or labels (list) per image")
    t.add_argument("--model", default=None, help="model id or folder (default: settings)")
    t.add_argument("--test-fraction", type=float, default=0.25)
    t.add_argument("--c", type=float, default=1.0, help="inverse L2 regularisation")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--no-overwrite", action="store_true", help="fail if the probe exists")
    t.set_defaults(func=_train)

    ls = psub.add_parser("list", help="list the stored probes")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)
