"""Held-back traces for bench_quality.py: a seeded generator unlike examples/traces/generate.py.

No package reachable from this machine (PyPI and Debian only) ships a real web-server
request-rate data set (see docs/benchmarks.md for what was looked at), so these stand in
for real-world traffic. They are generated, never tuned against: the seed is fixed, the
shapes were written before the forecaster's defaults were chosen, and they differ from the
example traces in every parameter (rise times, noise, periods, lengths).

Each trace has one column, ``requests_per_second``, at whole-service level, like the
examples; ``examples/policies/web.yaml``'s target (50 req/s per replica) suits their scale.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

Rows = list[tuple[float, float | None]]
SEED = 140_2026  # issue 14; not the examples' seed


def _noisy(rng: random.Random, v: float, sigma: float) -> float:
    return max(0.0, v * (1.0 + rng.gauss(0.0, sigma)))


def morning_ramp(rng: random.Random) -> Rows:
    """Six hours at 10 s: night, a 40-minute morning climb to ~12x, a plateau, a slow decline."""
    rows: Rows = []
    low, high = rng.uniform(60, 120), rng.uniform(900, 1300)
    for t in range(0, 6 * 3600 + 1, 10):
        h = t / 3600
        if h < 1.5:
            base = low
        elif h < 1.5 + 40 / 60:
            base = low + (high - low) * (1 - math.cos(math.pi * (h - 1.5) / (40 / 60))) / 2
        elif h < 4:
            base = high
        else:
            base = high - (high - low) * 0.7 * (h - 4) / 2
        rows.append((t, _noisy(rng, base, 0.04)))
    return rows


def batch_bursts(rng: random.Random) -> Rows:
    """Two hours at 5 s: every ~10 minutes a job ramps load to 3-6x over 45-150 s, holds, stops."""
    rows: Rows = []
    base = rng.uniform(150, 250)
    bursts = []
    t0 = 300.0
    while t0 < 7200:
        bursts.append((t0, rng.uniform(45, 150), rng.uniform(120, 300), rng.uniform(3, 6)))
        t0 += rng.uniform(480, 780)
    for t in range(0, 7201, 5):
        v = base
        for start, rise, hold, peak in bursts:
            if start <= t < start + rise:
                v = max(v, base * (1 + (peak - 1) * (t - start) / rise))
            elif start + rise <= t < start + rise + hold:
                v = max(v, base * peak)
        rows.append((t, _noisy(rng, v, 0.05)))
    return rows


def flash_crowds(rng: random.Random) -> Rows:
    """Ninety minutes at 5 s: four crowds rising over 20-90 s to 5-15x, decaying over 3-12 min."""
    rows: Rows = []
    base = rng.uniform(80, 150)
    crowds = sorted(
        (rng.uniform(300, 5000), rng.uniform(20, 90), rng.uniform(5, 15), rng.uniform(180, 720))
        for _ in range(4)
    )
    for t in range(0, 5401, 5):
        v = base
        for start, rise, peak, decay in crowds:
            if start <= t < start + rise:
                v += base * (peak - 1) * (t - start) / rise
            elif t >= start + rise:
                v += base * (peak - 1) * math.exp(-(t - start - rise) / decay)
        rows.append((t, _noisy(rng, v, 0.06)))
    return rows


def drifting_walk(rng: random.Random) -> Rows:
    """Three hours at 15 s: a random walk with upward and downward drifts of ~20-60 minutes."""
    rows: Rows = []
    v, drift, until = rng.uniform(200, 400), 0.0, 0.0
    for t in range(0, 3 * 3600 + 1, 15):
        if t >= until:
            drift = rng.uniform(-0.004, 0.006)  # per step, relative
            until = t + rng.uniform(1200, 3600)
        v = min(max(v * (1 + drift + rng.gauss(0, 0.01)), 50.0), 1500.0)
        rows.append((t, _noisy(rng, v, 0.03)))
    return rows


def two_days_daily_peak(rng: random.Random) -> Rows:
    """Two days at 30 s: a daily curve plus the same sharp 09:00 peak both days (a daily job)."""
    rows: Rows = []
    low, high = rng.uniform(80, 120), rng.uniform(500, 700)
    peak_at, peak_rise, peak_height = 9 * 3600.0, rng.uniform(60, 120), rng.uniform(600, 900)
    for t in range(0, 2 * 86400 + 1, 30):
        day_t = t % 86400
        base = low + (high - low) * (1 - math.cos(2 * math.pi * (day_t - 4 * 3600) / 86400)) / 2
        since = day_t - peak_at
        if 0 <= since < peak_rise:
            base += peak_height * since / peak_rise
        elif peak_rise <= since < peak_rise + 900:
            base += peak_height * (1 - (since - peak_rise) / 900)
        rows.append((t, _noisy(rng, base, 0.04)))
    return rows


GENERATORS: dict[str, Callable[[random.Random], Rows]] = {
    "morning-ramp": morning_ramp,
    "batch-bursts": batch_bursts,
    "flash-crowds": flash_crowds,
    "drifting-walk": drifting_walk,
    "two-days-daily-peak": two_days_daily_peak,
}


def heldback_csv(seed: int = SEED) -> dict[str, str]:
    """Every held-back trace as CSV text, each from its own seeded generator."""
    out = {}
    for i, (name, gen) in enumerate(GENERATORS.items()):
        rows = gen(random.Random(seed + i))
        lines = ["t,requests_per_second"] + [f"{t:g},{'' if v is None else f'{v:.1f}'}" for t, v in rows]
        out[name] = "\n".join(lines) + "\n"
    return out
