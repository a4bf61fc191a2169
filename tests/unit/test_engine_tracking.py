"""Per-metric target tracking (replica_calculator semantics) and its number handling."""

from __future__ import annotations

import math

import pytest

from autoscaler.core.decision import MetricReading
from autoscaler.core.tolerance import Tolerances
from autoscaler.core.tracking import MetricTracker, ceil_replicas, invalid_why, num


@pytest.mark.parametrize(
    ("value", "target", "whole"),
    [(1.1, 0.1, 11), (0.3, 0.1, 3), (0.7, 0.1, 7), (4.6, 0.2, 23), (1000.1, 0.1, 10001)],
)
def test_decimal_quotients_that_are_whole_numbers_are_not_rounded_up(
    value: float, target: float, whole: int
) -> None:
    # HPA divides milli-quantities (1100m / 100m == 11 exactly); floats leave residue.
    assert ceil_replicas(value / target) == whole


@pytest.mark.parametrize("x", [0.0, 0.2, 1.5, 2.0000001, 7.99, 10.5, 9999.01])
def test_ceil_replicas_is_ceil_away_from_float_residue(x: float) -> None:
    assert ceil_replicas(x) == math.ceil(x)


@pytest.mark.parametrize("x", [math.inf, 1e300, 5e9])
def test_huge_quotients_are_capped_not_overflowing(x: float) -> None:
    assert ceil_replicas(x) == 1_000_000_000


@pytest.mark.parametrize(
    ("x", "text"),
    [(512.0, "512"), (128.33333, "128.3"), (0.05, "0.05"), (12345.6, "12346"), (2e7, "20000000")],
)
def test_numbers_in_reasons_are_compact(x: float, text: str) -> None:
    assert num(x) == text


@pytest.mark.parametrize(
    ("reading", "why"),
    [
        (None, "no reading"),
        (MetricReading("m", None), "no data"),
        (MetricReading.missing("m", "prometheus: connection refused"), "prometheus: connection refused"),
        (MetricReading("m", math.nan), "NaN"),
        (MetricReading("m", math.inf), "infinite"),
        (MetricReading("m", -2.0), "negative (-2)"),
        (MetricReading("m", 0.0), None),
    ],
)
def test_invalid_reading_says_why(reading: MetricReading | None, why: str | None) -> None:
    assert invalid_why(reading) == why
    if reading is not None:
        assert reading.valid == (why is None)


def test_average_value_uses_total_over_target_outside_tolerance() -> None:
    t = MetricTracker("rps", per_replica=True, target=50, tolerance=Tolerances(0.1, 0.1))
    desired, reason = t.track(512, current=4, running=4)
    assert desired == math.ceil(512 / 50)
    assert reason == "rps 512 over 4 running = 128 per replica vs target 50 -> 11"


def test_value_target_multiplies_running_by_ratio() -> None:
    t = MetricTracker("queue", per_replica=False, target=20, tolerance=Tolerances(0.1, 0.1))
    desired, reason = t.track(50, current=6, running=3)
    assert desired == math.ceil(3 * 50 / 20)
    assert "ratio 2.5" in reason and "x 3 running" in reason


def test_within_tolerance_returns_current_not_running() -> None:
    t = MetricTracker("rps", per_replica=True, target=100, tolerance=Tolerances(0.1, 0.1))
    # 4 running out of 6 asked, each at 105 % of target: no change to the 6.
    assert t.track(420, current=6, running=4)[0] == 6


def test_tolerance_zero_scales_on_any_difference() -> None:
    t = MetricTracker("rps", per_replica=True, target=100, tolerance=Tolerances(0.0, 0.0))
    assert t.track(401, current=4, running=4)[0] == 5


def test_zero_running_has_no_tolerance_band() -> None:
    for per_replica in (True, False):
        t = MetricTracker("rps", per_replica=per_replica, target=100, tolerance=Tolerances(0.5, 0.5))
        assert t.track(100, current=1, running=0)[0] == 1
        assert t.track(0, current=1, running=0)[0] == 0
        assert "0 running" in t.track(130, current=1, running=0)[1]
