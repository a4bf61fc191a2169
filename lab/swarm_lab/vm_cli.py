"""``swarm-autoscaler lab ACTION --backend vm``: the lab verbs for the QEMU-node lab.

The parser lives with the netns verbs (cli/lab.py adds ``--backend`` to each); these are
the handlers it calls when ``--backend vm`` is given, plus ``lab exec``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from swarm_lab import verbs, vm_lab, vm_sessions
from swarm_lab.errors import LabError
from swarm_lab.verbs import EXIT_FAILED, EXIT_OK


def _guard(action: str, fn: Callable[[], object]) -> int:
    return verbs.guard(f"{action} --backend vm", fn)


def up(args: argparse.Namespace) -> int:
    return verbs.up(vm_sessions.VM_LAB, "up --backend vm", lambda: vm_lab.up(args.nodes or 1))


def down(args: argparse.Namespace) -> int:
    return verbs.down(
        vm_sessions.VM_LAB,
        "down --backend vm",
        vm_lab.down,
        force=args.force,
        when_idle=args.when_idle,
        label="VM lab",
    )


def status(args: argparse.Namespace) -> int:
    report = vm_lab.status()
    if args.json:
        print(json.dumps(report, indent=2))
    elif not report["up"]:
        print("VM lab: down")
    else:
        header = [
            f"accelerator: {report['accel']}    guests read the code of: {report['guest_source']}",
            f"memory (QEMU processes, RSS): {report['memory_rss_mib']} MiB",
        ]
        broken = [
            f"{name}: qemu pid {vm['qemu_pid']}, link {'up' if vm['link_up'] else 'DOWN'}"
            for name, vm in report["vms"].items()
            if vm["qemu_pid"] is None or not vm["link_up"]
        ]
        verbs.print_status(report, header, broken)
    return EXIT_OK


def env(args: argparse.Namespace) -> int:
    return verbs.print_env(
        "env --backend vm", vm_lab.info, lambda info: [f"export LAB_NODE_ADDRS='{' '.join(info.node_ips)}'"]
    )


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


def demo(args: argparse.Namespace) -> int:
    from swarm_lab.vm_demo import VmDemoPlan, lab_for_demo, run_vm_demo

    plan = VmDemoPlan(port=args.port, interval=args.interval)
    try:
        with vm_sessions.VM_LAB.lock():
            info, started = lab_for_demo(args.nodes)
            if started:  # a test session finishing meanwhile must not take it down under the demo
                vm_sessions.VM_LAB.keep_up_after_holders()
        print(f"== VM lab: {info.nodes} QEMU node(s) with a real kernel ({info.accel}), {info.node_ips}")
        ok = run_vm_demo(plan, info)
        if not started or args.keep:
            print("== the VM lab is still up (lab status --backend vm); remove it: lab down --backend vm")
        else:
            print("== removing the VM lab the demo brought up (pass --keep to leave it up)")
            with vm_sessions.VM_LAB.lock():
                if vm_sessions.VM_LAB.other_live_holders():
                    vm_sessions.VM_LAB.take_down_after_holders()
                else:
                    vm_lab.down()
    except LabError as exc:
        print(f"lab demo --backend vm: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print("demo finished" if ok else "demo finished, but a phase did not (see above)")
    return EXIT_OK if ok else EXIT_FAILED


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
