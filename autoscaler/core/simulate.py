"""Replay a trace against a policy with the real decision engine, and score the result.

Model (deliberately simple, and the same one the README documents):
- the engine runs at t=0 and every ``interval`` seconds after, up to the trace's last row;
- a scale-up's new replicas count as running ``startup_delay`` seconds after the decision;
- a scale-down takes effect at once (starting replicas are cancelled first, as they carry
  no load yet);
- at each evaluation ``ready`` (running replicas) is what per-replica averages divide by;
- an empty trace cell is a query that returned no series (``emptyAs`` decides what that
  means; by default a failed read, which counts towards ``fallback``);
- with ``start`` (Unix seconds of t=0) trace second t is wall time ``start + t``, so
  ``schedules`` open and close as they would; without it schedules are not applied.

Scores are integrated exactly over the piecewise-constant timeline (trace rows, decisions
and start-up completions), not sampled at evaluations.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from autoscaler.core.decision import Decision, MetricReading
from autoscaler.core.engine import Engine
from autoscaler.core.policy import PolicySpec
from autoscaler.core.trace import Trace


@dataclass(frozen=True, slots=True)
class SimulationConfig:
    interval: float = 5.0
    initial_replicas: int | None = None  # None: the policy's minReplicas (at least 1)
    startup_delay: float = 10.0
    capacity: float | None = None  # per replica, in the first metric's unit; None: its averageValue
    start: float | None = None  # wall time (Unix seconds) of t=0, for schedules; None: not applied


@dataclass(frozen=True, slots=True)
class Step:
    """One evaluation: what the engine saw and asked for."""

    t: float
    ready: int
    starting: int
    values: tuple[float | None, ...]
    decision: Decision


@dataclass(slots=True)
class Summary:
    duration: float = 0.0
    replica_seconds: float = 0.0  # running + starting replicas, integrated over time
    overload_seconds: float = 0.0  # time where the first metric > ready x capacity
    scale_ups: int = 0
    scale_downs: int = 0
    max_replicas: int = 0
    capacity: float | None = None
    evaluations: int = 0


@dataclass(slots=True)
class SimulationResult:
    steps: list[Step] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)


def default_capacity(spec: PolicySpec) -> float | None:
    """The first metric's per-replica target, when it has one: the natural capacity."""
    return spec.metrics[0].target.average_value


class _Replicas:
    """Ready replicas plus a queue of [ready_at, count] for ones still starting."""

    def __init__(self, ready: int) -> None:
        self.ready = ready
        self.pending = 0  # sum of the counts in `starting`, kept in step with it
        self.starting: deque[list[float]] = deque()  # ready_at ascending
        self.next_change = math.inf  # when the next starting batch becomes ready

    def advance(self, t: float) -> None:
        while t >= self.next_change:
            count = int(self.starting.popleft()[1])
            self.ready += count
            self.pending -= count
            self.next_change = self.starting[0][0] if self.starting else math.inf

    def scale(self, t: float, target: int, startup_delay: float) -> None:
        have = self.ready + self.pending
        if target > have:
            self.starting.append([t + startup_delay, target - have])
            self.pending += target - have
            self.next_change = self.starting[0][0]
            return
        drop = have - target
        while drop and self.starting:  # cancel the newest starting replicas first
            last = self.starting[-1]
            take = min(drop, int(last[1]))
            last[1] -= take
            self.pending -= take
            drop -= take
            if last[1] == 0:
                self.starting.pop()
        self.next_change = self.starting[0][0] if self.starting else math.inf
        self.ready -= drop


def simulate(spec: PolicySpec, trace: Trace, config: SimulationConfig) -> SimulationResult:
    if config.interval <= 0:
        raise ValueError("interval must be > 0 seconds")
    if config.startup_delay < 0:
        raise ValueError("startup delay must be >= 0 seconds")
    initial = config.initial_replicas
    if initial is None:
        initial = max(spec.min_replicas, 1)
    capacity = config.capacity if config.capacity is not None else default_capacity(spec)

    names = trace.metric_names
    first = spec.metrics[0].name
    first_col = trace.values.get(first)
    times = trace.times
    end = trace.end

    replicas = _Replicas(initial)
    engine = Engine(spec, now=0.0, current=initial)
    result = SimulationResult()
    summary = result.summary
    summary.capacity = capacity
    summary.duration = end
    summary.max_replicas = initial

    row = -1  # index of the trace row in force at the current time

    def advance_row(now: float) -> None:
        nonlocal row
        while row + 1 < len(times) and times[row + 1] <= now:
            row += 1

    n_rows = len(times)

    def integrate(start: float, stop: float) -> None:
        """Add [start, stop) to the scores, splitting where load or ready replicas change."""
        nonlocal row
        # Hot loop: one pass per trace row (86,400 for a day at 1 s), so locals only.
        replica_seconds = overload_seconds = 0.0
        while start < stop:
            end_seg = stop if stop < replicas.next_change else replicas.next_change
            if row + 1 < n_rows and times[row + 1] < end_seg:
                end_seg = times[row + 1]
            span = end_seg - start
            replica_seconds += span * (replicas.ready + replicas.pending)
            if capacity is not None and first_col is not None and row >= 0:
                load = first_col[row]
                if load is not None and load > replicas.ready * capacity:
                    overload_seconds += span
            start = end_seg
            replicas.advance(start)
            while row + 1 < n_rows and times[row + 1] <= start:
                row += 1
        summary.replica_seconds += replica_seconds
        summary.overload_seconds += overload_seconds

    k = 0
    while (t := k * config.interval) <= end:
        advance_row(t)
        replicas.advance(t)
        values = tuple(trace.values[n][row] if row >= 0 else None for n in names)
        readings = {
            n: MetricReading(n, v) if v is not None else MetricReading.empty(n)
            for n, v in zip(names, values, strict=True)
        }
        current = replicas.ready + replicas.pending
        wall = None if config.start is None else config.start + t
        decision = engine.decide(
            now=t, current=current, running=replicas.ready, readings=readings, wall_time=wall
        )
        result.steps.append(Step(t, replicas.ready, replicas.pending, values, decision))
        if decision.desired != current:
            engine.record_scale(at=t, from_replicas=current, to_replicas=decision.desired)
            replicas.scale(t, decision.desired, config.startup_delay)
            if decision.desired > current:
                summary.scale_ups += 1
            else:
                summary.scale_downs += 1
            summary.max_replicas = max(summary.max_replicas, decision.desired)
        k += 1
        integrate(t, min(k * config.interval, end))
    summary.evaluations = len(result.steps)
    return result
