"""``lab load --backend vm``: the load generator (vm_load) started and stopped on the host.

One process per service, its pid in the run directory, aimed at the service's ingress
published port on a node's address, so its connections go through the routing mesh.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from swarm_lab import daemons, host, vm_layout, vm_state
from swarm_lab.errors import LabError


def published_port(service: str) -> int:
    """The first ingress-published port of ``service`` (the load generator's target)."""
    with daemons.client(vm_layout.MANAGER) as c:
        found = [s for s in c.services.list(filters={"name": service}) if s.name == service]
        if not found:
            raise LabError(f"no service {service!r} on the VM lab")
        ports = found[0].attrs.get("Endpoint", {}).get("Ports") or []
    for port in ports:
        if port.get("PublishMode", "ingress") == "ingress" and port.get("PublishedPort"):
            return int(port["PublishedPort"])
    raise LabError(f"service {service!r} publishes no ingress port: add one (`--publish 8080:80`)")


def _pidfile(service: str) -> Path:
    return vm_layout.RUN_DIR / f"load-{service}.pid"


def set_load(
    service: str, connections: int = 0, rps: float = 0.0, duration_s: float = 600.0, node: int = 1
) -> None:
    """Hold ``connections`` open and offer ``rps`` requests/s to ``service``'s published port on
    node ``node`` (a host process, bounded by ``duration_s``); all zero stops it."""
    if connections < 0 or rps < 0:
        raise LabError(f"--connections and --rps must be >= 0, got {connections} and {rps}")
    target = vm_state.node(node)
    pidfile = _pidfile(service)
    running = host.read_pidfile(pidfile)
    if running is not None and host.is_alive(running):
        host.kill_and_wait([running], signal.SIGTERM)
    pidfile.unlink(missing_ok=True)
    if connections == 0 and rps == 0:
        return
    port = published_port(service)
    argv = [sys.executable, "-m", "swarm_lab.vm_load", "--host", target.ip, "--port", str(port)]
    argv += ["--connections", str(connections), "--rps", f"{rps:g}", "--duration", f"{duration_s:g}"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True)
    pidfile.write_text(f"{proc.pid}\n")


def stop_loads() -> None:
    for pidfile in vm_layout.RUN_DIR.glob("load-*.pid"):
        running = host.read_pidfile(pidfile)
        if running is not None and host.is_alive(running):
            host.kill_and_wait([running], signal.SIGKILL)
        pidfile.unlink(missing_ok=True)
