"""HPA ``behavior``: stabilization windows and rate-limit policies, as plain data.

Semantics follow Kubernetes' ``pkg/controller/podautoscaler/horizontal.go``:

- Stabilization (``stabilizeRecommendationWithBehaviors``): the scale-up bound is the
  lowest recommendation made within the scale-up window, the scale-down bound the highest
  within the scale-down window; both include the recommendation being made now. A record
  counts while ``t > now - window`` (Go's ``timestamp.After(cutoff)``).
- Rate limits (``calculateScale{Up,Down}Limit...``): each policy measures from the replica
  count at the start of its period, ``current - added + removed`` over scale events with
  ``t > now - periodSeconds``. ``selectPolicy`` Max picks the policy allowing the biggest
  change, Min the smallest, Disabled forbids the direction.

The spec's pydantic models are compiled once into the small frozen values below.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from autoscaler.core.behavior_policy import ScalingRatePolicy, SelectPolicy


@dataclass(frozen=True, slots=True)
class RatePolicy:
    """One rate-limit policy: at most ``value`` replicas (or percent) per ``period`` seconds."""

    percent: bool
    value: int
    period: float

    @property
    def label(self) -> str:
        if self.percent:
            return f"Percent {self.value}%/{self.period:g}s"
        return f"Replicas {self.value}/{self.period:g}s"

    def up_limit(self, period_start: int) -> int:
        if self.percent:
            # Exact integer ceil(start x (1 + v/100)). HPA computes this in float64, which
            # for e.g. 10 replicas +10 % gives ceil(11.000000000000002) = 12; we keep the
            # exact 11 that HPA's documentation describes.
            return -(-(period_start * (100 + self.value)) // 100)
        return period_start + self.value

    def down_limit(self, period_start: int) -> int:
        if self.percent:
            return (period_start * (100 - self.value)) // 100
        return period_start - self.value


@dataclass(frozen=True, slots=True)
class DirectionRules:
    """One direction of ``behavior`` compiled: window seconds, select mode, policies."""

    window: float
    select: SelectPolicy
    policies: tuple[RatePolicy, ...]

    @property
    def longest_period(self) -> float:
        return max((p.period for p in self.policies), default=0.0)


def compile_rules(
    window: int, select: SelectPolicy, policies: tuple[ScalingRatePolicy, ...]
) -> DirectionRules:
    compiled = tuple(
        RatePolicy(percent=p.type.value == "Percent", value=p.value, period=float(p.period_seconds))
        for p in policies
    )
    return DirectionRules(float(window), select, compiled)


def _fixed(record: tuple[float, int, int, float]) -> bool:
    """A record nothing may take back: no forecast raised it above what its readings asked for."""
    _, replicas, floor, due = record
    return floor == replicas and due == -math.inf


class RecommendationHistory:
    """Timestamped recommendations, scanned for the window bounds as HPA does.

    Records are kept in time order (an out-of-band change stamped with the service's
    ``UpdatedAt`` may arrive late and is put in its place); records older than both
    windows are dropped after each recommendation, and a recommendation equal to the
    newest record replaces it when neither is one a forecast may take back.

    With ``spec.predictive`` a record also keeps what the readings themselves asked for
    then (``floor``) and, when a forecast raised it, the time that forecast was for
    (``due``): ``take_back`` lowers the records of a forecast that overshot towards their
    floors, so a wrong forecast is not held for a whole scale-down window.
    """

    __slots__ = ("_down_window", "_records", "_up_window")

    def __init__(self, up_window: float, down_window: float) -> None:
        self._up_window = up_window
        self._down_window = down_window
        # (at, replicas, floor, due): floor == replicas for records nothing may take back;
        # due is -inf for a record no forecast raised.
        # A list, not a deque: a steady service holds one record, and an empty deque
        # alone is ~760 bytes (7 MiB over 10,000 engines); dropping the oldest of a few
        # dozen records from a list's front costs nothing.
        self._records: list[tuple[float, int, int, float]] = []

    def __len__(self) -> int:
        return len(self._records)

    def set_windows(self, up_window: float, down_window: float) -> None:
        self._up_window = up_window
        self._down_window = down_window

    def add(self, at: float, replicas: int, *, floor: int | None = None, due: float = -math.inf) -> None:
        """Record a recommendation; ``at`` may be older than earlier records."""
        bisect.insort(self._records, (at, replicas, replicas if floor is None else floor, due))

    def add_and_bounds(
        self, now: float, desired: int, *, floor: int | None = None, due: float = -math.inf
    ) -> tuple[int, int]:
        """Record ``desired`` at ``now`` and return (scale-up bound, scale-down bound).

        The bounds are the min over the scale-up window and the max over the scale-down
        window, ``desired`` included (HPA's ``stabilizeRecommendationWithBehaviors``).
        ``floor`` and ``due``: see the class docstring (default: nothing to take back).
        """
        records = self._records
        if records and records[-1][0] > now:
            # The clock went backwards (NTP step, a restarted simulation): records "from the
            # future" cannot be placed in any window; drop them rather than keep them forever.
            records = self._records = [r for r in records if r[0] <= now]
        up_cutoff = now - self._up_window
        down_cutoff = now - self._down_window
        up = down = desired
        for at, replicas, _, _ in records:
            if at > up_cutoff and replicas < up:
                up = replicas
            if at > down_cutoff and replicas > down:
                down = replicas
        record = (now, desired, desired if floor is None else floor, due)
        if records and _fixed(records[-1]) and _fixed(record) and records[-1][1] == desired:
            # A run of equal recommendations bounds every window exactly as its newest one
            # does (the run is in a window when its newest is), and take_back never changes
            # such records, so the run is kept as that one record: a steady service holds
            # one record, not one per pass of the longest window (60 at 5 s passes and
            # 300 s, ~5 KB a service; 50 MB at 10,000).
            records[-1] = record
        else:
            records.append(record)
        keep_cutoff = min(up_cutoff, down_cutoff)
        while len(records) > 1 and records[0][0] <= keep_cutoff:  # in time order: oldest first
            del records[0]
        return up, down

    def take_back(self, since: float, until: float, replicas: int, now: float) -> int:
        """Lower the records made in [since, until) to ``replicas``, never below their floor.

        Records raised by a forecast that is not due yet (``due > now``) are left to their
        own forecast. Returns the highest count left among the records lowered (0: none).
        """
        left = 0
        out: list[tuple[float, int, int, float]] = []
        for at, had, floor, due in self._records:
            if since <= at < until and due <= now and had > replicas and had > floor:
                had = max(replicas, floor)
                left = max(left, had)
            out.append((at, had, floor, due))
        self._records = out
        return left


class ScaleEvents:
    """Replicas added and removed by past scale events, for the rate-limit periods."""

    __slots__ = ("_keep", "down", "up")

    def __init__(self, keep_seconds: float) -> None:
        self._keep = keep_seconds
        self.up: list[tuple[float, int]] = []
        self.down: list[tuple[float, int]] = []

    def set_keep(self, keep_seconds: float) -> None:
        self._keep = keep_seconds

    def record(self, at: float, from_replicas: int, to_replicas: int) -> None:
        if to_replicas > from_replicas:
            self.up.append((at, to_replicas - from_replicas))
        elif to_replicas < from_replicas:
            self.down.append((at, from_replicas - to_replicas))

    def prune(self, now: float) -> None:
        cutoff = now - self._keep
        if self.up and self.up[0][0] <= cutoff:
            self.up = [e for e in self.up if e[0] > cutoff]
        if self.down and self.down[0][0] <= cutoff:
            self.down = [e for e in self.down if e[0] > cutoff]

    def period_start(self, current: int, now: float, period: float) -> int:
        """Replica count at the start of the period: current - added + removed within it."""
        cutoff = now - period
        added = sum(n for at, n in self.up if at > cutoff)
        removed = sum(n for at, n in self.down if at > cutoff)
        return current - added + removed


def scale_up_limit(
    current: int, now: float, events: ScaleEvents, rules: DirectionRules
) -> tuple[int, RatePolicy | None, int]:
    """Highest count the scale-up policies allow now: (limit, deciding policy, its period start).

    Never below ``current`` (HPA: no further scale-up until old events leave the period).
    """
    return _rate_limit(current, now, events, rules, up=True)


def scale_down_limit(
    current: int, now: float, events: ScaleEvents, rules: DirectionRules
) -> tuple[int, RatePolicy | None, int]:
    """Lowest count the scale-down policies allow now: (limit, deciding policy, its period start).

    Never above ``current``.
    """
    return _rate_limit(current, now, events, rules, up=False)


def _rate_limit(
    current: int, now: float, events: ScaleEvents, rules: DirectionRules, *, up: bool
) -> tuple[int, RatePolicy | None, int]:
    """The limit of one direction: selectPolicy Max picks the policy allowing the biggest
    change (the highest limit up, the lowest down), Min the smallest; the first wins a tie."""
    if rules.select is SelectPolicy.DISABLED:
        return current, None, current
    candidates: list[tuple[int, RatePolicy, int]] = []
    for policy in rules.policies:
        start = events.period_start(current, now, policy.period)
        limit = policy.up_limit(start) if up else policy.down_limit(start)
        candidates.append((limit, policy, start))
    highest = (rules.select is SelectPolicy.MAX) == up
    pick = max if highest else min
    limit, policy, start = pick(candidates, key=lambda c: c[0])
    short_of_current = limit < current if up else limit > current
    if short_of_current:
        return current, policy, start
    return limit, policy, start
