"""The VM lab's Prometheus: a host process on the lab bridge scraping the agents and engines.

On the host rather than as a swarm service: under TCG a Python-based image costs minutes to
load into a guest, while the host's Debian binary starts in a second. Its data is in the
run directory (tmpfs), so ``down`` removes it with everything else.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Sequence

from swarm_lab import host, vm_layout
from swarm_lab.errors import LabError
from swarm_lab.vm_layout import VmNode

PIDFILE = vm_layout.PROMETHEUS_DIR / "prometheus.pid"
CONFIG = vm_layout.PROMETHEUS_DIR / "prometheus.yml"


def config(nodes: Sequence[VmNode]) -> str:
    """The agents (IPVS) and dockerd's own metrics, every 5 s: a TCG guest answers a scrape in
    0.5-20 s on a busy host, and 1 s scrapes (the netns lab's) kept its agent saturated."""
    jobs = {
        "ipvs-agent": [f"{n.ip}:{vm_layout.AGENT_PORT}" for n in nodes],
        "dockerd": [f"{n.ip}:{vm_layout.DOCKER_METRICS_PORT}" for n in nodes],
    }
    document = {
        "global": {"scrape_interval": "5s", "scrape_timeout": "4s", "evaluation_interval": "5s"},
        "scrape_configs": [
            {"job_name": name, "static_configs": [{"targets": targets}]} for name, targets in jobs.items()
        ],
    }
    return json.dumps(document, indent=2)  # YAML is a superset of JSON


def pid() -> int | None:
    found = host.read_pidfile(PIDFILE)
    return found if found is not None and host.is_alive(found) else None


def ensure_running(nodes: Sequence[VmNode]) -> None:
    vm_layout.PROMETHEUS_DIR.mkdir(parents=True, exist_ok=True)
    wanted = config(nodes)
    if pid() is not None and CONFIG.exists() and CONFIG.read_text() == wanted:
        return
    stop()
    CONFIG.write_text(wanted)
    with (vm_layout.PROMETHEUS_DIR / "prometheus.log").open("ab") as log:
        proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={CONFIG}",
                f"--storage.tsdb.path={vm_layout.PROMETHEUS_DIR / 'data'}",
                f"--web.listen-address={vm_layout.BRIDGE_IP}:{vm_layout.PROMETHEUS_PORT}",
                "--storage.tsdb.retention.time=2h",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    PIDFILE.write_text(f"{proc.pid}\n")
    wait_ready()


def wait_ready(timeout: float = 60.0) -> None:
    error = host.wait_http_ok(f"{vm_layout.PROMETHEUS_URL}/-/ready", timeout=timeout)
    if error is not None:
        raise LabError(
            f"the VM lab's Prometheus at {vm_layout.PROMETHEUS_URL} not ready after {timeout:.0f}s "
            f"({error}); see {vm_layout.PROMETHEUS_DIR / 'prometheus.log'}"
        )


def stop() -> None:
    running = pid()
    if running is not None and host.kill_and_wait([running], signal.SIGTERM, timeout=15.0):
        host.kill_and_wait([running], signal.SIGKILL)
    PIDFILE.unlink(missing_ok=True)
