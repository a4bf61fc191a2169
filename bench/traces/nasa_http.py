"""Rebuild the NASA-HTTP traces of this folder from per-second request counts (see README.md).

Input: ``workload.txt`` from reconfigurable-ml-pipeline/web-service-datasets
(``dataset/nasa/workload.tbz2``): the number of requests logged in each second of
NASA_access_log_Jul95 then NASA_access_log_Aug95, space-separated, the first number being
the second 1995-07-01 00:00:01 (local time, -0400, as the log is written).

Output: one CSV per day asked for, in the simulator's trace format, one row per minute:
``t`` is seconds since local midnight, ``requests_per_second`` is that minute's requests / 60
(unscaled; bench_quality.py scales it and interpolates it between minute midpoints, see
README.md). Only July days are accepted: the counts run on without a gap from July's file
into August's, so August's dates cannot be placed.

Run (held back, then training; see README.md):
``python bench/traces/nasa_http.py workload.txt 1995-07-06 1995-07-13 1995-07-05 1995-07-07 \\
1995-07-12 1995-07-14``.
"""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

HERE = Path(__file__).parent
FIRST_SECOND = 1  # the first count is 00:00:01 on 1995-07-01
DAY = 86400


def minute_rates(counts: list[int], day: date) -> list[float]:
    """Requests per second averaged over each minute of ``day`` (local time)."""
    if (day.year, day.month) != (1995, 7):
        raise SystemExit(f"{day}: only July 1995 days can be placed in the counts (see the docstring)")
    start = (day.day - 1) * DAY - FIRST_SECOND  # index of the day's 00:00:00
    # 1995-07-01 00:00:00 itself is not in the log: the first minute then has 59 seconds of counts.
    seconds = [counts[i] if i >= 0 else 0 for i in range(start, start + DAY)]
    return [sum(seconds[m : m + 60]) / 60 for m in range(0, DAY, 60)]


def write_day(counts: list[int], day: date) -> Path:
    path = HERE / f"nasa-http-{day.isoformat()}.csv"
    lines = ["t,requests_per_second"]
    lines += [f"{i * 60},{rate:.3f}" for i, rate in enumerate(minute_rates(counts, day))]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("workload", type=Path, help="workload.txt: per-second counts, space-separated")
    parser.add_argument("days", nargs="+", type=date.fromisoformat, help="July 1995 days, YYYY-MM-DD")
    args = parser.parse_args()
    counts = [int(word) for word in args.workload.read_text(encoding="ascii").split()]
    print(f"{len(counts)} seconds, {sum(counts)} requests")
    for day in args.days:
        print(write_day(counts, day))


if __name__ == "__main__":
    main()
