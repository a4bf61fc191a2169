"""``simulate --from-prometheus`` against the lab's real Prometheus, after a recorded load run.

A web service and a load generator of this test's own (unique names) run on the lab; the
load steps from a low to a high rate, each held until Prometheus shows it. Then the
policy's own query is read back over that range and replayed, with --compare hpa.
"""

from __future__ import annotations

import csv
import json
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import docker
import pytest
from docker.types import ServiceMode
from timing import wait_until

from autoscaler.cli import main
from autoscaler.core.policy import PolicySpec
from autoscaler.sources.prometheus_range import read_trace
from swarm_lab import images
from swarm_lab.sessions import LabHandle as Lab
from swarm_lab.swarm import create_service, scrape_labels

LOW, HIGH = 8.0, 30.0
QUERY = 'sum(rate(http_requests_total{service="{{ service }}",path="/"}[10s]))'


def instant(lab: Lab, promql: str) -> float:
    url = f"{lab.prometheus_url}/api/v1/query?" + urllib.parse.urlencode({"query": f"{promql} or vector(0)"})
    with urllib.request.urlopen(url, timeout=5) as response:
        return float(json.load(response)["data"]["result"][0]["value"][1])


@pytest.fixture
def recorded_run(lab: Lab) -> Iterator[tuple[str, datetime, datetime]]:
    """Run LOW then HIGH req/s at a service of our own; yield (service, start, end)."""
    name = f"predict-web-{uuid.uuid4().hex[:6]}"
    client = docker.DockerClient(base_url=lab.manager_url, version="1.41", timeout=30)
    created = []
    try:
        created.append(
            create_service(
                client, name, images.WEB, replicas=1, env={"WORK_MS": "1"}, labels=scrape_labels(8000)
            )
        )
        loadgen = create_service(
            client,
            f"{name}-load",
            images.LOADGEN,
            replicas=0,
            env={"RATE": "0", "TARGET": name},
            labels=scrape_labels(8001),
            restart_condition="on-failure",
        )
        created.append(loadgen)
        rate = QUERY.replace("{{ service }}", name)
        start = datetime.now(tz=UTC)
        for rps in (LOW, HIGH):
            loadgen.reload()
            loadgen.update(
                env=[f"RATE={rps:g}", f"TARGET={name}", "DURATION=600"],
                mode=ServiceMode("replicated", replicas=1),
                force_update=True,
            )
            # Held for 20 s in Prometheus's own evaluations (a subquery), so the replay has
            # several decisions at each level, not one lucky sample at the end.
            low, high = f"min_over_time({rate}[20s:1s])", f"max_over_time({rate}[20s:1s])"
            wait_until(
                lambda rps=rps, low=low, high=high: (
                    0.8 * rps <= instant(lab, low) and instant(lab, high) <= 1.2 * rps
                ),
                deadline=150,
                every=0.5,
                what=f"{name} serving {rps:g} req/s in Prometheus for 20 s",
            )
        end = datetime.now(tz=UTC)
        yield name, start, end
    finally:
        for service in reversed(created):
            service.remove()
        client.close()


def test_read_trace_replays_the_recorded_run(lab: Lab, recorded_run: tuple[str, datetime, datetime]) -> None:
    service, start, end = recorded_run
    spec = PolicySpec.model_validate(
        {
            "service": service,
            "maxReplicas": 10,
            "metrics": [{"name": "rps", "prometheus": {"query": QUERY}, "target": {"averageValue": 5}}],
        }
    )
    trace = read_trace(lab.prometheus_url, spec, service, start=start, end=end, step=1.0)
    values = [v for v in trace.values["rps"] if v is not None]
    assert trace.times[0] >= 0 and trace.times[-1] <= (end - start).total_seconds() + 1
    # The low phase and the high phase are both in the range Prometheus gave back.
    assert any(0.7 * LOW <= v <= 1.3 * LOW for v in values)
    assert 0.8 * HIGH <= values[-1] <= 1.2 * HIGH


def test_simulate_from_prometheus_with_compare(
    lab: Lab, recorded_run: tuple[str, datetime, datetime], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service, start, end = recorded_run
    policy = tmp_path / "p.yaml"
    policy.write_text(
        "apiVersion: autoscaler.swarm/v1\nkind: ScalingPolicy\nmetadata: {name: backtest}\n"
        f"spec:\n  service: {service}\n  maxReplicas: 10\n  predictive: {{enabled: true}}\n"
        f"  metrics:\n    - name: rps\n      prometheus: {{query: '{QUERY}'}}\n"
        "      target: {averageValue: 5}\n"
    )
    timeline = tmp_path / "timeline.csv"
    code = main(
        [
            "simulate", str(policy), "--from-prometheus", lab.prometheus_url,
            "--start", start.isoformat(), "--end", end.isoformat(), "--step", "1s",
            "--interval", "5", "--compare", "hpa", "--output", str(timeline),
        ]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"steps of {service} from {lab.prometheus_url}" in out
    assert "hpa defaults" in out and "overload-seconds" in out
    rows = list(csv.DictReader(timeline.open()))
    # LOW / 5 per replica is 2 replicas at the start; HIGH / 5 = 6 held for 20 s at the end.
    assert int(rows[0]["desired"]) <= 3, out
    assert max(int(r["desired"]) for r in rows) >= 5, out
