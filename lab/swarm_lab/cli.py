"""``swarm-autoscaler lab``: the local multi-node Swarm + Prometheus test bed."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import swarm_lab as lab
from swarm_lab import sessions, verbs
from swarm_lab.verbs import EXIT_FAILED, EXIT_OK


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "lab",
        help="run a local multi-node Swarm with Prometheus and a sample app",
        description="A real N-node Docker Swarm in network namespaces on this machine (needs root).",
    )
    actions = parser.add_subparsers(dest="lab_action", metavar="ACTION", required=True)

    up = actions.add_parser("up", help="create the lab (a healthy lab is left as is)")
    up.add_argument(
        "--nodes", type=int, default=None, help="node count, 1 manager + N-1 workers (default 3; vm: 1)"
    )
    up.add_argument("--sample", action="store_true", help="also deploy the sample web app and loadgen")
    up.set_defaults(handler=_up)

    down_parser = actions.add_parser("down", help="remove everything the lab made (keeps the image cache)")
    down_parser.add_argument("--force", action="store_true", help="even if a test session still uses it")
    down_parser.add_argument(
        "--when-idle", action="store_true", help="if test sessions use it, the last one out takes it down"
    )
    down_parser.set_defaults(handler=_down)
    status = actions.add_parser("status", help="nodes, services, Prometheus URL")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_status)
    env_parser = actions.add_parser("env", help="print export lines for DOCKER_HOST and the Prometheus URL")
    env_parser.set_defaults(handler=_env)
    sample = actions.add_parser("deploy-sample", help="deploy the web service and an idle loadgen")
    sample.add_argument("--replicas", type=int, default=2)
    sample.add_argument("--work-ms", type=float, default=2.0, help="CPU milliseconds per request")
    sample.set_defaults(handler=_deploy_sample)

    load = actions.add_parser("load", help="set the offered load (requests/s) on a service")
    load.add_argument("--rps", type=float, default=None, help="requests per second; 0 stops the load")
    load.add_argument(
        "--connections",
        type=int,
        default=0,
        help="vm backend: connections held open through the published port",
    )
    load.add_argument("--service", default="web", help="target service on the lab overlay (default web)")
    load.add_argument("--duration", type=float, default=3600.0, help="seconds before the load stops")
    load.set_defaults(handler=_load)

    down = actions.add_parser("node-down", help="fail a node (for failure experiments)")
    down.add_argument("node", type=int, help="node number, 1 is the manager")
    down.add_argument("--mode", choices=("link", "kill", "stop"), default="link")
    down.set_defaults(handler=_node_down)
    node_up = actions.add_parser("node-up", help="repair a failed node")
    node_up.add_argument("node", type=int)
    node_up.set_defaults(handler=_node_up)
    from swarm_lab import vm_cli

    vm_cli.register_exec(actions)
    vm_handlers = {
        up: vm_cli.up,
        down_parser: vm_cli.down,
        status: vm_cli.status,
        env_parser: vm_cli.env,
        load: vm_cli.load,
        down: vm_cli.node_down,
        node_up: vm_cli.node_up,
    }
    for verb, vm_handler in vm_handlers.items():
        _add_backend_option(verb, vm_handler)
    demo = actions.add_parser(
        "demo",
        help="README's main job: a traffic spike absorbed by the autoscaler on the lab",
        description="Bring the lab up with the sample web service, run the autoscaler against it "
        "(policy swarm_lab/assets/demo-policy.yaml), offer a steady load, a spike, then the steady "
        "load again, and print what the controller saw and every scale action it took with its "
        "reason. With --backend vm: the routing mesh walk-through on the VM lab (round robin over "
        "a published port on every node, node 1's IPVS table and counters, the agent's view), then "
        "the autoscaler scaling on connections held through the port "
        "(policy swarm_lab/assets/demo-vm-policy.yaml), up and back down.",
    )
    demo.add_argument("--base-rps", type=float, default=30.0, help="netns: steady load, req/s (default 30)")
    demo.add_argument("--spike-rps", type=float, default=200.0, help="netns: spike load, req/s (default 200)")
    demo.add_argument("--interval", type=float, default=2.0, help="controller interval, s (default 2)")
    demo.add_argument("--keep", action="store_true", help="leave the lab running afterwards")
    demo.add_argument(
        "--nodes", type=int, default=2, help="vm: node count if the demo brings the lab up (default 2)"
    )
    demo.add_argument("--port", type=int, default=5080, help="vm: the published port (default 5080)")
    demo.set_defaults(handler=_demo)
    _add_backend_option(demo, vm_cli.demo)


def _add_backend_option(
    parser: argparse.ArgumentParser, vm_handler: Callable[[argparse.Namespace], int]
) -> None:
    parser.add_argument(
        "--backend",
        choices=("netns", "vm"),
        default="netns",
        help="netns: dockerd per network namespace (fast, no IPVS); vm: QEMU nodes with a real "
        "kernel, so the routing mesh runs (default netns)",
    )
    netns_handler = parser.get_default("handler")
    parser.set_defaults(handler=lambda args: (vm_handler if args.backend == "vm" else netns_handler)(args))


def _demo(args: argparse.Namespace) -> int:
    from swarm_lab.demo import DemoPlan, run_demo

    plan = DemoPlan(base_rps=args.base_rps, spike_rps=args.spike_rps, interval=args.interval)
    try:
        print("== lab: a 3-node Swarm in network namespaces, Prometheus, the sample web service")
        with sessions.NETNS_LAB.lock():
            info = lab.up(3, sample=True)
            sessions.NETNS_LAB.keep_up_after_holders()
        ok = run_demo(plan, info)
        if args.keep:
            print(
                "== the lab is still up (swarm-autoscaler lab status); remove it: swarm-autoscaler lab down"
            )
        else:
            print("== removing the lab (pass --keep to leave it up)")
            with sessions.NETNS_LAB.lock():
                if sessions.NETNS_LAB.other_live_holders():
                    sessions.NETNS_LAB.take_down_after_holders()
                else:
                    lab.down()
    except lab.LabError as exc:
        print(f"lab demo: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print("demo finished" if ok else "demo finished, but a phase timed out (see above)")
    return EXIT_OK if ok else EXIT_FAILED


def _up(args: argparse.Namespace) -> int:
    return verbs.up(sessions.NETNS_LAB, "up", lambda: lab.up(args.nodes or 3, sample=args.sample))


def _down(args: argparse.Namespace) -> int:
    return verbs.down(
        sessions.NETNS_LAB, "down", lab.down, force=args.force, when_idle=args.when_idle, label="netns lab"
    )


def _status(args: argparse.Namespace) -> int:
    report = lab.status()
    if args.json:
        print(json.dumps(report, indent=2))
    elif not report["up"]:
        print("lab: down")
    else:
        broken = [
            f"{name}: dockerd pid {daemon['pid']}, link {'up' if daemon['link_up'] else 'DOWN'}"
            for name, daemon in report["dockerd"].items()
            if daemon["pid"] is None or not daemon["link_up"]
        ]
        memory = f"memory (all lab processes, RSS): {report['memory_rss_mib']} MiB"
        verbs.print_status(report, [memory], broken)
    return EXIT_OK


def _env(args: argparse.Namespace) -> int:
    return verbs.print_env("env", lab.info, lambda info: [])


def _deploy_sample(args: argparse.Namespace) -> int:
    return verbs.guard("deploy-sample", lambda: lab.deploy_sample(args.replicas, args.work_ms))


def _load(args: argparse.Namespace) -> int:
    if args.rps is None:
        print("lab load: --rps is required", file=sys.stderr)
        return EXIT_FAILED
    return verbs.guard("load", lambda: lab.set_load(args.rps, args.service, args.duration))


def _node_down(args: argparse.Namespace) -> int:
    return verbs.guard("node-down", lambda: lab.node_down(args.node, args.mode))


def _node_up(args: argparse.Namespace) -> int:
    return verbs.guard("node-up", lambda: lab.node_up(args.node))
