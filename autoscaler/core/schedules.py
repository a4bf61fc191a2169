"""Scheduled floors (``spec.schedules``): the replica bounds in force at a wall-clock time.

A schedule raises the floor while its window is open; it never replaces the scaling (users
of KEDA's cron scaler ask exactly this, KEDA #6898): the metrics can still ask for more.
Rules, all in ``bounds``:

- a window is open when the latest ``start`` time at or before now is later than the latest
  ``end`` time (so a window that began before the controller started is seen as open);
- the floor is the highest ``minReplicas`` of ``spec.minReplicas`` and every open window:
  overlapping windows take the highest floor, and a schedule never lowers the floor;
- the ceiling is the highest ``maxReplicas`` given by an open window, else
  ``spec.maxReplicas``; it is never below the floor.

Pure: the wall time is a parameter (Unix seconds). Each schedule's open/closed state is
kept until its next start or end time, so a tick costs two cron look-ups only when a
window opens or closes (or the clock jumps backwards).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from autoscaler.core.cron import describe, latest_at_or_before, next_after
from autoscaler.core.policy import PolicySpec, Schedule


@dataclass(frozen=True, slots=True)
class Bounds:
    """Replica bounds at one moment, and the sentence that explains them ("" without schedules)."""

    min_replicas: int
    max_replicas: int
    text: str = ""


@dataclass(slots=True)
class _WindowState:
    open: bool
    since: float | None  # the start (open) or end (closed) that put it in this state
    valid_from: float
    valid_until: float  # the next start or end time


def _window_state(schedule: Schedule, at: float) -> _WindowState:
    zone = schedule.timezone
    last_start = latest_at_or_before(schedule.start, zone, at)
    last_end = latest_at_or_before(schedule.end, zone, at)
    is_open = last_start is not None and (last_end is None or last_start > last_end)
    upcoming = [
        t for t in (next_after(schedule.start, zone, at), next_after(schedule.end, zone, at)) if t is not None
    ]
    return _WindowState(
        open=is_open,
        since=last_start if is_open else last_end,
        valid_from=at,
        valid_until=min(upcoming) if upcoming else math.inf,
    )


class ScheduleBook:
    """The schedules of one policy, with each window's state kept until it can change."""

    __slots__ = ("_max", "_min", "_plain", "_schedules", "_states")

    def __init__(self, spec: PolicySpec) -> None:
        self._min = spec.min_replicas
        self._max = spec.max_replicas
        self._plain = Bounds(self._min, self._max)  # the answer whenever no window is involved
        self._schedules = spec.schedules
        self._states: dict[str, _WindowState] = {}

    def open_windows(self, wall: float) -> list[Schedule]:
        found = []
        for schedule in self._schedules:
            state = self._states.get(schedule.name)
            if state is None or not state.valid_from <= wall < state.valid_until:
                state = self._states[schedule.name] = _window_state(schedule, wall)
            if state.open:
                found.append(schedule)
        return found

    def bounds(self, wall: float | None) -> Bounds:
        """The bounds at Unix time ``wall``; without a wall time the schedules are not applied."""
        if not self._schedules:
            return self._plain
        if wall is None:
            return Bounds(self._min, self._max, "schedules not applied: no wall-clock time given")
        active = self.open_windows(wall)
        if not active:
            return Bounds(self._min, self._max, "no schedule window open")
        floor = max([self._min, *(s.min_replicas for s in active)])
        ceilings = [s.max_replicas for s in active if s.max_replicas is not None]
        ceiling = max(max(ceilings) if ceilings else self._max, floor)
        names = []
        for s in active:
            state = self._states[s.name]
            opened = f", open since {describe(state.since, s.timezone)}" if state.since is not None else ""
            limit = f", maxReplicas {s.max_replicas}" if s.max_replicas is not None else ""
            names.append(f"{s.name} (minReplicas {s.min_replicas}{limit}{opened})")
        text = f"schedule {', '.join(names)}: minReplicas {floor}, maxReplicas {ceiling}"
        return Bounds(floor, ceiling, text)


def bounds_at(spec: PolicySpec, wall: float | None) -> Bounds:
    """One-off ``bounds`` (tests, tools); the engine keeps its own book and exposes ``bounds``."""
    return ScheduleBook(spec).bounds(wall)
