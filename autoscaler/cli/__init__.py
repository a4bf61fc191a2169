"""``swarm-autoscaler`` command line: one module per subcommand, plus plugins.

Each subcommand module has ``register(subparsers)`` which adds its parser and sets
``handler`` (a function ``(args) -> int``). The controller's own commands are listed below;
the programs shipped beside it (``ipvs-agent`` from ``ipvs_agent/``, ``lab`` from the
``swarm-autoscaler-lab`` distribution in ``lab/``) register the same way through the
entry-point group ``swarm_autoscaler.commands``, so the controller never imports them.
Exit codes: 0 ok, 1 policy/input error or a failed run, 2 usage error (argparse's own
convention), 70 an unexpected error: a bug, printed with its traceback (``EX_SOFTWARE`` of
sysexits.h). Python itself exits 1 on an uncaught exception, which CI could not tell from
"your policy has a problem".
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Any

from autoscaler import __version__

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_USAGE = 2
EXIT_CRASH = 70

PLUGIN_GROUP = "swarm_autoscaler.commands"


def add_docker_host(parser: argparse.ArgumentParser) -> None:
    """``--docker-host`` of the commands that talk to a manager's Docker API (run, pause, resume)."""
    parser.add_argument(
        "--docker-host", help="Docker API of a manager (default: $DOCKER_HOST or the local socket)"
    )


# Plugins people are told to run (README, docs, scripts) that may be absent, and how to get
# them: without this, argparse would answer "invalid choice", which reads like a typo.
KNOWN_PLUGINS = {
    "lab": (
        "run a local multi-node Swarm with Prometheus and a sample app (not installed)",
        "the lab is a developer tool, not part of the controller or its image. "
        "Install it from a checkout: pip install -e ./lab  (scripts/install.sh does it)",
    ),
}


def _register_builtins(subparsers: Any) -> None:
    # Imported here, not at the top: the modules import EXIT_* from this package.
    from autoscaler.cli import explain, pause, run, simulate, validate

    for module in (validate, simulate, run, explain, pause):  # the order of --help
        module.register(subparsers)


def _register_plugins(subparsers: Any) -> None:
    found = {ep.name: ep for ep in metadata.entry_points(group=PLUGIN_GROUP)}
    for name in sorted(found):
        register: Callable[[Any], None] = found[name].load()  # a broken plugin fails loudly
        register(subparsers)
    for name, (help_text, how_to_install) in KNOWN_PLUGINS.items():
        if name not in found:
            _register_missing(subparsers, name, help_text, how_to_install)


def _register_missing(subparsers: Any, name: str, help_text: str, how_to_install: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, add_help=False)
    parser.add_argument("rest", nargs=argparse.REMAINDER)

    def handler(_args: argparse.Namespace) -> int:
        print(f"swarm-autoscaler {name}: {how_to_install}", file=sys.stderr)
        return EXIT_INPUT

    parser.set_defaults(handler=handler)


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
    _register_builtins(subparsers)
    _register_plugins(subparsers)
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
    except Exception:
        traceback.print_exc()
        print(
            f"swarm-autoscaler {args.command}: internal error (a bug, not a problem in your input); "
            "please report it with the traceback above",
            file=sys.stderr,
        )
        return EXIT_CRASH
    return result
