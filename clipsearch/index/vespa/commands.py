"""``clipsearch vespa package | lint | deploy``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from clipsearch.settings import Settings

DEFAULT_APP_DIR = Path("vespa-app")


def _package(args: argparse.Namespace) -> int:
    from clipsearch.index.vespa import package

    settings = Settings()
    dim = args.dim or settings.embedding_dim
    language = args.language or settings.vespa_language
    if args.check:
        diffs = package.differences(args.dir, dim, language)
        for d in diffs:
            print(f"{args.dir}/{d}", file=sys.stderr)
        if diffs:
            print("run `clipsearch vespa package` and commit the result", file=sys.stderr)
            return 1
        print(f"{args.dir} is up to date")
        return 0
    for path in package.write(args.dir, dim, language):
        print(f"wrote {path}")
    return 0


def _lint(args: argparse.Namespace) -> int:
    from clipsearch.index.vespa.lint import lint_package

    problems = lint_package(args.dir, args.dim)
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    print(f"{args.dir}: ok")
    return 0


def _deploy(args: argparse.Namespace) -> int:
    from clipsearch.index.vespa.change_actions import DeployNeedsAction
    from clipsearch.index.vespa.deploy import deploy

    settings = Settings()
    config_url = args.config_url or settings.vespa_config_url
    url = args.url or settings.vespa_url
    try:
        message = deploy(args.dir, config_url, url, wait_s=args.wait,
                         reindex_wait_s=args.reindex_wait)
    except DeployNeedsAction as exc:
        print(exc.message, file=sys.stderr)
        return 2
    print(message)
    print(f"Vespa is serving at {url}" if args.wait > 0 else "activated (not waiting)")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    vespa = sub.add_parser("vespa", help="Vespa application package: generate, lint, deploy")
    vsub = vespa.add_subparsers(dest="vespa_command", required=True, metavar="ACTION")

    p = vsub.add_parser("package", help="write vespa-app/ from the Python definition")
    p.add_argument("--dir", type=Path, default=DEFAULT_APP_DIR)
    p.add_argument("--dim", type=int, default=None, help="default: CLIPSEARCH_EMBEDDING_DIM")
    p.add_argument("--language", default=None,
                   help="the captions' language for set_language (default: "
                        "CLIPSEARCH_VESPA_LANGUAGE, en)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if the files differ from the generator's output")
    p.set_defaults(func=_package)

    p = vsub.add_parser("lint", help="check the package (bm25, HNSW, inputs, profiles)")
    p.add_argument("--dir", type=Path, default=DEFAULT_APP_DIR)
    p.add_argument("--dim", type=int, default=None, help="expected embedding dimension")
    p.set_defaults(func=_lint)

    p = vsub.add_parser("deploy", help="zip the package, activate it, wait for the container")
    p.add_argument("--dir", type=Path, default=DEFAULT_APP_DIR)
    p.add_argument("--config-url", default=None, help="default: CLIPSEARCH_VESPA_CONFIG_URL")
    p.add_argument("--url", default=None, help="default: CLIPSEARCH_VESPA_URL")
    p.add_argument("--wait", type=float, default=300.0,
                   help="seconds to wait for /ApplicationStatus (0: do not wait)")
    p.add_argument("--reindex-wait", type=float, default=0.0,
                   help="when the deploy needs a reindexing: seconds to wait for it (the "
                        "package is deployed again to start it); 0: report it and exit 0. "
                        "A restart or re-feed always exits 2 with what to do")
    p.set_defaults(func=_deploy)
