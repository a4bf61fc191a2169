"""``swarm-autoscaler`` command line: one module per subcommand.

Each subcommand module has ``register(subparsers)`` which adds its parser and sets
``handler`` (a function ``(args) -> int``). Exit codes: 0 ok, 1 policy/input error or a
failed run, 2 usage error (argparse's own convention).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from autoscaler import __version__

# Order here is the order in --help.
SUBCOMMANDS = ("validate", "simulate", "run", "explain", "lab", "ipvs_agent")

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarm-autoscaler",
        description=(
            "Autoscale Docker Swarm services from Prometheus and IPVS metrics, "
            "with Kubernetes-HPA semantics declared in YAML policies."
        ),
        epilog="Run 'swarm-autoscaler COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"autoscaler.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"autoscaler.cli.{name}":
                raise
            continue  # subcommand not built yet
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        result: int = handler(args)
    except KeyboardInterrupt:
        return 130
    return result
