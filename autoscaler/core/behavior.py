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

The spec's pydantic models are compiled once into the frozen tuples below, so the
per-tick path touches only floats, ints and deques.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

from autoscaler.core.policy import ScalingRatePolicy, SelectPolicy

SELECT_MAX = 0
SELECT_MIN = 1
SELECT_DISABLED = 2
_SELECT_CODES = {
    SelectPolicy.MAX: SELECT_MAX,
    SelectPolicy.MIN: SELECT_MIN,
    SelectPolicy.DISABLED: SELECT_DISABLED,
}


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
    select: int
    select_name: str
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
    return DirectionRules(float(window), _SELECT_CODES[select], select.value, compiled)


class RecommendationHistory:
    """Timestamped recommendations with O(1) amortized window minimum and maximum.

    Two monotonic deques hold the candidates for the scale-up minimum and the scale-down
    maximum; ``_all`` keeps every record young enough for either window so the deques can
    be rebuilt when a record arrives out of time order (an out-of-band change stamped with
    the service's ``UpdatedAt``) or when a hot reload changes the windows.
    """

    __slots__ = ("_all", "_down_window", "_maxs", "_mins", "_up_window")

    def __init__(self, up_window: float, down_window: float) -> None:
        self._up_window = up_window
        self._down_window = down_window
        self._all: deque[tuple[float, int]] = deque()
        self._mins: deque[tuple[float, int]] = deque()  # recommendations rising from the left
        self._maxs: deque[tuple[float, int]] = deque()  # recommendations falling from the left

    def __len__(self) -> int:
        return len(self._all)

    def set_windows(self, up_window: float, down_window: float) -> None:
        self._up_window = up_window
        self._down_window = down_window
        self._rebuild()

    def add(self, at: float, replicas: int) -> None:
        """Record a recommendation; ``at`` may be older than earlier records (rare, slower)."""
        if self._all and at < self._all[-1][0]:
            items = list(self._all)
            bisect.insort(items, (at, replicas))
            self._all = deque(items)
            self._rebuild()
            return
        self._all.append((at, replicas))
        self._push(at, replicas)

    def add_and_bounds(self, now: float, desired: int) -> tuple[int, int]:
        """Record ``desired`` at ``now`` and return (scale-up bound, scale-down bound).

        The bounds are the min over the scale-up window and the max over the scale-down
        window, ``desired`` included (HPA seeds both with the new recommendation).
        """
        records = self._all
        mins = self._mins
        maxs = self._maxs
        record = (now, desired)
        if records and now < records[-1][0]:
            # The clock went backwards (NTP step, a restarted simulation): records "from the
            # future" cannot be placed in any window; drop them rather than keep them forever.
            self._all = deque(r for r in records if r[0] <= now)
            self._rebuild()
            records = self._all
        # _push inlined: this runs for every policy on every tick.
        records.append(record)
        while mins and mins[-1][1] >= desired:
            mins.pop()
        mins.append(record)
        while maxs and maxs[-1][1] <= desired:
            maxs.pop()
        maxs.append(record)
        up_cutoff = now - self._up_window
        down_cutoff = now - self._down_window
        while mins[0][0] <= up_cutoff and len(mins) > 1:
            mins.popleft()
        while maxs[0][0] <= down_cutoff and len(maxs) > 1:
            maxs.popleft()
        keep_cutoff = up_cutoff if up_cutoff < down_cutoff else down_cutoff
        while records[0][0] <= keep_cutoff and len(records) > 1:
            records.popleft()
        # The newest record (``desired`` at ``now``) is never popped above, so both deques
        # hold it or something that beats it inside the window.
        up = mins[0][1]
        down = maxs[0][1]
        return (up if up < desired else desired), (down if down > desired else desired)

    def _push(self, at: float, replicas: int) -> None:
        mins = self._mins
        while mins and mins[-1][1] >= replicas:
            mins.pop()
        mins.append((at, replicas))
        maxs = self._maxs
        while maxs and maxs[-1][1] <= replicas:
            maxs.pop()
        maxs.append((at, replicas))

    def _rebuild(self) -> None:
        self._mins.clear()
        self._maxs.clear()
        for at, replicas in self._all:
            self._push(at, replicas)


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
    if rules.select == SELECT_DISABLED:
        return current, None, current
    best: tuple[int, RatePolicy | None, int] | None = None
    for policy in rules.policies:
        start = events.period_start(current, now, policy.period)
        limit = policy.up_limit(start)
        if (
            best is None
            or (rules.select == SELECT_MAX and limit > best[0])
            or (rules.select == SELECT_MIN and limit < best[0])
        ):
            best = (limit, policy, start)
    assert best is not None  # policies is never empty once compiled from defaults
    if best[0] < current:
        return current, best[1], best[2]
    return best


def scale_down_limit(
    current: int, now: float, events: ScaleEvents, rules: DirectionRules
) -> tuple[int, RatePolicy | None, int]:
    """Lowest count the scale-down policies allow now: (limit, deciding policy, its period start)."""
    if rules.select == SELECT_DISABLED:
        return current, None, current
    best: tuple[int, RatePolicy | None, int] | None = None
    for policy in rules.policies:
        start = events.period_start(current, now, policy.period)
        limit = policy.down_limit(start)
        if (
            best is None
            or (rules.select == SELECT_MAX and limit < best[0])
            or (rules.select == SELECT_MIN and limit > best[0])
        ):
            best = (limit, policy, start)
    assert best is not None
    if best[0] > current:
        return current, best[1], best[2]
    return best
