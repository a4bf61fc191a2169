"""The real controller against the lab, for the end-to-end tests and the spike benchmark.

``ControllerProcess`` runs ``swarm-autoscaler run`` as a subprocess (JSON logs to a file,
HTTP on a free loopback port); its history comes from its own log lines (``decision``,
``action``, ``conflict``...), which carry the controller's timestamps, and its present
from ``/decisions``. ``LabServices`` creates uniquely named web and load-generator services
on the lab Swarm and removes them all at the end. ``timing.wait_until`` polls a probe with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
from timing import wait_until

from swarm_lab import create_service, scrape_labels

T = TypeVar("T")

# Requests to the app's work path per second over the whole service. ``or vector(0)``: the
# app exports the path="/" series only after its first request, and an idle service must
# read 0 (scale-down allowed), not "no data" (scale-down forbidden).
RATE_QUERY = 'sum(rate(http_requests_total{service="{{ service }}",path="/"}[5s])) or vector(0)'
WEB_PORT = 8000
TOLERANCE = 0.1  # the policy default (HPA's); PolicyFile leaves it out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique(prefix: str) -> str:
    """A service name no concurrent test session uses."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class PolicyFile:
    """One policy on the sample app's request rate, with windows short enough for a test."""

    service: str
    min_replicas: int = 1
    max_replicas: int = 6
    per_replica_rps: float = 10.0
    scale_down_window: int = 15
    query: str = RATE_QUERY

    @property
    def name(self) -> str:
        return f"e2e-{self.service}"

    def yaml(self) -> str:
        return (
            "apiVersion: autoscaler.swarm/v1\n"
            "kind: ScalingPolicy\n"
            f"metadata:\n  name: {self.name}\n"
            "spec:\n"
            f"  service: {self.service}\n"
            f"  minReplicas: {self.min_replicas}\n"
            f"  maxReplicas: {self.max_replicas}\n"
            "  metrics:\n"
            "    - name: requests_per_second\n"
            f"      prometheus:\n        query: '{self.query}'\n"
            f"      target:\n        averageValue: {self.per_replica_rps:g}\n"
            "  behavior:\n"
            f"    scaleDown:\n      stabilizationWindowSeconds: {self.scale_down_window}\n"
            # Panic has its own 60 s no-scale-down window; these tests are about HPA's rules.
            "  panic:\n    enabled: false\n"
        )

    def scales_up_at(self, value: float, running: int) -> bool:
        """Whether ``value`` asks for more than ``running`` replicas, computed as the engine
        does (tracking.py, HPA's ``|1 - ratio| > tolerance``): 11.0 against 10 per replica
        is outside a 0.1 tolerance in floating point, and the controller does scale on it."""
        per_replica = value / running
        return (
            per_replica > self.per_replica_rps and abs(1.0 - per_replica / self.per_replica_rps) > TOLERANCE
        )

    def write(self, directory: Path) -> Path:
        path = directory / f"{self.service}.yaml"
        # Write then rename, so the controller's per-tick reload never reads half a file.
        scratch = directory / f".{self.service}.tmp"
        scratch.write_text(self.yaml())
        scratch.replace(path)
        return path


def log_time(entry: dict[str, Any]) -> float:
    """Unix seconds of a JSON log line's ``time`` (the controller's clock when it logged)."""
    return datetime.fromisoformat(str(entry["time"])).timestamp()


class ControllerProcess:
    """``swarm-autoscaler run`` against the lab, stopped by ``stop()`` (SIGTERM, then kill)."""

    def __init__(
        self,
        *,
        policies: Path,
        docker_host: str,
        prometheus_url: str,
        workdir: Path,
        interval: float = 1.0,
        extra: Sequence[str] = (),
    ) -> None:
        self.interval = interval
        self.port = free_port()
        self.log_path = workdir / f"controller-{self.port}.log"
        self._log = self.log_path.open("wb")
        command = [
            sys.executable, "-m", "autoscaler", "run",
            "--policies", str(policies),
            "--docker-host", docker_host,
            "--prometheus-url", prometheus_url,
            "--interval", f"{interval:g}",
            "--listen", f"127.0.0.1:{self.port}",
            "--log-format", "json",
            # Every decision, unchanged ones too (INFO has only changes, holds and failures):
            # the tests read the controller's history from its log.
            "--log-level", "DEBUG",
            *extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            wait_until(
                self._passed_once, deadline=60, what=f"the controller's first pass (log {self.log_path})"
            )
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _get(self, path: str) -> dict[str, Any] | None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"the controller exited with {self.process.returncode}; log: {self.log_path}\n"
                + self.log_path.read_text(errors="replace")[-3000:]
            )
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as response:
                body: dict[str, Any] = json.loads(response.read())
                return body
        except urllib.error.HTTPError as error:  # /healthz and /readyz answer 503 with a body
            failed: dict[str, Any] = json.loads(error.read())
            return failed
        except (urllib.error.URLError, OSError):
            return None

    def _passed_once(self) -> bool:
        health = self._get("/healthz")
        return health is not None and int(health.get("passes", 0)) > 0

    def decisions(self) -> dict[str, Any]:
        body = wait_until(lambda: self._get("/decisions"), deadline=20, what=f"{self.url}/decisions")
        return body

    def record(self, service: str) -> dict[str, Any] | None:
        """The service's last record in /decisions (None: not governed, or not reached yet)."""
        found: dict[str, Any] | None = self.decisions()["services"].get(service)
        return found

    def log_entries(self) -> Iterator[dict[str, Any]]:
        self._log.flush()
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut in the middle of being written
            if isinstance(entry, dict):
                yield entry

    def events(self, event: str, service: str | None = None, *, since: float = 0.0) -> list[dict[str, Any]]:
        """Log entries of one ``event`` kind (for ``service``), at or after ``since``, in order."""
        return [
            e
            for e in self.log_entries()
            if e.get("event") == event
            and (service is None or e.get("service") == service)
            and log_time(e) >= since
        ]

    def conflicts(self, service: str) -> list[dict[str, Any]]:
        # The conflict line names its service only in the message ("name: version conflict...").
        return [e for e in self.events("conflict") if str(e.get("message", "")).startswith(f"{service}:")]

    def wait_action(
        self, service: str, *, since: float, deadline: float, to: Callable[[int, int], bool], what: str
    ) -> dict[str, Any]:
        """The first ``scaled`` action of ``service`` logged at or after ``since`` with ``to(from, to)``."""

        def probe() -> dict[str, Any] | None:
            for entry in self.events("action", service, since=since):
                if entry.get("action") == "scaled" and to(int(entry["from"]), int(entry["to"])):
                    return entry
            return None

        return wait_until(probe, deadline=deadline, what=f"the controller scaling {service} {what}")

    def passes(self) -> int:
        health = wait_until(lambda: self._get("/healthz"), deadline=20, what=f"{self.url}/healthz")
        return int(health["passes"])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class LabServices:
    """Services one test creates on the lab Swarm, all removed by ``remove_all``."""

    def __init__(self, manager_url: str, images: dict[str, str]) -> None:
        self.manager_url = manager_url
        self.client = docker.DockerClient(base_url=manager_url, timeout=30)
        # Tagged as the docker CLI would write them: `docker service scale` rewrites an untagged
        # "lab/web" as "lab/web:latest", a task template change that starts a rolling update.
        self.images = {key: image if ":" in image else f"{image}:latest" for key, image in images.items()}
        self.created: list[str] = []

    def web(self, name: str, replicas: int) -> Any:
        """The sample app (2 ms of CPU per request), scraped by the lab Prometheus."""
        self.created.append(name)
        return create_service(
            self.client,
            name,
            self.images["web"],
            replicas=replicas,
            env={"WORK_MS": "2"},
            labels=scrape_labels(WEB_PORT),
        )

    def load(self, target: str, rps: float, name: str | None = None) -> str:
        """A load generator offering ``rps`` requests/s to ``target``'s tasks; its service name."""
        name = name or f"{target}-load"
        self.created.append(name)
        create_service(
            self.client,
            name,
            self.images["loadgen"],
            env={"RATE": f"{rps:g}", "TARGET": target, "DURATION": "900"},
            restart_condition="on-failure",
        )
        return name

    def service(self, name: str) -> Any:
        return self.client.services.get(name)

    def scale_by_hand(self, name: str, replicas: int) -> None:
        """``docker service scale``, as an operator would: only Replicas changes (the SDK's
        ``Service.scale`` rewrites the task template too, which starts a rolling update)."""
        subprocess.run(
            ["docker", "-H", self.manager_url, "service", "scale", "--detach", f"{name}={replicas}"],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def spec_replicas(self, name: str) -> int:
        return int(self.service(name).attrs["Spec"]["Mode"]["Replicated"]["Replicas"])

    def running(self, name: str) -> int:
        tasks = self.service(name).tasks(filters={"desired-state": "running"})
        return sum(t["Status"]["State"] == "running" for t in tasks)

    def wait_running(self, name: str, count: int, deadline: float = 90) -> None:
        wait_until(
            lambda: self.running(name) == count,
            deadline=deadline,
            what=f"{count} running task(s) of {name}",
        )

    def remove(self, name: str) -> None:
        with contextlib.suppress(docker.errors.NotFound):
            self.service(name).remove()
        if name in self.created:
            self.created.remove(name)

    def remove_all(self) -> None:
        for name in reversed(list(self.created)):
            self.remove(name)
        self.client.close()


def prometheus_value(prometheus_url: str, promql: str) -> float | None:
    """An instant query's single value (None: no series, or Prometheus not answering)."""
    url = f"{prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            result = json.load(response)["data"]["result"]
    except (urllib.error.URLError, OSError, ValueError, KeyError):
        return None
    return float(result[0]["value"][1]) if result else None


def prometheus_series(
    prometheus_url: str, promql: str, start: float, end: float, step: float = 0.1
) -> list[tuple[float, float]]:
    """A range query: (timestamp, value) pairs, as Prometheus evaluated them every ``step`` s.

    An instant query the controller sent at time t reads what the range query reads at t
    (both see the samples stamped up to t), so a fine step places a threshold crossing
    within ``step`` of the first instant a controller's query could have seen it.
    """
    params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    url = f"{prometheus_url}/api/v1/query_range?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=10) as response:
        result = json.load(response)["data"]["result"]
    return [(float(t), float(v)) for t, v in result[0]["values"]] if result else []


def rate_of(service: str) -> str:
    """The policy query for ``service`` with the template filled in, for checks from the test side."""
    return RATE_QUERY.replace("{{ service }}", service)
