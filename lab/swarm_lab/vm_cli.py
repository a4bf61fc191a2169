"""``swarm-autoscaler lab ACTION --backend vm``: the lab verbs for the QEMU-node lab.

The parser lives with the netns verbs (cli/lab.py adds ``--backend`` to each); these are
the handlers it calls when ``--backend vm`` is given, plus ``lab exec``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable

from swarm_lab import vm_lab, vm_sessions
from swarm_lab.errors import LabError

EXIT_OK = 0
EXIT_FAILED = 1


def _guard(action: str, fn: Callable[[], object]) -> int:
    try:
        fn()
    except LabError as exc:
        print(f"lab {action} --backend vm: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def up(args: argparse.Namespace) -> int:
    with vm_sessions.lab_lock():
        result = _guard("up", lambda: vm_lab.up(args.nodes or 1))
        if result == EXIT_OK:
            vm_sessions.keep_up_after_holders()
        return result


def down(args: argparse.Namespace) -> int:
    started = time.monotonic()
    with vm_sessions.lab_lock():
        holders = vm_sessions.other_live_holders()
        if holders and args.when_idle and not args.force:
            vm_sessions.take_down_after_holders()
            print(f"lab: in use by {holders}; the last of them will take it down")
            return EXIT_OK
        if holders and not args.force:
            print(
                f"lab down --backend vm: processes {holders} are using the VM lab; "
                "wait for them, or use --when-idle or --force",
                file=sys.stderr,
            )
            return EXIT_FAILED
        result = _guard("down", vm_lab.down)
    if result == EXIT_OK:
        print(f"lab: VM lab down in {time.monotonic() - started:.1f}s")
    return result


def status(args: argparse.Namespace) -> int:
    report = vm_lab.status()
    if args.json:
        print(json.dumps(report, indent=2))
        return EXIT_OK
    if not report["up"]:
        print("VM lab: down")
        return EXIT_OK
    print(f"Prometheus: {report['prometheus_url']}    manager: {report['manager_url']}")
    print(f"accelerator: {report['accel']}")
    print(f"memory (QEMU processes, RSS): {report['memory_rss_mib']} MiB")
    if "error" in report:
        print(f"error: {report['error']}")
    for node in report.get("swarm_nodes", []):
        print(f"  node {node['hostname']:<10} {node['role']:<8} {node['state']:<8} {node['addr']}")
    for name, vm in report["vms"].items():
        if vm["qemu_pid"] is None or not vm["link_up"]:
            print(f"  {name}: qemu pid {vm['qemu_pid']}, link {'up' if vm['link_up'] else 'DOWN'}")
    for service in report.get("services", []):
        print(f"  service {service['name']:<12} {service['running']}/{service['replicas']} running")
    return EXIT_OK


def env(args: argparse.Namespace) -> int:
    try:
        info = vm_lab.info()
    except LabError as exc:
        print(f"lab env --backend vm: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"export DOCKER_HOST={info.manager_url}")
    print(f"export AUTOSCALER_PROMETHEUS__URL={info.prometheus_url}")
    print(f"export LAB_NODE_ADDRS='{' '.join(info.node_ips)}'")
    return EXIT_OK


def load(args: argparse.Namespace) -> int:
    return _guard(
        "load",
        lambda: vm_lab.set_load(
            args.service, connections=args.connections, rps=args.rps or 0.0, duration_s=args.duration
        ),
    )


def node_down(args: argparse.Namespace) -> int:
    return _guard("node-down", lambda: vm_lab.node_down(args.node, args.mode))


def node_up(args: argparse.Namespace) -> int:
    return _guard("node-up", lambda: vm_lab.node_up(args.node))


def exec_command(args: argparse.Namespace) -> int:
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    try:
        result = vm_lab.exec_on(args.node, argv, timeout=args.timeout)
    except LabError as exc:
        print(f"lab exec: {exc}", file=sys.stderr)
        return EXIT_FAILED
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


def register_exec(actions: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = actions.add_parser(
        "exec",
        help="run a command on a VM lab node (ipvsadm, iptables-save, /proc/net/ip_vs...)",
        description="Run CMD on node N of the VM lab through its QEMU guest agent; prints its "
        "output and exits with its status. Example: lab exec 1 -- nsenter "
        "--net=/var/run/docker/netns/ingress_sbox ipvsadm -Ln --stats",
    )
    parser.add_argument("node", type=int, help="node number, 1 is the manager")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARG...]")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    parser.set_defaults(handler=exec_command)
