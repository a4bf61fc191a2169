"""The backtest reader's choice of series (the HTTP side is tested on the lab's Prometheus)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from autoscaler.core.policy import PolicySpec
from autoscaler.errors import PermanentSourceError
from autoscaler.sources.prometheus_range import MAX_POINTS, _pick_series, read_trace

GROUPED = [
    {"metric": {"service": "web"}, "values": [[100.0, "5"], [105.0, "7"]]},
    {"metric": {"service": "api"}, "values": [[100.0, "50"]]},
]


def test_grouped_query_keeps_the_services_series() -> None:
    assert _pick_series(GROUPED, "rps", "web", "service") == [[100.0, "5"], [105.0, "7"]]


def test_grouped_query_without_the_service_says_which_label() -> None:
    with pytest.raises(PermanentSourceError, match=r"no series with service='shop'"):
        _pick_series(GROUPED, "rps", "shop", "service")


def test_ungrouped_query_must_return_one_series() -> None:
    with pytest.raises(PermanentSourceError, match="returned 2 series"):
        _pick_series(GROUPED, "rps", "web", None)
    assert _pick_series([], "rps", "web", None) == []


def test_too_many_points_is_refused_before_any_request() -> None:
    spec = PolicySpec.model_validate(
        {
            "service": "web",
            "maxReplicas": 5,
            "metrics": [{"name": "rps", "prometheus": {"query": "q"}, "target": {"averageValue": 5}}],
        }
    )
    start = datetime(2026, 12, 1, tzinfo=UTC)
    end = start + timedelta(seconds=MAX_POINTS * 5)
    # Port 1 on loopback: were a request sent, it would fail differently.
    with pytest.raises(PermanentSourceError, match="use a larger --step"):
        read_trace("http://127.0.0.1:1", spec, "web", start=start, end=end, step=5.0)
    with pytest.raises(PermanentSourceError, match="must be after --start"):
        read_trace("http://127.0.0.1:1", spec, "web", start=end, end=start, step=5.0)
