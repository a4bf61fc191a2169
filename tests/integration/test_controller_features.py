"""Issue 13 on the lab: fallback, a schedule window and activation from zero, each with the
real controller (its real clock), the real Swarm and the real Prometheus.

- Fallback: the controller reads Prometheus through a loopback proxy (``tcp_proxy.py``);
  stopping the proxy is an outage for this controller only (the lab's Prometheus is shared).
- Schedule: a window one minute wide, a minute or two ahead, in a zone that is not UTC.
- Activation: the activation metric is the number of running tasks of a "signal" service
  that Prometheus scrapes (the stand-in for pending work that a quiet service cannot
  measure itself); with no signal the query returns no series, which ``emptyAs: zero``
  reads as 0.

Nothing sleeps to synchronise: every wait polls the controller's log, /decisions or the
Swarm with a deadline.
"""

from __future__ import annotations

import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from controller_helpers import RATE_QUERY, ControllerProcess, LabServices, log_time, unique
from tcp_proxy import TcpProxy
from timing import wait_until

from swarm_lab.sessions import LabHandle


def policy_yaml(service: str, *, min_replicas: int, max_replicas: int, metric: str, extra: str = "") -> str:
    return (
        "apiVersion: autoscaler.swarm/v1\n"
        "kind: ScalingPolicy\n"
        f"metadata:\n  name: features-{service}\n"
        "spec:\n"
        f"  service: {service}\n"
        f"  minReplicas: {min_replicas}\n"
        f"  maxReplicas: {max_replicas}\n"
        f"  metrics:\n{metric}"
        "  behavior:\n    scaleDown:\n      stabilizationWindowSeconds: 15\n"
        "  panic:\n    enabled: false\n"
        f"{extra}"
    )


RATE_METRIC = (
    "    - name: requests_per_second\n"
    f"      prometheus:\n        query: '{RATE_QUERY}'\n"
    "      target:\n        averageValue: 10\n"
)


def start_controller(lab: LabHandle, tmp_path: Path, text: str, prometheus_url: str) -> ControllerProcess:
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "policy.yaml").write_text(text)
    return ControllerProcess(
        policies=policies,
        docker_host=lab.manager_url,
        prometheus_url=prometheus_url,
        workdir=tmp_path,
        interval=1.0,
    )


def metrics_text(controller: ControllerProcess) -> str:
    with urllib.request.urlopen(f"{controller.url}/metrics", timeout=5) as response:
        return str(response.read().decode())


def gauge(controller: ControllerProcess, name: str, service: str) -> float | None:
    prefix = f'{name}{{service="{service}"}} '
    for line in metrics_text(controller).splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return None


def test_prometheus_unreachable_reaches_the_fallback_replicas(
    lab: LabHandle, services: LabServices, tmp_path: Path
) -> None:
    name = unique("feat-fallback")
    services.web(name, replicas=2)
    services.wait_running(name, 2)
    proxy = TcpProxy(lab.prometheus_url)
    fallback = (
        "  fallback:\n    failureThreshold: 3\n    replicas: 4\n    behavior: currentReplicasIfHigher\n"
    )
    text = policy_yaml(name, min_replicas=2, max_replicas=6, metric=RATE_METRIC, extra=fallback)
    controller = start_controller(lab, tmp_path, text, proxy.url)
    try:
        wait_until(
            lambda: any(
                d["metrics"].get("requests_per_second") is not None
                for d in controller.events("decision", name)
            ),
            deadline=30,
            what=f"a decision on {name} with a reading through the proxy",
        )
        assert not controller.events("action", name), "scaled before the outage (idle at minReplicas)"
        proxy.stop()
        stopped_at = time.time()
        up = controller.wait_action(
            name, since=stopped_at, deadline=60, to=lambda old, new: new > old, what="up to the fallback"
        )
        assert (up["from"], up["to"]) == (2, 4)
        services.wait_running(name, 4)

        during = controller.events("decision", name, since=stopped_at)
        held = [d for d in during if log_time(d) < log_time(up)]
        # failureThreshold failures hold the service (missing data), the next one falls back.
        assert len([d for d in held if "MissingMetrics" in d["limits"]]) >= 3, [d["message"] for d in held]
        record = controller.record(name)
        assert record is not None and record["decision"]["fallback"] is True, record
        assert "Fallback: requests_per_second failed" in record["reason"], record["reason"]
        assert "prometheus" in record["decision"]["metrics"][0]["reason"].lower()
        assert gauge(controller, "autoscaler_fallback_active", name) == 1.0

        proxy.start()
        back_at = time.time()
        wait_until(
            lambda: any(
                "Fallback" not in d["limits"] and d["metrics"].get("requests_per_second") is not None
                for d in controller.events("decision", name, since=back_at)
            ),
            deadline=30,
            what=f"a decision on {name} with a reading again",
        )
        wait_until(
            lambda: gauge(controller, "autoscaler_fallback_active", name) == 0.0,
            deadline=10,
            what="autoscaler_fallback_active back to 0",
        )
    finally:
        controller.stop()
        proxy.stop()


def test_a_one_minute_schedule_window_with_the_real_clock(
    lab: LabHandle, services: LabServices, tmp_path: Path
) -> None:
    name = unique("feat-schedule")
    services.web(name, replicas=1)
    services.wait_running(name, 1)
    zone = "Asia/Kolkata"  # UTC+05:30: a zone whose minutes do not line up with UTC's hours
    now = datetime.now(ZoneInfo(zone))
    opens = (now + timedelta(seconds=75)).replace(second=0, microsecond=0)  # 15-75 s from now
    closes = opens + timedelta(minutes=1)
    window = (
        "  schedules:\n"
        "    - name: one-minute\n"
        f'      start: "{opens.minute} {opens.hour} * * *"\n'
        f'      end: "{closes.minute} {closes.hour} * * *"\n'
        f"      timezone: {zone}\n"
        "      minReplicas: 3\n"
    )
    text = policy_yaml(name, min_replicas=1, max_replicas=4, metric=RATE_METRIC, extra=window)
    controller = start_controller(lab, tmp_path, text, lab.prometheus_url)
    try:
        up = controller.wait_action(
            name, since=0, deadline=150, to=lambda old, new: new > old, what="up at 3"
        )
        assert (up["from"], up["to"]) == (1, 3)
        assert opens.timestamp() <= log_time(up) < opens.timestamp() + 10, (log_time(up), opens)
        before = [d for d in controller.events("decision", name) if log_time(d) < opens.timestamp()]
        assert before and all(d["desired"] == 1 for d in before)
        record_up = next(d for d in controller.events("decision", name) if d["desired"] == 3)
        assert "schedule one-minute (minReplicas 3" in record_up["message"]
        services.wait_running(name, 3)

        down = controller.wait_action(
            name, since=log_time(up), deadline=90, to=lambda old, new: new < old, what="down after the window"
        )
        assert down["to"] == 1
        assert log_time(down) >= closes.timestamp()
    finally:
        controller.stop()


def test_scaled_to_zero_and_woken_by_its_activation_metric(
    lab: LabHandle, services: LabServices, tmp_path: Path
) -> None:
    name = unique("feat-zero")
    signal = unique("feat-signal")
    grace = 10
    services.web(name, replicas=1)
    services.wait_running(name, 1)
    metric = (
        "    - name: pending\n"
        f"      prometheus:\n        query: 'count(up{{service=\"{signal}\"}} == 1)'\n"
        "      target:\n        averageValue: 1\n"
        "      activationValue: 0.5\n"
        "      emptyAs: zero\n"
    )
    extra = f"  scaleToZeroAfterSeconds: {grace}\n"
    text = policy_yaml(name, min_replicas=0, max_replicas=3, metric=metric, extra=extra)
    controller = start_controller(lab, tmp_path, text, lab.prometheus_url)
    try:
        first = controller.events("decision", name)[0]
        asleep = controller.wait_action(name, since=0, deadline=60, to=lambda old, new: new == 0, what="to 0")
        assert log_time(asleep) - log_time(first) >= grace - 1.5  # the start counts as activity
        assert "no series, read as 0 (emptyAs: zero)" in controller.events("decision", name)[-1]["message"]
        services.wait_running(name, 0)

        services.web(signal, replicas=1)  # work appears: Prometheus starts scraping the signal
        woken = controller.wait_action(
            name, since=log_time(asleep), deadline=60, to=lambda old, new: (old, new) == (0, 1), what="0 -> 1"
        )
        wake_decision = next(
            d for d in controller.events("decision", name, since=log_time(woken) - 1.5) if d["desired"] == 1
        )
        assert "pending 1 > activationValue 0.5: waking 0 -> 1" in wake_decision["message"]
        services.wait_running(name, 1)

        services.remove(signal)  # the work is gone: back to 0 after the grace, not before
        again = controller.wait_action(
            name, since=log_time(woken), deadline=60, to=lambda old, new: new == 0, what="back to 0"
        )
        assert log_time(again) - log_time(woken) >= grace
        slept: list[dict[str, Any]] = [
            d for d in controller.events("decision", name, since=log_time(woken)) if d["desired"] == 0
        ]
        assert "ScaleToZero" in slept[0]["limits"], slept[0]["message"]
    finally:
        controller.stop()
