"""``clipsearch vespa package | lint | deploy | capacity``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from clipsearch.settings import Settings

if TYPE_CHECKING:
    from clipsearch.index.vespa.binarized import BinarizedOptions
    from clipsearch.index.vespa.generation_schema import GenerationField
    from clipsearch.index.vespa.hosts import Topology

DEFAULT_APP_DIR = Path("vespa-app")


def _topology(args: argparse.Namespace) -> Topology | None:
    """The cluster shape when any multi-node option is given, else None (single node)."""
    from pydantic import ValidationError

    from clipsearch.index.vespa.hosts import Topology

    given = {k: v for k, v in (("nodes", args.nodes), ("redundancy", args.redundancy),
                               ("groups", args.groups), ("container_nodes", args.container_nodes),
                               ("config_servers", args.config_servers)) if v is not None}
    if not given:
        return None
    try:
        return Topology(**given)
    except ValidationError as exc:
        raise SystemExit("clipsearch vespa package: "
                         + "; ".join(str(e["msg"]) for e in exc.errors())) from None


def _generations(args: argparse.Namespace, settings: Settings) -> tuple[GenerationField, ...]:
    """The later index generations to give fields: ``--generation NAME=DIM`` and/or the
    catalog stored in the running Vespa (``--from-catalog``)."""
    from clipsearch.errors import ClipsearchError
    from clipsearch.index.vespa.generation_schema import GenerationField

    try:
        given = [GenerationField.parse(s) for s in args.generation or []]
    except (ValueError, ClipsearchError) as exc:
        raise SystemExit(f"clipsearch vespa package: {exc}") from None
    if args.from_catalog:
        from clipsearch.index.vespa.catalog import read_catalog_sync

        catalog = read_catalog_sync(settings)
        from clipsearch.index.vespa.generation_schema import later_generations

        given += [g for g in later_generations(catalog) if g.name not in {x.name for x in given}]
    return tuple(given)


def _binarized(args: argparse.Namespace, settings: Settings,
               dim: int) -> BinarizedOptions | None:
    """The binarised vector index's options, or None for the float HNSW index."""
    from clipsearch.index.vespa.binarized import BinarizedOptions

    if (args.vector_index or settings.vespa_vector_index) != "binarized":
        return None
    if dim % 8:
        raise SystemExit(f"clipsearch vespa package: a binarised vector index packs 8 "
                         f"dimensions per int8 cell; {dim} is not divisible by 8")
    return BinarizedOptions(candidates=settings.vespa_binarized_candidates,
                            paged=settings.vespa_binarized_paged)


def _package(args: argparse.Namespace) -> int:
    from clipsearch.index.vespa import hosts, package

    settings = Settings()
    dim = args.dim or settings.embedding_dim
    language = args.language or settings.vespa_language
    cell_type = args.cell_type or settings.vespa_cell_type
    topology = _topology(args)
    generations = _generations(args, settings)
    binarized = _binarized(args, settings, dim)
    files = (hosts.render(topology, dim, language, cell_type, generations, binarized)
             if topology is not None
             else package.render(dim, language, cell_type, generations, binarized))
    if args.check:
        diffs = hosts.differences(args.dir, files)
        for d in diffs:
            print(f"{args.dir}/{d}", file=sys.stderr)
        if diffs:
            print("run `clipsearch vespa package` (same options) and commit the result",
                  file=sys.stderr)
            return 1
        print(f"{args.dir} is up to date")
        return 0
    for path in hosts.write(args.dir, files):
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


def _capacity(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from clipsearch.index.vespa.capacity import CapacityInput, estimate, report

    try:
        inp = CapacityInput(docs=args.docs, dim=args.dim or Settings().embedding_dim,
                            cell_type=args.cell_type, redundancy=args.redundancy,
                            rerank_cell_type=args.rerank_cell_type, paged=not args.in_memory,
                            groups=args.groups, max_links=args.max_links, qps=args.qps,
                            group_qps=args.group_qps, caption_bytes=args.caption_bytes)
    except ValidationError as exc:
        raise SystemExit("clipsearch vespa capacity: "
                         + "; ".join(str(e["msg"]) for e in exc.errors())) from None
    print(report(inp, estimate(inp)))
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
    p.add_argument("--cell-type", default=None, choices=["float", "bfloat16"],
                   help="the embedding field's cells (default: CLIPSEARCH_VESPA_CELL_TYPE, "
                        "float); bfloat16 halves the vectors' memory")
    p.add_argument("--vector-index", default=None, choices=["float", "binarized"],
                   help="HNSW on the float vectors, or on their sign bits (int8, hamming) "
                        "with the full vectors re-ranked (default: "
                        "CLIPSEARCH_VESPA_VECTOR_INDEX, float)")
    p.add_argument("--check", action="store_true",
                   help="write nothing; exit 1 if the files differ from the generator's output")
    p.add_argument("--generation", action="append", metavar="NAME=DIM",
                   help="a later index generation: adds the field embedding_NAME "
                        "(tensor of DIM) and the profiles <profile>-NAME (repeatable)")
    p.add_argument("--from-catalog", action="store_true",
                   help="add the generations recorded in the running Vespa's catalog "
                        "(CLIPSEARCH_VESPA_URL); a dropped generation's field is left out")
    cluster = p.add_argument_group(
        "multi-node cluster (any of these writes services.xml + hosts.xml for a cluster)")
    cluster.add_argument("--nodes", type=int, default=None, help="content nodes (default 2)")
    cluster.add_argument("--redundancy", type=int, default=None,
                         help="min-redundancy: copies of each document (default 2)")
    cluster.add_argument("--groups", type=int, default=None,
                         help="content groups, each with a full copy (default 1)")
    cluster.add_argument("--container-nodes", type=int, default=None,
                         help="container nodes for queries and feeding (default 1)")
    cluster.add_argument("--config-servers", type=int, default=None,
                         help="config servers: 1, 3 or 5 (default 1)")
    p.set_defaults(func=_package)

    p = vsub.add_parser("capacity", help="memory, disk and content nodes for N images "
                        "(an estimate from Vespa's sizing guidance)")
    p.add_argument("--docs", type=int, required=True, help="number of images")
    p.add_argument("--dim", type=int, default=None, help="default: CLIPSEARCH_EMBEDDING_DIM")
    p.add_argument("--cell-type", default="float",
                   choices=["float", "bfloat16", "int8", "binary"])
    p.add_argument("--rerank-cell-type", default="float", choices=["float", "bfloat16"],
                   help="binary: cell type of the full vectors kept for the re-rank")
    p.add_argument("--in-memory", action="store_true",
                   help="binary: keep the full vectors in memory instead of paged")
    p.add_argument("--redundancy", type=int, default=2)
    p.add_argument("--groups", type=int, default=1)
    p.add_argument("--max-links", type=int, default=16, help="HNSW max-links-per-node")
    p.add_argument("--caption-bytes", type=int, default=300,
                   help="average length of an image's joined captions")
    p.add_argument("--qps", type=float, default=None, help="queries per second to serve")
    p.add_argument("--group-qps", type=float, default=None,
                   help="measured QPS of one group (with --qps: groups needed)")
    p.set_defaults(func=_capacity)

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
