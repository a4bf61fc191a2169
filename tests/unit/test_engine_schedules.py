"""spec.schedules: windows in a time zone raise the floor (and may set the ceiling)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_engine import make_spec, read

from autoscaler.core.engine import Engine
from autoscaler.core.schedules import ScheduleBook, bounds_at

BUSINESS = {
    "name": "business-hours",
    "start": "0 8 * * 1-5",
    "end": "0 19 * * 1-5",
    "timezone": "Europe/Paris",
    "minReplicas": 10,
}


def at(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def spec_with(*schedules: dict[str, Any], **fields: Any) -> Any:
    fields.setdefault("minReplicas", 2)
    fields.setdefault("maxReplicas", 40)
    return make_spec(schedules=list(schedules), **fields)


# 2026-12-01 is a Tuesday; Paris is UTC+1 in winter and UTC+2 in summer.
@pytest.mark.parametrize(
    ("wall", "floor"),
    [
        ("2026-12-01T06:59:00+00:00", 2),  # 07:59 Paris
        ("2026-12-01T07:00:00+00:00", 10),  # 08:00 Paris: opens on the minute
        ("2026-12-01T17:59:59+00:00", 10),  # 18:59:59 Paris
        ("2026-12-01T18:00:00+00:00", 2),  # 19:00 Paris: closed
        ("2026-12-05T10:00:00+00:00", 2),  # Saturday
        ("2026-07-01T06:30:00+00:00", 10),  # 08:30 Paris in summer time (UTC+2)
        ("2026-07-01T05:30:00+00:00", 2),  # 07:30 Paris in summer time
    ],
)
def test_window_in_its_time_zone(wall: str, floor: int) -> None:
    assert bounds_at(spec_with(BUSINESS), at(wall)).min_replicas == floor


def test_overlapping_windows_take_the_highest_floor_and_ceiling() -> None:
    night = {"name": "batch", "start": "0 6 * * *", "end": "0 9 * * *", "minReplicas": 4, "maxReplicas": 60}
    bounds = bounds_at(spec_with(BUSINESS, night), at("2026-12-01T07:30:00+00:00"))
    assert (bounds.min_replicas, bounds.max_replicas) == (10, 60)
    assert "business-hours" in bounds.text and "batch" in bounds.text


def test_a_low_schedule_never_lowers_the_floor() -> None:
    low = {"name": "low", "start": "0 0 * * *", "end": "59 23 * * *", "minReplicas": 0}
    assert bounds_at(spec_with(low), at("2026-12-01T12:00:00+00:00")).min_replicas == 2


def test_a_schedule_ceiling_is_never_below_the_floor() -> None:
    capped = {"name": "cap", "start": "0 0 * * *", "end": "59 23 * * *", "minReplicas": 1, "maxReplicas": 3}
    bounds = bounds_at(spec_with(BUSINESS, capped), at("2026-12-01T09:00:00+00:00"))
    assert (bounds.min_replicas, bounds.max_replicas) == (10, 10)


def test_window_opened_before_the_controller_started_is_open() -> None:
    # A Black Friday window opened days ago: the latest start is later than the latest end.
    friday = {"name": "bf", "start": "0 0 27 11 *", "end": "0 0 2 12 *", "minReplicas": 20}
    assert bounds_at(spec_with(friday), at("2026-12-01T12:00:00+00:00")).min_replicas == 20
    assert bounds_at(spec_with(friday), at("2026-12-02T00:00:00+00:00")).min_replicas == 2


def test_engine_goes_straight_to_the_floor_and_says_why() -> None:
    engine = Engine(spec_with(BUSINESS), now=0.0, current=2)
    d = engine.decide(
        now=0.0, current=2, running=2, readings=read(rps=100.0), wall_time=at("2026-12-01T07:00:00Z")
    )
    assert d.desired == 10 and "TooFewReplicas" in d.limits
    assert "schedule business-hours (minReplicas 10, open since 2026-12-01 08:00 Europe/Paris)" in d.reason


def test_metrics_still_scale_above_the_floor() -> None:
    engine = Engine(spec_with(BUSINESS), now=0.0, current=10)
    d = engine.decide(
        now=0.0, current=10, running=10, readings=read(rps=1500.0), wall_time=at("2026-12-01T09:00Z")
    )
    assert d.desired == 15


def test_a_schedule_lifts_a_service_at_zero_when_min_replicas_is_zero() -> None:
    engine = Engine(spec_with(BUSINESS, minReplicas=0), now=0.0, current=0)
    d = engine.decide(
        now=0.0, current=0, running=0, readings=read(rps=0.0), wall_time=at("2026-12-01T09:00Z")
    )
    assert d.desired == 10 and "ScalingDisabled" not in d.limits


def test_without_wall_time_schedules_are_not_applied_and_the_reason_says_so() -> None:
    engine = Engine(spec_with(BUSINESS), now=0.0, current=2)
    d = engine.decide(now=0.0, current=2, running=2, readings=read(rps=100.0))
    assert d.desired == 2 and "schedules not applied" in d.reason


def test_the_book_follows_the_clock_forwards_and_back() -> None:
    book = ScheduleBook(spec_with(BUSINESS))
    assert book.bounds(at("2026-12-01T06:59:59Z")).min_replicas == 2
    assert book.bounds(at("2026-12-01T07:00:00Z")).min_replicas == 10  # next start reached
    assert book.bounds(at("2026-12-01T06:00:00Z")).min_replicas == 2  # clock went back


@settings(max_examples=150, deadline=None)
@given(
    floors=st.lists(st.integers(0, 30), min_size=1, max_size=4),
    minute=st.integers(0, 7 * 24 * 60),
    spec_min=st.integers(0, 10),
    value=st.floats(min_value=0, max_value=10_000, allow_nan=False),
    current=st.integers(0, 40),
)
def test_a_schedule_never_lowers_the_floor(
    floors: list[int], minute: int, spec_min: int, value: float, current: int
) -> None:
    """Bounds and decisions: never below spec.minReplicas, never below any open window's floor."""
    hours = [(f"0 {h % 24} * * *", f"30 {(h + 5) % 24} * * *") for h in range(0, 24, 7)]
    schedules = [
        {"name": f"s{i}", "start": start, "end": end, "minReplicas": floor}
        for i, (floor, (start, end)) in enumerate(zip(floors, hours, strict=False))
    ]
    spec = spec_with(*schedules, minReplicas=spec_min)
    wall = at("2026-11-30T00:00:00Z") + 60.0 * minute
    book = ScheduleBook(spec)
    bounds = book.bounds(wall)
    open_floors = [s.min_replicas for s in book.open_windows(wall)]
    assert bounds.min_replicas == max([spec_min, *open_floors])
    engine = Engine(spec, now=0.0, current=current)
    d = engine.decide(now=0.0, current=current, running=current, readings=read(rps=value), wall_time=wall)
    if current > 0 or spec_min == 0:  # at 0 with minReplicas > 0 autoscaling is off (HPA)
        assert d.desired >= bounds.min_replicas
