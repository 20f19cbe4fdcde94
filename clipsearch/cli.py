"""The ``clipsearch`` command: one entry point, one subcommand per job.

Each area registers its own subcommands (``register(subparsers)``) so this module only wires.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from clipsearch import __version__
from clipsearch.errors import ClipsearchError
from clipsearch.settings import Settings
from clipsearch.validation_messages import describe

Registrar = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


def _settings_with_port(field: str, port: int | None) -> Settings:
    """Settings from the environment, with ``--port`` (validated like the variable) on top."""
    return Settings.model_validate({field: port}) if port else Settings()


def _serve(args: argparse.Namespace) -> int:
    settings = _settings_with_port("api_port", args.port)  # bad settings fail before the import
    from services.api.server import serve

    serve(settings)
    return 0


def _encoder(args: argparse.Namespace) -> int:
    settings = _settings_with_port("encoder_port", args.port)
    from services.encoder.app import serve

    serve(settings)
    return 0


def _demo(args: argparse.Namespace) -> int:
    from clipsearch.demo import DemoOptions, run_demo

    return run_demo(DemoOptions(model=args.model, manifest=args.manifest, port=args.port,
                                serve=not args.no_serve, fresh=args.fresh))


def _register_core(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the search API and web page")
    p.add_argument("--port", type=int, default=None, help="default: CLIPSEARCH_API_PORT")
    p.set_defaults(func=_serve)

    p = sub.add_parser("encoder", help="run the CLIP encoder service")
    p.add_argument("--port", type=int, default=None, help="default: CLIPSEARCH_ENCODER_PORT")
    p.set_defaults(func=_encoder)

    p = sub.add_parser("demo", help="build a demo model and dataset, feed them, serve the API")
    p.add_argument("--model", default=None, help="model id or dir (default: build the demo model)")
    p.add_argument("--manifest", default=None,
                   help="generic JSONL manifest (default: generate the demo dataset)")
    p.add_argument("--port", type=int, default=None)
    p.add_argument("--no-serve", action="store_true", help="feed, then exit")
    p.add_argument("--fresh", action="store_true", help="rebuild the demo index from scratch")
    p.set_defaults(func=_demo)


def _registrars() -> list[Registrar]:
    from clipsearch.evaluation.commands import register as register_eval
    from clipsearch.index.check_commands import register as register_index
    from clipsearch.index.generation_commands import register as register_generations
    from clipsearch.index.vespa.commands import register as register_vespa
    from clipsearch.steering.commands import register as register_probe
    from clipsearch.training.commands import register as register_training
    from feeder.commands import register as register_feeder
    from feeder.reindex import register as register_reindex

    return [_register_core, register_feeder, register_vespa, register_eval, register_training,
            register_probe, register_index, register_reindex, register_generations]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipsearch",
        description="Hybrid text + image search over captioned image collections. "
        "Settings come from CLIPSEARCH_* environment variables.",
    )
    parser.add_argument("--version", action="version", version=f"clipsearch {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except ValidationError as exc:
        print(f"clipsearch: invalid settings or arguments:\n{describe(exc)}", file=sys.stderr)
        return 2
    except ClipsearchError as exc:
        print(f"clipsearch: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("clipsearch: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
