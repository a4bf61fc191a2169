"""The label grammar: service labels -> the same ScalingPolicy model a file gives."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from scaling_policies import scaling_policy

from autoscaler.core.policy import PolicySpec
from autoscaler.policy_sources.field_types import as_model
from autoscaler.policy_sources.label_controls import NOT_PAUSED, paused_labels, read_pause, resumed_labels
from autoscaler.policy_sources.label_export import policy_to_labels
from autoscaler.policy_sources.label_paths import aliases, is_list, keyed_element, resolve
from autoscaler.policy_sources.labels import policy_from_labels
from autoscaler.policy_sources.loader import LoadedPolicy, load_paths

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_DIRS = [ROOT / "examples" / "policies", ROOT / "charts" / "policies"]
VALID_FIXTURES = sorted((ROOT / "tests" / "fixtures" / "policies").glob("valid-*.yaml"))
QUERY = 'sum(rate(http_requests_total{service="{{ service }}"}[1m]))'
BASE = {
    "autoscaler.enable": "true",
    "autoscaler.maxReplicas": "20",
    "autoscaler.metrics.rps.prometheus.query": QUERY,
    "autoscaler.metrics.rps.target.averageValue": "50",
}


def messages(labels: dict[str, str], service: str = "web") -> list[str]:
    policy, problems = policy_from_labels(service, labels)
    assert policy is None
    return [str(p) for p in problems]


def examples() -> list[LoadedPolicy]:
    existing = [d for d in EXAMPLE_DIRS if d.is_dir()]
    return load_paths([*existing, *VALID_FIXTURES])


def test_the_issue_example_loads_with_the_file_defaults() -> None:
    labels = {
        **BASE,
        "autoscaler.minReplicas": "2",
        "autoscaler.behavior.scaleDown.stabilizationWindowSeconds": "60",
        "autoscaler.behavior.scaleUp.policies": "[{type: Percent, value: 100, periodSeconds: 15}]",
    }
    policy, problems = policy_from_labels("web", labels)
    assert problems == [] and policy is not None
    assert policy.name == "web" and policy.spec.service == "web"
    spec = policy.spec
    assert (spec.min_replicas, spec.max_replicas, spec.tolerance) == (2, 20, 0.1)
    assert spec.metrics[0].name == "rps" and spec.metrics[0].prometheus is not None
    assert spec.metrics[0].prometheus.query == QUERY, "text fields are taken as they are, not as YAML"
    assert spec.metrics[0].target.average_value == 50
    assert spec.behavior.down_window == 60
    assert [(p.type.value, p.value, p.period_seconds) for p in spec.behavior.up_policies] == [
        ("Percent", 100, 15)
    ]
    assert spec.panic == PolicySpec.model_fields["panic"].default


@pytest.mark.parametrize("loaded", examples(), ids=lambda p: p.policy.name)
def test_every_example_policy_as_labels_loads_to_the_same_model(loaded: LoadedPolicy) -> None:
    labels = policy_to_labels(loaded.policy)
    service = loaded.policy.spec.service or "any-service"
    policy, problems = policy_from_labels(service, labels)
    assert problems == []
    assert policy is not None
    expected = loaded.policy.spec.model_copy(update={"service": service, "selector": None})
    # Docker keeps labels as a map, so metrics come back ordered by name.
    expected = expected.model_copy(update={"metrics": tuple(sorted(expected.metrics, key=lambda m: m.name))})
    assert policy.spec == expected


def _leaf_paths(model: type[BaseModel], at: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for alias, annotation in aliases(model).items():
        path = (*at, alias)
        element = keyed_element(annotation)
        inner = as_model(annotation)
        if element is not None:
            yield from _leaf_paths(element, (*path, "m1"))
        elif inner is not None and not is_list(annotation):
            yield from _leaf_paths(inner, path)
        else:
            yield path


def test_every_field_of_the_model_is_a_label() -> None:
    # Read off the model: a field added to PolicySpec is addressable with no change here.
    paths = [p for p in _leaf_paths(PolicySpec) if p[0] not in ("service", "selector")]
    assert len(paths) > 15
    for path in paths:
        target = resolve(PolicySpec, path, "autoscaler.")
        assert target.path == path


def test_a_misspelt_field_says_what_was_meant_and_nothing_else() -> None:
    labels = dict(BASE)
    labels["autoscaler.maxReplica"] = labels.pop("autoscaler.maxReplicas")
    assert messages(labels) == [
        "service web: label autoscaler.maxReplica: unknown field; did you mean autoscaler.maxReplicas?"
    ]


def test_a_misspelt_required_field_inside_a_named_item_is_one_problem() -> None:
    labels = dict(BASE)
    labels["autoscaler.metrics.rps.prometheus.qery"] = labels.pop("autoscaler.metrics.rps.prometheus.query")
    assert messages(labels) == [
        "service web: label autoscaler.metrics.rps.prometheus.qery: unknown field; "
        "did you mean autoscaler.metrics.rps.prometheus.query?"
    ]


def test_nested_misspelling_and_no_close_match() -> None:
    labels = {
        **BASE,
        "autoscaler.behavior.scaleDwn.stabilizationWindowSeconds": "1",
        "autoscaler.colour": "red",
    }
    found = messages(labels)
    assert found[0] == (
        "service web: label autoscaler.behavior.scaleDwn.stabilizationWindowSeconds: unknown field; "
        "did you mean autoscaler.behavior.scaleDown?"
    )
    # Without a close match, every field allowed there (read off the model) is listed.
    allowed = ", ".join(f"autoscaler.{a}" for a in aliases(PolicySpec))
    assert found[1] == f"service web: label autoscaler.colour: unknown field; allowed here: {allowed}"
    assert len(found) == 2


def test_values_are_checked_by_the_model_with_the_file_wording() -> None:
    labels = {
        **BASE,
        "autoscaler.minReplicas": "two",
        "autoscaler.metrics.rps.target.value": "3",
        "autoscaler.behavior.scaleUp.policies": "[{type: Percnt, value: 0, periodSeconds: 15}]",
    }
    assert messages(labels) == [
        "service web: label autoscaler.behavior.scaleUp.policies (at [0].type): 'Percnt' is not allowed; "
        "use one of: 'Replicas' or 'Percent' (did you mean Percent?)",
        "service web: label autoscaler.behavior.scaleUp.policies (at [0].value): "
        "must be greater than 0, got 0",
        "service web: label autoscaler.metrics.rps.target: give exactly one of averageValue (per replica) "
        "or value (whole service); both are given",
        "service web: label autoscaler.minReplicas: must be a whole number, got 'two'",
    ]


def test_missing_required_fields_name_the_label_to_add() -> None:
    assert messages({"autoscaler.enable": "true"}) == [
        "service web: label autoscaler.maxReplicas: missing; this field is required",
        "service web: label autoscaler.metrics: missing; add at least one, keyed by its name: "
        "autoscaler.metrics.NAME.FIELD=VALUE",
    ]


def test_a_whole_metric_as_a_flow_mapping_and_two_metrics_by_name() -> None:
    labels = {
        **BASE,
        "autoscaler.metrics.conns": "{ipvs: {counter: activeConnections}, target: {averageValue: 200}}",
    }
    policy, problems = policy_from_labels("web", labels)
    assert problems == [] and policy is not None
    assert [m.name for m in policy.spec.metrics] == ["conns", "rps"]
    assert policy.spec.metrics[0].ipvs is not None


def test_a_list_without_names_must_be_given_whole() -> None:
    labels = {**BASE, "autoscaler.behavior.scaleUp.policies.0.value": "1"}
    assert messages(labels) == [
        "service web: label autoscaler.behavior.scaleUp.policies.0.value: "
        "autoscaler.behavior.scaleUp.policies is a list without names; "
        "give the whole list as a YAML flow value, e.g. "
        "autoscaler.behavior.scaleUp.policies=[{...}, {...}]"
    ]


def test_two_labels_setting_the_same_thing_conflict() -> None:
    labels = {**BASE, "autoscaler.behavior.scaleUp": "{}", "autoscaler.behavior.scaleUp.selectPolicy": "Min"}
    assert messages(labels) == [
        "service web: label autoscaler.behavior.scaleUp.selectPolicy: conflicts with label "
        "autoscaler.behavior.scaleUp, which sets all of it; keep one"
    ]


def test_service_and_selector_come_from_the_service_itself() -> None:
    labels = {**BASE, "autoscaler.service": "other", "autoscaler.selector.labels": "{a: b}"}
    assert messages(labels) == [
        "service web: label autoscaler.selector.labels: not allowed in labels: the policy scales the "
        "service that carries the labels",
        "service web: label autoscaler.service: not allowed in labels: the policy scales the service "
        "that carries the labels",
    ]


def test_query_templates_get_the_file_checks() -> None:
    labels = {**BASE, "autoscaler.metrics.rps.prometheus.query": "sum(x{service='{{ name }}'})"}
    assert messages(labels) == [
        "service web: label autoscaler.metrics.rps.prometheus.query: unknown template '{{ name }}'; the only "
        "template a query may use is '{{ service }}' (the service name)"
    ]


def test_bad_yaml_and_scalar_with_a_field() -> None:
    labels = {**BASE, "autoscaler.panic": "{enabled: [", "autoscaler.tolerance.x": "1"}
    found = messages(labels)
    assert found[0].startswith("service web: label autoscaler.panic: not a valid YAML value (")
    assert (
        found[1] == "service web: label autoscaler.tolerance.x: autoscaler.tolerance is a single value; "
        "it has no field 'x'"
    )


def test_control_and_other_labels_are_not_policy_fields() -> None:
    labels = {
        **BASE,
        "autoscaler.paused": "true",
        "autoscaler.pausedReplicas": "3",
        "autoscaler.lease.holder": "x",
        "com.docker.stack.namespace": "shop",
    }
    policy, problems = policy_from_labels("web", labels)
    assert problems == [] and policy is not None


def test_read_pause() -> None:
    assert read_pause({}) is NOT_PAUSED
    assert read_pause({"autoscaler.paused": "false"}).paused is False
    flagged = read_pause(
        {
            "autoscaler.paused": "true",
            "autoscaler.pausedBy": "ana",
            "autoscaler.pausedAt": "2026-12-01T16:00:00Z",
        }
    )
    assert (flagged.paused, flagged.replicas, flagged.by) == (True, None, "ana")
    assert flagged.at_seconds == datetime(2026, 12, 1, 16, tzinfo=UTC).timestamp()
    alone = read_pause({"autoscaler.pausedReplicas": "0"})
    assert (alone.paused, alone.replicas, alone.problems) == (True, 0, ())


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (
            {"autoscaler.paused": "ture"},
            ("autoscaler.paused", "must be true or false, got 'ture'; held as paused until fixed"),
        ),
        (
            {"autoscaler.pausedReplicas": "-1"},
            ("autoscaler.pausedReplicas", "must be a whole number 0..10000, got '-1'; held as it is"),
        ),
        (
            {"autoscaler.paused": "false", "autoscaler.pausedReplicas": "2"},
            (
                "autoscaler.paused",
                "is false but autoscaler.pausedReplicas is set; "
                "remove one of them (held as paused meanwhile)",
            ),
        ),
    ],
)
def test_unreadable_pause_labels_still_pause(labels: dict[str, str], expected: tuple[str, str]) -> None:
    pause = read_pause(labels)
    assert pause.paused
    assert pause.problems == (expected,)


def test_pause_and_resume_labels_keep_every_other_label() -> None:
    others = {"com.docker.stack.namespace": "shop", **BASE}
    at = datetime(2026, 12, 1, 16, 40, 5, tzinfo=UTC)
    paused = paused_labels({**others, "autoscaler.pausedReplicas": "9"}, by="ana@box", at=at, replicas=None)
    assert paused == {
        **others,
        "autoscaler.paused": "true",
        "autoscaler.pausedBy": "ana@box",
        "autoscaler.pausedAt": "2026-12-01T16:40:05Z",
    }
    again = paused_labels(paused, by="bo", at=at, replicas=2)
    assert again["autoscaler.pausedReplicas"] == "2" and again["autoscaler.pausedBy"] == "bo"
    assert resumed_labels(again) == others


def test_policy_to_labels_writes_only_what_the_policy_sets() -> None:
    policy = scaling_policy(
        "w",
        {
            "service": "w",
            "maxReplicas": 3,
            "metrics": [{"name": "c", "ipvs": {"counter": "connectionRate"}, "target": {"value": 5}}],
        },
    )
    expected: dict[str, Any] = {
        "autoscaler.enable": "true",
        "autoscaler.maxReplicas": "3",
        "autoscaler.metrics.c.ipvs.counter": "connectionRate",
        "autoscaler.metrics.c.target.value": "5.0",
    }
    assert policy_to_labels(policy) == expected
