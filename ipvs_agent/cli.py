"""``swarm-autoscaler ipvs-agent``: export this node's IPVS connection counters on /metrics."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from typing import Any

from autoscaler.observability.web_config import add_web_config_option

EXIT_OK = 0
EXIT_INPUT = 1

_EPILOG = """\
Run it on every node as a global service (it reads the node's own kernel):

  docker service create --name ipvs-agent --mode global \\
    --cap-add NET_ADMIN --cap-add SYS_ADMIN \\
    --mount type=bind,src=/var/run/docker/netns,dst=/var/run/docker/netns,readonly,bind-propagation=rslave \\
    --mount type=bind,src=/var/run/docker.sock,dst=/var/run/docker.sock \\
    --env NODE_NAME={{.Node.Hostname}} --network autoscaler \\
    IMAGE swarm-autoscaler ipvs-agent

The controller then reads tasks.ipvs-agent:9105 itself, or Prometheus scrapes the agents.
A node whose kernel has no IPVS serves swarm_ipvs_available 0 and logs one line saying why.
See docs/ipvs.md for the metrics and what each label means.
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ipvs-agent",
        help="export this node's Swarm IPVS connection counters as Prometheus metrics",
        description=(
            "Read IPVS in Swarm's load-balancer namespaces (ingress_sbox, lb_*) on every scrape, "
            "map fwmarks to services and backends to tasks, and serve the counters on /metrics."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--listen",
        default="0.0.0.0:9105",
        metavar="HOST:PORT",
        help="where to serve /metrics (default: %(default)s)",
    )
    parser.add_argument(
        "--netns-dir",
        default="/var/run/docker/netns",
        metavar="DIR",
        help="the host's Docker namespace directory, bind-mounted in (default: %(default)s)",
    )
    parser.add_argument(
        "--node-name",
        default=os.environ.get("NODE_NAME") or socket.gethostname(),
        metavar="NAME",
        help="value of the 'node' label (default: $NODE_NAME, else the hostname)",
    )
    parser.add_argument(
        "--docker-host",
        default="unix:///var/run/docker.sock",
        metavar="URL",
        help="engine asked for network inspect --verbose; 'none': no service names (default: %(default)s)",
    )
    parser.add_argument(
        "--min-interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="reuse a read for this long when scrapes come faster (default: %(default)s)",
    )
    add_web_config_option(parser, protects="/metrics", left_open="/healthz stays open")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from autoscaler.observability.web_config import WebConfigError, load_web_config
    from ipvs_agent.agent import IpvsCollector, parse_listen
    from ipvs_agent.netns import HostIpvs
    from ipvs_agent.swarm_records import docker_network_records

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        host, port = parse_listen(args.listen)
        web_config = load_web_config(args.web_config_file) if args.web_config_file else None
    except (ValueError, WebConfigError) as exc:
        print(f"swarm-autoscaler ipvs-agent: {exc}", file=sys.stderr)
        return EXIT_INPUT
    docker_host = None if args.docker_host == "none" else args.docker_host
    collector = IpvsCollector(
        HostIpvs(args.netns_dir),
        node=args.node_name,
        records=(lambda: docker_network_records(docker_host)) if docker_host else None,
        min_interval=args.min_interval,
    )
    collector.snapshot()  # log availability at start, not at the first scrape
    return asyncio.run(_serve(collector, host, port, web_config, args))


async def _serve(collector: Any, host: str, port: int, web_config: Any, args: argparse.Namespace) -> int:
    from ipvs_agent.http import AgentServer

    server = AgentServer(
        collector, host=host, port=port, web_config=web_config, min_interval=args.min_interval
    )
    try:
        await server.start()
    except OSError as exc:
        print(f"swarm-autoscaler ipvs-agent: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return EXIT_INPUT
    logging.getLogger(__name__).info(
        "serving /metrics and /healthz on %s:%s for node %s", host, server.port, args.node_name
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop()
    return EXIT_OK
