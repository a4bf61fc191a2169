"""Regenerate the example traces (deterministic: fixed seed). Run: python examples/traces/generate.py

Each trace has one metric column, ``requests_per_second``: the request rate the whole service would
report, matching ``examples/policies/web.yaml`` (target averageValue 50 req/s per replica).
"""

from __future__ import annotations

import math
import random
from pathlib import Path

HERE = Path(__file__).parent


def write(name: str, rows: list[tuple[float, float | None]]) -> None:
    with (HERE / name).open("w", encoding="utf-8") as fh:
        fh.write("t,requests_per_second\n")
        for t, v in rows:
            fh.write(f"{t:g},{'' if v is None else f'{v:.1f}'}\n")


def step_spike() -> list[tuple[float, float | None]]:
    # Quiet, then 7.5x the load for eight minutes, then quiet again for ten.
    return [(0, 80.0), (120, 600.0), (600, 80.0), (1200, 80.0)]


def ramp() -> list[tuple[float, float | None]]:
    # 50 -> 1000 req/s over 15 minutes, then back down over 15 minutes.
    rows: list[tuple[float, float | None]] = []
    for t in range(0, 1801, 10):
        frac = t / 900 if t <= 900 else (1800 - t) / 900
        rows.append((t, 50 + 950 * frac))
    return rows


def flash_crowd() -> list[tuple[float, float | None]]:
    # A link goes viral at t=300: 100 -> 2000 req/s in 10 s, decaying over ~10 minutes.
    rows: list[tuple[float, float | None]] = []
    for t in range(0, 1801, 5):
        if t < 300:
            v = 100.0
        elif t < 310:
            v = 100 + 1900 * (t - 300) / 10
        else:
            v = 100 + 1900 * math.exp(-(t - 310) / 200)
        rows.append((t, v))
    return rows


def diurnal() -> list[tuple[float, float | None]]:
    # A day at one-minute resolution: 100 req/s at night, 800 at the afternoon peak, +-8 %
    # noise, and two Prometheus outages (empty cells) to show the missing-data rules.
    rng = random.Random(20261125)
    rows: list[tuple[float, float | None]] = []
    for minute in range(0, 24 * 60 + 1):
        t = minute * 60
        base = 450 - 350 * math.cos(2 * math.pi * (t - 3 * 3600) / 86400)
        v: float | None = base * (1 + rng.uniform(-0.08, 0.08))
        if 600 <= minute < 610 or 1000 <= minute < 1003:
            v = None
        rows.append((t, v))
    return rows


if __name__ == "__main__":
    write("step-spike.csv", step_spike())
    write("ramp.csv", ramp())
    write("flash-crowd.csv", flash_crowd())
    write("diurnal.csv", diurnal())
