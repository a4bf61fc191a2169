"""A real Prometheus on loopback scraping a real exporter, for source tests and the bench.

``Exporter`` serves a private prometheus_client registry on 127.0.0.1; ``RealPrometheus``
runs the Debian ``prometheus`` binary on a free loopback port with its own storage dir and a
1 s scrape interval, and can be stopped and started again on the same port and storage.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import start_wsgi_server
from timing import wait_until

PROMETHEUS_BINARY = shutil.which("prometheus") or "/usr/bin/prometheus"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class Exporter:
    """``app_load{service=...}`` gauges for any service names, served on 127.0.0.1."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.load = Gauge("app_load", "Load per service", ["service", "instance_id"], registry=self.registry)
        self.port = free_port()
        self._server, self._thread = start_wsgi_server(self.port, addr="127.0.0.1", registry=self.registry)

    def set(self, service: str, value: float, instance: str = "0") -> None:
        self.load.labels(service=service, instance_id=instance).set(value)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class RealPrometheus:
    def __init__(self, scrape_targets: list[str], *, scrape_interval: str = "1s") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="prom-test-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            # The scrape timeout defaults to the interval: an exporter of 10,000 series on a busy
            # machine can take longer than 1 s to answer, and a failed scrape empties every series.
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "app", "static_configs": [{"targets": scrape_targets}]}],
        }
        (self.dir / "prometheus.yml").write_text(json.dumps(config))  # JSON is YAML
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.dir / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [
                PROMETHEUS_BINARY,
                f"--config.file={self.dir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.dir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._ready, deadline=30, what=f"Prometheus ready on {self.url} (log {self.dir})")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _ready(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(
                f"Prometheus exited with {self.process.returncode}; see {self.dir}/prometheus.log"
            )
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=5) as response:
            result: list[dict[str, Any]] = json.load(response)["data"]["result"]
        return result

    def query_requests_served(self) -> int:
        """Instant queries Prometheus has answered, any status, from its own /metrics.

        Read from /metrics rather than through a query so that reading it does not count.
        """
        with urllib.request.urlopen(f"{self.url}/metrics", timeout=5) as response:
            text = response.read().decode()
        pattern = re.compile(
            r'^prometheus_http_requests_total\{[^}]*handler="/api/v1/query"[^}]*\} (\S+)$', re.M
        )
        return int(sum(float(v) for v in pattern.findall(text)))
