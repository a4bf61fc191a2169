"""What the ``lab`` verbs do the same way for both labs (netns and ``--backend vm``).

``up`` and ``down`` under the lab's SharedLab lock with the same holder rules, a LabError
turned into one line on stderr and exit status 1, and the shape of ``status`` and ``env``.
Each lab's module (cli, vm_cli) passes what differs: its lab, its words, its extra lines.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Any

from swarm_lab.errors import LabError
from swarm_lab.sessions import SharedLab

EXIT_OK = 0
EXIT_FAILED = 1


def guard(action: str, fn: Callable[[], object]) -> int:
    """``fn()``; a LabError becomes ``lab ACTION: message`` on stderr and exit status 1."""
    try:
        fn()
    except LabError as exc:
        print(f"lab {action}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def up(shared: SharedLab[Any], action: str, bring_up: Callable[[], object]) -> int:
    # The lock makes a concurrent pytest session wait instead of racing this up.
    with shared.lock():
        result = guard(action, bring_up)
        if result == EXIT_OK:
            shared.keep_up_after_holders()  # a person asked for it: no test session takes it down
        return result


def down(
    shared: SharedLab[Any],
    action: str,
    take_down: Callable[[], None],
    *,
    force: bool,
    when_idle: bool,
    label: str,
) -> int:
    """Take the lab down unless other processes hold it (then refuse, or with ``when_idle``
    leave it to the last of them; ``force`` takes it down anyway)."""
    started = time.monotonic()
    with shared.lock():
        holders = shared.other_live_holders()
        if holders and when_idle and not force:
            shared.take_down_after_holders()
            print(f"lab: {label} in use by {holders}; the last of them will take it down")
            return EXIT_OK
        if holders and not force:
            print(
                f"lab {action}: processes {holders} (pytest sessions?) are using the lab; "
                "wait for them, or use --when-idle or --force",
                file=sys.stderr,
            )
            return EXIT_FAILED
        result = guard(action, take_down)
    if result == EXIT_OK:
        print(f"lab: {label} down in {time.monotonic() - started:.1f}s")
    return result


def print_status(report: dict[str, Any], header: Iterable[str], broken: Iterable[str]) -> None:
    """A lab that is up: ``header`` lines, its swarm nodes, ``broken`` (per-node trouble), services."""
    print(f"Prometheus: {report['prometheus_url']}    manager: {report['manager_url']}")
    for line in header:
        print(line)
    if "error" in report:
        print(f"error: {report['error']}")
    for node in report.get("swarm_nodes", []):
        print(f"  node {node['hostname']:<10} {node['role']:<8} {node['state']:<8} {node['addr']}")
    for line in broken:
        print(f"  {line}")
    for service in report.get("services", []):
        print(f"  service {service['name']:<12} {service['running']}/{service['replicas']} running")


def print_env(action: str, read_info: Callable[[], Any], extra: Callable[[Any], Iterable[str]]) -> int:
    """The export lines a shell needs to drive the lab's manager and read its Prometheus."""
    try:
        info = read_info()
    except LabError as exc:
        print(f"lab {action}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"export DOCKER_HOST={info.manager_url}")
    print(f"export AUTOSCALER_PROMETHEUS__URL={info.prometheus_url}")
    for line in extra(info):
        print(line)
    return EXIT_OK
