"""``swarm-autoscaler pause SERVICE [--replicas N]`` and ``resume SERVICE``.

They set and clear the pause labels (``autoscaler.paused``, ``pausedReplicas``, ``pausedBy``,
``pausedAt``) on the service's spec through the Docker API, with the same Version.Index
compare-and-swap as scaling: a concurrent ``docker service update`` is never overwritten.
A running controller sees the change on its next pass (the update's event wakes it).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import socket
import sys
from datetime import UTC, datetime
from typing import Any

from autoscaler.cli import EXIT_INPUT, EXIT_OK, add_docker_host
from autoscaler.errors import TargetError

EXAMPLES_PAUSE = """\
examples:
  swarm-autoscaler pause web                 # leave web's replica count as it is
  swarm-autoscaler pause web --replicas 0    # scale web to 0 once, then leave it there
  swarm-autoscaler pause mystack_web --by "ana (incident 42)"

The same as: docker service update --label-add autoscaler.paused=true web
(but with who/when recorded, and never racing another update of the service).
Undo with: swarm-autoscaler resume web
"""

EXAMPLES_RESUME = """\
examples:
  swarm-autoscaler resume web

The controller carries on from where its decision history stands: changes stay within the
policy's rate limits, there is no catch-up burst.
"""


def register(subparsers: Any) -> None:
    pause = subparsers.add_parser(
        "pause",
        help="stop autoscaling a service (optionally at N replicas) until resumed",
        description="Set the autoscaler.paused labels on a Swarm service (compare-and-swap).",
        epilog=EXAMPLES_PAUSE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pause.add_argument("service", metavar="SERVICE", help="the Swarm service name or id")
    pause.add_argument(
        "--replicas", type=_count, metavar="N", help="scale to N once, then hold (autoscaler.pausedReplicas)"
    )
    pause.add_argument("--by", help="who pauses it, shown in /decisions and explain (default: user@host)")
    add_docker_host(pause)
    pause.set_defaults(handler=handle_pause)
    resume = subparsers.add_parser(
        "resume",
        help="resume autoscaling a paused service",
        description="Remove the autoscaler.paused labels from a Swarm service (compare-and-swap).",
        epilog=EXAMPLES_RESUME,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    resume.add_argument("service", metavar="SERVICE", help="the Swarm service name or id")
    add_docker_host(resume)
    resume.set_defaults(handler=handle_resume)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def default_by() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = os.environ.get("USER", "unknown")
    return f"{user}@{socket.gethostname()}"


def handle_pause(args: argparse.Namespace) -> int:
    by = args.by or default_by()
    at = datetime.now(UTC)
    return asyncio.run(_run(args, "pause", by=by, at=at, replicas=args.replicas))


def handle_resume(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args, "resume"))


async def _run(args: argparse.Namespace, what: str, **options: Any) -> int:
    from autoscaler.reconciler import pausing
    from autoscaler.targets.docker_api import DockerApi, NotFoundError

    docker = DockerApi(args.docker_host)
    try:
        if what == "pause":
            written = await pausing.pause(docker, args.service, **options)
        else:
            written = await pausing.resume(docker, args.service)
    except NotFoundError:
        print(f"swarm-autoscaler {what}: no service {args.service!r} at {docker.where}", file=sys.stderr)
        return EXIT_INPUT
    except TargetError as exc:
        print(f"swarm-autoscaler {what}: {exc}", file=sys.stderr)
        return EXIT_INPUT
    finally:
        await docker.close()
    retries = (
        f" (after {written.attempts - 1} concurrent update(s) of the service)" if written.attempts > 1 else ""
    )
    if what == "pause":
        held = (
            f"scaled to {options['replicas']} once, then held" if options["replicas"] is not None else "held"
        )
        print(f"{args.service}: paused by {options['by']}; its replica count is {held}{retries}")
    else:
        print(f"{args.service}: resumed; the autoscaler governs it again from its next pass{retries}")
    return EXIT_OK
