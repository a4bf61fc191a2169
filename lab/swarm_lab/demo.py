"""The README's main job: a traffic spike absorbed by the autoscaler on a real lab Swarm.

Brings the lab up with the sample ``web`` service and its load generator, starts the real
controller (``swarm-autoscaler run``) as a subprocess against the lab's manager and
Prometheus, offers a steady load, then a spike, then the steady load again, and prints what
the controller saw and did every few seconds, then every scale action it took with its
reason. Nothing here is simulated: the load is real HTTP requests between containers.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoscaler.policy_sources.loader import load_file
from swarm_lab import LabError, LabInfo, layout, set_load

DEMO_POLICY = layout.DEMO_POLICY
SERVICE = "web"


@dataclass(frozen=True, slots=True)
class DemoPlan:
    base_rps: float = 30.0
    spike_rps: float = 200.0
    interval: float = 2.0
    phase_timeout: float = 150.0  # give up on a phase (and say so) after this long


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get_json(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            body: dict[str, Any] = json.loads(resp.read())
            return body
    except (urllib.error.URLError, OSError, ValueError):
        return None


class Controller:
    """``swarm-autoscaler run`` in a subprocess, its log in a file, its /decisions polled."""

    def __init__(
        self,
        manager_url: str,
        prometheus_url: str,
        interval: float,
        workdir: Path,
        policies: Path = DEMO_POLICY,
        service: str = SERVICE,
        extra: Sequence[str] = (),
    ) -> None:
        self.service = service
        self.port = _free_port()
        self.log_path = workdir / "controller.log"
        self._log = self.log_path.open("wb")
        cmd = [
            sys.executable, "-m", "autoscaler", "run",
            "--policies", str(policies),
            "--docker-host", manager_url,
            "--prometheus-url", prometheus_url,
            "--interval", f"{interval:g}",
            "--listen", f"127.0.0.1:{self.port}",
            "--log-format", "json",
            *extra,
        ]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def record(self) -> dict[str, Any] | None:
        if self.proc.poll() is not None:
            raise LabError(f"the controller exited with {self.proc.returncode}; log: {self.log_path}")
        body = _get_json(f"{self.url}/decisions")
        if body is None:
            return None
        record: dict[str, Any] | None = body.get("services", {}).get(self.service)
        return record

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def explain(self) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "autoscaler", "explain", self.service, "--url", self.url],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        return out.stdout + out.stderr

    def actions(self) -> list[str]:
        """Each scale action from the controller's JSON log, with the decision that caused it."""
        lines: list[str] = []
        last_reason: dict[str, str] = {}
        for raw in self.log_path.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(raw)
            except ValueError:
                continue
            event, service = entry.get("event"), entry.get("service", "")
            if event == "decision":
                last_reason[service] = entry.get("message", "")
            elif event == "action":
                when = str(entry.get("time", ""))[11:19]
                lines.append(f"{when} {entry.get('message', '')}")
                lines.append(f"         because {last_reason.get(service, '?')}")
        return lines


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What /decisions says of the web service at one moment."""

    reason: str = "waiting for the controller's first pass"
    current: int | None = None  # replicas the spec asks for
    running: int | None = None
    measured: float | None = None  # the metric's value (req/s for the whole service)

    @staticmethod
    def of(record: dict[str, Any] | None) -> Snapshot:
        if record is None:
            return Snapshot()
        metrics = (record.get("decision") or {}).get("metrics") or []
        value = metrics[0].get("value") if metrics else None
        return Snapshot(str(record.get("reason", "")), record.get("current"), record.get("running"), value)

    @property
    def settled(self) -> bool:
        """Every replica the spec asks for is running, and there is a measurement."""
        return self.measured is not None and self.current is not None and self.current == self.running

    def absorbed(self, per_replica_target: float, tolerance: float) -> bool:
        """Scaled out, and every running replica back within tolerance of its target."""
        if not self.settled or self.measured is None or not self.running or self.running <= 2:
            return False
        return self.measured / self.running <= per_replica_target * (1 + tolerance)

    def line(self, elapsed: float, offered: float) -> str:
        measured = "   -  " if self.measured is None else f"{self.measured:6.1f}"
        replicas = (
            f"{'-' if self.running is None else self.running}/{'-' if self.current is None else self.current}"
        )
        return (
            f"t={elapsed:5.0f}s offered {offered:5.0f} req/s  measured {measured}  "
            f"running/spec {replicas:>5}  {self.reason[:100]}"
        )


def _watch(
    ctl: Controller,
    started: float,
    offered: float,
    until: Callable[[Snapshot], bool],
    timeout: float,
    say: Callable[[str], None],
) -> bool:
    """Print a line whenever the picture changes, until ``until(snapshot)`` or the timeout."""
    deadline = time.monotonic() + timeout
    shown: tuple[int | None, int | None] | None = None
    shown_at = 0.0
    while time.monotonic() < deadline:
        snap = Snapshot.of(ctl.record())
        now = time.monotonic()
        # A line when the replica counts change, else one every few seconds: readable, not a flood.
        if (snap.running, snap.current) != shown or now - shown_at >= 6:
            say(snap.line(now - started, offered))
            shown, shown_at = (snap.running, snap.current), now
        if until(snap):
            return True
        time.sleep(1.0)  # display pace; the condition itself is polled, not assumed
    say(f"(phase not finished after {timeout:.0f} s; continuing)")
    return False


def run_demo(plan: DemoPlan, info: LabInfo, say: Callable[[str], None] = print) -> bool:
    """Run the three phases against a lab that is up; True when every phase finished."""
    spec = load_file(DEMO_POLICY)[0].policy.spec
    per_replica_target = spec.metrics[0].target.amount
    tolerance = spec.tolerance
    workdir = Path(tempfile.mkdtemp(prefix="swarm-autoscaler-demo-"))
    ctl = Controller(info.manager_url, info.prometheus_url, plan.interval, workdir)
    say(f"== controller: swarm-autoscaler run --policies {DEMO_POLICY} --interval {plan.interval:g}")
    say(f"   HTTP {ctl.url} (try: swarm-autoscaler explain web --url {ctl.url}); log {ctl.log_path}")
    started = time.monotonic()
    ok = True
    try:
        say(f"== steady load: {plan.base_rps:g} req/s")
        set_load(plan.base_rps, target=SERVICE)
        ok &= _watch(
            ctl, started, plan.base_rps,
            lambda s: s.settled and (s.measured or 0) > plan.base_rps * 0.7,
            plan.phase_timeout, say,
        )  # fmt: skip

        say(f"== spike: {plan.spike_rps:g} req/s ({plan.spike_rps / plan.base_rps:.1f}x)")
        set_load(plan.spike_rps, target=SERVICE)
        ok &= _watch(
            ctl, started, plan.spike_rps,
            lambda s: s.absorbed(per_replica_target, tolerance) and (s.measured or 0) > plan.base_rps * 2,
            plan.phase_timeout, say,
        )  # fmt: skip

        say(f"== back to {plan.base_rps:g} req/s: scale-down after the policy's stabilization window")
        set_load(plan.base_rps, target=SERVICE)
        ok &= _watch(
            ctl, started, plan.base_rps,
            lambda s: s.settled and (s.current or 0) <= 2,
            plan.phase_timeout, say,
        )  # fmt: skip
        say("== last decision, as 'swarm-autoscaler explain web' shows it:")
        say(ctl.explain().rstrip())
    finally:
        set_load(0, target=SERVICE)
        ctl.stop()
    say("== scale actions the controller took (from its JSON log):")
    for line in ctl.actions():
        say("   " + line)
    return ok
