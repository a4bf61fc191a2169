"""The chart's files are valid for the tools that read them: promtool, the lab's real
Prometheus (every PromQL expression of the alerts and the dashboard), the policy loader, and
`docker stack config` with the values file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from autoscaler.cli.validate_labels import check_compose

CHARTS = Path(__file__).resolve().parents[2] / "charts"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool not installed (Debian package prometheus; scripts/install.sh)"
)


def values(name: str = "values.env") -> dict[str, str]:
    pairs = {}
    for line in (CHARTS / name).read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def render(overrides: dict[str, str]) -> dict[str, Any]:
    """``docker stack config`` of stack.yml with values.env plus ``overrides``, as deploy.sh gives them."""
    env = {**os.environ, **values(), **overrides}
    env.update({f"HASH_{n}": "0" for n in ("PROMETHEUS_CONFIG", "PROMETHEUS_ALERTS")})
    env.update({f"HASH_{n}": "0" for n in ("EXAMPLE_WEB_APP", "EXAMPLE_LOAD_APP")})
    proc = subprocess.run(
        ["docker", "stack", "config", "-c", "stack.yml"],
        cwd=CHARTS,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rendered: dict[str, Any] = yaml.safe_load(proc.stdout)
    return rendered


def alert_exprs() -> list[str]:
    groups = yaml.safe_load((CHARTS / "prometheus" / "alerts.yml").read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((CHARTS / "grafana" / "swarm-autoscaler.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    return [e.replace("$service", ".*") for e in exprs]


@needs_promtool
def test_alert_rules_pass_promtool() -> None:
    proc = subprocess.run(
        [str(PROMTOOL), "check", "rules", str(CHARTS / "prometheus" / "alerts.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@needs_promtool
def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    # The config names the rules by their path inside the container; check it next to a copy.
    config = (CHARTS / "prometheus" / "prometheus.yml").read_text()
    shutil.copy(CHARTS / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(config.replace("/etc/prometheus/alerts.yml", "alerts.yml"))
    proc = subprocess.run(
        [str(PROMTOOL), "check", "config", "prometheus.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("expr", alert_exprs() + dashboard_exprs())
def test_every_expression_is_accepted_by_a_real_prometheus(lab: Any, expr: str) -> None:
    query = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{lab.prometheus_url}/api/v1/query?{query}", timeout=10) as response:
        answer = json.load(response)
    assert answer["status"] == "success", answer


def test_the_example_apps_labels_are_a_valid_policy() -> None:
    checked, problems = check_compose([CHARTS / "stack.yml"], stack="autoscaler")
    assert problems == []
    governed = {c.name: c.policy for c in checked if c.policy is not None}
    assert list(governed) == ["autoscaler_example-web"]
    spec = governed["autoscaler_example-web"].spec
    assert (spec.min_replicas, spec.max_replicas, spec.metrics[0].target.average_value) == (2, 8, 20)


def test_stack_renders_with_the_values_file_and_every_value_is_used() -> None:
    rendered = render({})
    assert rendered["services"]["autoscaler"]["deploy"]["replicas"] == int(values()["CONTROLLER_REPLICAS"])
    stack_text = (CHARTS / "stack.yml").read_text() + (CHARTS / "deploy.sh").read_text()
    unused = [name for name in values() if f"${{{name}}}" not in stack_text and f"${name}" not in stack_text]
    assert not unused, f"values.env entries no file reads: {unused}"


@pytest.mark.parametrize(
    ("overrides", "endpoint_mode", "publish_mode"),
    [
        ({}, "vip", "ingress"),  # the default: as a real swarm runs it, through the routing mesh
        (values("values-netns-lab.env"), "dnsrr", "host"),  # kernels without IPVS (the netns lab)
    ],
    ids=["default", "netns-lab"],
)
def test_endpoint_and_publish_modes(overrides: dict[str, str], endpoint_mode: str, publish_mode: str) -> None:
    rendered = render(overrides)
    modes = {name: svc["deploy"]["endpoint_mode"] for name, svc in rendered["services"].items()}
    assert modes == dict.fromkeys(rendered["services"], endpoint_mode)
    published = [p for svc in rendered["services"].values() for p in svc.get("ports", [])]
    assert [(p["published"], p["mode"]) for p in published] == [
        (int(values()["PROMETHEUS_PORT"]), publish_mode)
    ]


def test_the_netns_lab_override_only_changes_values_the_chart_has() -> None:
    """An override of a name values.env does not have would be a typo deploy.sh passes on silently."""
    override = values("values-netns-lab.env")
    assert override and set(override) <= set(values())
