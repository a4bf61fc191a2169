"""The lease's pure rules: when a candidate may take, when a holder renews or steps down."""

from __future__ import annotations

import pytest

from autoscaler.core import lease_rules as rules

TIMING = rules.LeaseTiming(15.0)


def seen(holder: str | None, since: float = 0.0, expires: str | None = "123.000") -> rules.Observation:
    return rules.Observation(rules.LeaseRecord(holder=holder, expires=expires), version=7, since=since)


def test_labels_round_trip_into_a_record() -> None:
    labels = rules.holder_labels("me", wall_now=1000.0, lease_seconds=15.0)
    record = rules.LeaseRecord.from_labels({**labels, "other": "x"})
    assert record.holder == "me"
    assert float(record.expires or "nan") == pytest.approx(1015.0)
    assert rules.LeaseRecord.from_labels(rules.released_labels()).released


def test_observation_clock_restarts_only_when_the_spec_version_moves() -> None:
    first = rules.observe(None, rules.LeaseRecord("a", "1"), version=3, now=10.0)
    same = rules.observe(first, rules.LeaseRecord("a", "1"), version=3, now=20.0)
    renewed = rules.observe(same, rules.LeaseRecord("a", "2"), version=4, now=25.0)
    assert same.since == first.since == 10.0
    assert renewed.since == 25.0


def test_labels_restored_to_what_was_seen_before_still_restart_the_clock() -> None:
    # Taken and then wiped by a redeploy: the labels read absent again, but they changed.
    absent = rules.LeaseRecord(None, None)
    before = rules.observe(None, absent, version=3, now=10.0)
    after_wipe = rules.observe(before, absent, version=5, now=16.0)
    assert after_wipe.since == 16.0


def test_candidate_waits_until_the_record_stood_still_a_whole_lease() -> None:
    observation = seen("other", since=100.0)
    almost = rules.plan("me", observation, 100.0 + TIMING.lease_seconds - 0.1, TIMING, leading=False)
    assert almost.step is rules.Step.WAIT
    assert 0 < almost.wait <= TIMING.renew_every
    due = rules.plan("me", observation, 100.0 + TIMING.lease_seconds, TIMING, leading=False)
    assert due.step is rules.Step.TAKE
    assert "other" in due.reason


def test_wall_clock_expiry_in_the_past_does_not_let_a_candidate_jump_in() -> None:
    # A manager whose clock runs ahead would see every lease as expired: only our own
    # monotonic observation time counts.
    observation = seen("other", since=50.0, expires="0.000")
    assert rules.plan("me", observation, 51.0, TIMING, leading=False).step is rules.Step.WAIT


def test_absent_labels_are_waited_out_like_a_live_holder() -> None:
    # A stack redeploy wipes the labels while the holder is still acting.
    observation = seen(None, since=0.0, expires=None)
    assert rules.plan("me", observation, 1.0, TIMING, leading=False).step is rules.Step.WAIT
    assert rules.plan("me", observation, TIMING.lease_seconds, TIMING, leading=False).step is rules.Step.TAKE


def test_released_lease_is_taken_at_once() -> None:
    released = rules.LeaseRecord.from_labels(rules.released_labels())
    observation = rules.Observation(released, version=2, since=5.0)
    assert rules.plan("me", observation, 5.0, TIMING, leading=False).step is rules.Step.TAKE


def test_our_own_lapsed_record_is_waited_out_too() -> None:
    # A rollback of the controller service can bring back labels naming us.
    observation = seen("me", since=7.0)
    assert rules.plan("me", observation, 7.0, TIMING, leading=False).step is rules.Step.WAIT
    assert (
        rules.plan("me", observation, 7.0 + TIMING.lease_seconds, TIMING, leading=False).step
        is rules.Step.TAKE
    )


@pytest.mark.parametrize("holder", ["me", None])
def test_holder_renews_its_record_and_restores_wiped_labels(holder: str | None) -> None:
    assert rules.plan("me", seen(holder), 0.0, TIMING, leading=True).step is rules.Step.RENEW


@pytest.mark.parametrize("holder", ["other", rules.RELEASED])
def test_holder_steps_down_when_the_record_names_someone_else(holder: str) -> None:
    result = rules.plan("me", seen(holder), 0.0, TIMING, leading=True)
    assert result.step is rules.Step.STEP_DOWN
    assert holder in result.reason


def test_holder_stops_acting_a_margin_before_a_candidate_may_take() -> None:
    write_started = 40.0
    holder_stops = rules.valid_until(write_started, TIMING)
    # The earliest a candidate can have seen that write is when it started.
    candidate_may_take = write_started + TIMING.lease_seconds
    assert holder_stops <= candidate_may_take - TIMING.margin
    assert TIMING.margin > 0
    assert TIMING.renew_every * 2 < TIMING.lease_seconds - TIMING.margin


@pytest.mark.parametrize("seconds", [0.0, 2.9, 3601.0])
def test_lease_length_out_of_range_is_refused_with_the_setting_to_change(seconds: float) -> None:
    with pytest.raises(ValueError, match="AUTOSCALER_LEASE__SECONDS"):
        rules.LeaseTiming(seconds)
