"""Forecasting a metric over the next ``horizon`` seconds, for predictive scale-up. Pure.

The engine feeds each valid reading to a ``MetricHistory`` and asks it for the value
``horizon`` seconds ahead. Two extrapolations of the recent past, chosen per policy:

- ``trend``: the least-squares line through the readings of the last ``window`` seconds,
  read at ``now + horizon``. Its scatter (residual standard deviation over the mean) is
  the noise measure.
- ``holt``: Holt's double exponential smoothing for irregular sampling, with a level time
  constant of window/4 and a trend time constant of window/2; the noise measure is the
  smoothed one-step-ahead error over the level.

Once a full day has been seen (``seasonal``), a daily profile (one smoothed value per
minute of the day, 1,440 floats per metric) adds what happened a day ago: the forecast is
then the larger of the extrapolation and ``now``'s value plus the profile's change from
``now`` to ``now + horizon``. Only rises matter to the engine (a forecast never lowers
a recommendation), so the larger of two estimates is the careful one.

Memory per metric: the readings of one window (capped at ``MAX_SAMPLES``) and, with
``seasonal``, the 1,440-value profile.
"""

from __future__ import annotations

import math
from array import array
from collections import deque
from collections.abc import Mapping, Sequence

from autoscaler.core.decision import Forecast
from autoscaler.core.predictive_policy import ForecastMethod, Predictive
from autoscaler.core.tracking import MetricTracker

DAY = 86400.0
PROFILE_BUCKET = 60.0  # seconds per daily-profile value
PROFILE_SIZE = int(DAY / PROFILE_BUCKET)
PROFILE_WEIGHT = 0.3  # weight of a new reading in its minute's smoothed value
PROFILE_COVERAGE = 0.9  # share of the day's minutes that must have been seen
MAX_SAMPLES = 720  # readings kept per metric whatever the window (1 s ticks over 12 min)


def _num(x: float) -> str:
    text = f"{x:.4g}"
    return f"{x:.0f}" if "e" in text and abs(x) >= 1 else text


def fit_line(samples: Sequence[tuple[float, float]]) -> tuple[float, float, float, float]:
    """Least squares ``v = a + b (t - t_last)`` over ``(t, v)`` samples.

    Returns (a, b, residual standard deviation, mean of v), from one pass of sums.
    """
    n = len(samples)
    t_last = samples[-1][0]
    st = sv = stt = stv = svv = 0.0
    for t, v in samples:
        x = t - t_last
        st += x
        sv += v
        stt += x * x
        stv += x * v
        svv += v * v
    mean_t, mean_v = st / n, sv / n
    sxx = stt - st * mean_t
    syy = max(svv - sv * mean_v, 0.0)
    if sxx <= 0.0:
        return mean_v, 0.0, math.sqrt(syy / n), mean_v
    slope = (stv - st * mean_v) / sxx
    sse = max(syy - slope * (stv - st * mean_v), 0.0)
    return mean_v - slope * mean_t, slope, math.sqrt(sse / n), mean_v


class _Holt:
    """Holt's linear method for readings at irregular times (trend is per second)."""

    __slots__ = ("error", "last_t", "level", "tau_level", "tau_trend", "trend")

    def __init__(self, window: float) -> None:
        self.tau_level = window / 4
        self.tau_trend = window / 2
        self.level: float | None = None
        self.trend = 0.0
        self.last_t = 0.0
        self.error = 0.0  # smoothed |one-step-ahead error|

    def update(self, t: float, v: float) -> None:
        if self.level is None:
            self.level, self.last_t = v, t
            return
        dt = t - self.last_t
        if dt <= 0:
            return
        alpha = 1.0 - math.exp(-dt / self.tau_level)
        beta = 1.0 - math.exp(-dt / self.tau_trend)
        predicted = self.level + self.trend * dt
        self.error += alpha * (abs(v - predicted) - self.error)
        level = predicted + alpha * (v - predicted)
        self.trend += beta * ((level - self.level) / dt - self.trend)
        self.level, self.last_t = level, t


class _DailyProfile:
    """One smoothed value per minute of the day, and how many minutes have been seen."""

    __slots__ = ("first", "seen", "seen_count", "values")

    def __init__(self) -> None:
        self.values = array("d", bytes(8 * PROFILE_SIZE))
        self.seen = bytearray(PROFILE_SIZE)
        self.seen_count = 0
        self.first: float | None = None

    def add(self, t: float, v: float) -> None:
        if self.first is None:
            self.first = t
        i = int(t % DAY // PROFILE_BUCKET)
        if self.seen[i]:
            self.values[i] += PROFILE_WEIGHT * (v - self.values[i])
        else:
            self.values[i], self.seen[i] = v, 1
            self.seen_count += 1

    def ready(self, now: float) -> bool:
        return (
            self.first is not None
            and now - self.first >= DAY
            and self.seen_count >= PROFILE_COVERAGE * PROFILE_SIZE
        )

    def at(self, t: float) -> float | None:
        """The profile at time of day ``t``, interpolated between minute centres."""
        pos = (t % DAY) / PROFILE_BUCKET - 0.5
        i = math.floor(pos)
        frac = pos - i
        a, b = i % PROFILE_SIZE, (i + 1) % PROFILE_SIZE
        if not (self.seen[a] and self.seen[b]):
            return None
        return self.values[a] + frac * (self.values[b] - self.values[a])


class MetricHistory:
    """The recent readings of one metric and the forecast they give."""

    __slots__ = ("_holt", "_label", "_profile", "_samples", "config", "name")

    def __init__(self, name: str, config: Predictive) -> None:
        self.name = name
        self.config = config
        self._samples: deque[tuple[float, float]] = deque(maxlen=MAX_SAMPLES)
        self._holt = _Holt(config.window_seconds) if config.method is ForecastMethod.HOLT else None
        self._profile = _DailyProfile() if config.seasonal else None
        self._label = f"{'Holt' if self._holt is not None else 'trend'} over {_num(config.window_seconds)} s"

    def add(self, t: float, value: float) -> None:
        """Record a valid reading; readings older than one window are dropped."""
        samples = self._samples
        if samples and t <= samples[-1][0]:
            return  # same evaluation seen twice (or time went back): keep the first
        samples.append((t, value))
        horizon_start = t - self.config.window_seconds
        while samples[0][0] < horizon_start:
            samples.popleft()
        if self._holt is not None:
            self._holt.update(t, value)
        if self._profile is not None:
            self._profile.add(t, value)

    def forecast(self, now: float, horizon: float) -> Forecast:
        """The value ``horizon`` seconds after ``now``, or why there is none."""
        cfg = self.config
        label = self._label
        samples = self._samples
        span = samples[-1][0] - samples[0][0] if samples else 0.0
        if len(samples) < 3 or span < cfg.min_history:
            return Forecast(
                self.name,
                None,
                horizon,
                label,
                f"too little history ({len(samples)} readings over {_num(span)} s, "
                f"needs {_num(cfg.min_history)} s)",
            )
        level, slope, scatter, mean = fit_line(samples)
        ahead = now - samples[-1][0] + horizon
        holt = self._holt
        if holt is not None and holt.level is not None:
            base = holt.level + holt.trend * (now - holt.last_t + horizon)
            scatter = holt.error
        else:
            base = level + slope * ahead
            # A rise must show in the newer half of the window too: once it stops, the
            # newer half's line flattens first, so the forecast stops overshooting at once.
            half = len(samples) // 2
            if half >= 3:
                recent_level, recent_slope, _, _ = fit_line(list(samples)[half:])
                base = min(base, recent_level + recent_slope * ahead)
        noise = scatter / mean if mean > 0 else 0.0
        if noise > cfg.max_noise:
            return Forecast(
                self.name,
                None,
                horizon,
                label,
                f"too noisy (scatter {noise:.0%} of the mean, limit {cfg.max_noise:.0%})",
            )
        value = max(base, 0.0)
        profile = self._profile
        if profile is not None and profile.ready(now):
            then, ahead_value = profile.at(now), profile.at(now + horizon)
            if then is not None and ahead_value is not None:
                daily: float = samples[-1][1] + ahead_value - then
                if daily > value:
                    value, label = daily, f"{label} + daily pattern"
        return Forecast(self.name, value, horizon, label)


class Forecaster:
    """The histories of one policy's metrics, and the horizon to forecast over."""

    __slots__ = ("_histories", "_last_now", "_step", "config", "metric_names")

    def __init__(self, config: Predictive, metric_names: tuple[str, ...]) -> None:
        self.config = config
        self.metric_names = metric_names
        self._histories = {n: MetricHistory(n, config) for n in metric_names}
        self._last_now: float | None = None
        self._step = 0.0  # seconds between the last two evaluations

    def horizon(self) -> float:
        """horizonSeconds, else startupSeconds plus the interval between evaluations."""
        if self.config.horizon_seconds is not None:
            return self.config.horizon_seconds
        return self.config.startup_seconds + self._step

    def step(self, now: float, values: dict[str, float]) -> list[Forecast]:
        """Record this evaluation's valid readings; forecast each metric that has one."""
        if self._last_now is not None and now > self._last_now:
            self._step = now - self._last_now
        self._last_now = now
        horizon = self.horizon()
        out = []
        for name, value in values.items():
            history = self._histories.get(name)
            if history is None:
                continue
            history.add(now, value)
            out.append(history.forecast(now, horizon))
        return out


# How far into the scale-up tolerance band a reading must be before a rising forecast may
# act inside the band (raise_by_forecasts), as a share of the band. Picked on the training
# traces (docs/benchmarks.md): at 0 (any reading over target) the rule cut overload to
# 0.20x the HPA reference's but cost 1.048x its replica-seconds; each further 0.5 % over
# target traded ~0.03x of overload for ~0.002x of replica-seconds, and a fifth of the band
# kept the most margin on both goals.
OVER_TARGET_SHARE = 0.2


def raise_by_forecasts(
    forecasts: Sequence[Forecast],
    trackers: dict[str, MetricTracker],
    *,
    current: int,
    running: int,
    recommendation: int,
    act: bool,
    readings: Mapping[str, float],
) -> tuple[int, list[str]]:
    """The recommendation after the forecasts, and the reason fragments that explain it.

    A forecast only ever raises the recommendation: the result is the larger of
    ``recommendation`` (the reactive one) and what target tracking asks for at each
    forecast value. One exception to the tolerance: when a metric's reading (``readings``)
    is already over its target by more than a fifth of the scale-up tolerance
    (``OVER_TARGET_SHARE``: 2 % at the default 10 %) and its forecast is higher still, the
    forecast asks for the count its value needs even inside the band. The tolerance leaves
    a ratio near 1 alone because noise may be all there is to it, but here the load is well
    over target now and the forecast says it will go on rising, so waiting only means
    overload until it leaves the band. With ``act`` False (``mode: forecastOnly``) the recommendation is left
    alone and the fragments say what the forecast would have done.
    """
    parts: list[str] = []
    raised = recommendation
    for f in forecasts:
        head = f"{f.metric} {_num(f.value)}" if f.value is not None else f.metric
        if f.value is None:
            parts.append(f"forecast not used: {head} {f.note}")
            continue
        tracker = trackers[f.metric]
        desired, _ = tracker.track(f.value, current, running)
        why = ""
        now = readings.get(f.metric)
        margin = OVER_TARGET_SHARE * tracker.tolerance.up
        if now is not None and f.value > now and tracker.over_target(now, running, margin):
            needs = tracker.needed(f.value, running)
            if needs > desired:
                desired = needs
                why = f"; {_num(now)} is over target at {running} running and rising, past the tolerance"
        text = f"{head} in {_num(f.horizon)} s ({f.method}) -> {desired}{why}"
        if not act:
            parts.append(f"forecastOnly: {text}, not acted on")
        elif desired > raised:
            raised = desired
            parts.append(f"forecast {text}")
    return raised, parts
