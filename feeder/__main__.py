"""``python -m feeder feed|export ...``: the feeder's subcommands without the other areas'."""

from __future__ import annotations

import argparse
import logging
import sys

from pydantic import ValidationError

from clipsearch.errors import ClipsearchError
from clipsearch.validation_messages import describe
from feeder.commands import register


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m feeder")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except ValidationError as exc:
        print(f"feeder: invalid arguments:\n{describe(exc)}", file=sys.stderr)
        return 2
    except (ClipsearchError, FileNotFoundError, ValueError) as exc:
        print(f"feeder: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
