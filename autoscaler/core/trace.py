"""Traffic traces for the simulator: ``t,<metric>,...`` CSV text parsed into columns.

A trace says what each metric source would report for the whole service at each time.
The latest row with ``t_row <= t`` applies at time ``t``; an empty cell or ``NaN`` means
the source returned no data then. Parsing takes text, not a path, so it stays pure.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from autoscaler.errors import PolicyError


class TraceError(PolicyError):
    """The trace file is malformed; ``problems`` holds ``where: what`` lines."""


@dataclass(frozen=True, slots=True)
class Trace:
    """Column-oriented trace: ``times[i]`` and ``values[name][i]`` (None = no data)."""

    metric_names: tuple[str, ...]
    times: tuple[float, ...]
    values: dict[str, tuple[float | None, ...]]

    @property
    def end(self) -> float:
        return self.times[-1]

    def __len__(self) -> int:
        return len(self.times)


def _cell(text: str) -> float | None:
    """A cell's number; None (no data) for an empty cell or NaN."""
    text = text.strip()
    if text == "":
        return None
    value = float(text)
    return None if math.isnan(value) else value


def parse_trace(text: str, *, where: str = "trace", expected: Sequence[str] | None = None) -> Trace:
    """Parse CSV ``text``; raise TraceError listing every problem (up to 20) with its line.

    ``expected`` (the policy's metric names) makes unknown or missing columns an error,
    because a typo in a column name would otherwise silently simulate "no data".
    """
    problems: list[str] = []
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        problem = f"{where}:1: empty file; expected a header t,<metric>,..."
        raise TraceError(problem, [problem]) from None
    header = [h.strip() for h in header]
    if not header or header[0] != "t":
        problems.append(f"{where}:1: first column must be 't' (seconds from 0), found {header[:1]}")
    names = tuple(header[1:])
    if not names:
        problems.append(f"{where}:1: no metric columns; add one column per policy metric, e.g. t,rps")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"{where}:1: repeated column(s): {', '.join(dupes)}")
    if expected is not None:
        unknown = [n for n in names if n not in expected]
        missing = [n for n in expected if n not in names]
        if unknown:
            problems.append(
                f"{where}:1: column(s) {', '.join(unknown)} are not metrics of the policy "
                f"(its metrics: {', '.join(expected)})"
            )
        if missing:
            problems.append(
                f"{where}:1: no column for policy metric(s) {', '.join(missing)}; "
                "add them (leave cells empty to simulate missing data)"
            )
    if problems:
        raise TraceError(f"{where}: bad header", problems)

    times: list[float] = []
    columns: list[list[float | None]] = [[] for _ in names]
    for row in reader:
        line = reader.line_num
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            problems.append(f"{where}:{line}: {len(row)} cells, the header has {len(header)}")
            continue
        try:
            t = float(row[0])
        except ValueError:
            problems.append(f"{where}:{line}: t={row[0]!r} is not a number")
            continue
        if not math.isfinite(t) or t < 0:
            problems.append(f"{where}:{line}: t={row[0]} must be a finite number of seconds >= 0")
            continue
        if times and t <= times[-1]:
            problems.append(f"{where}:{line}: t={row[0]} is not after the previous row's t={times[-1]:g}")
            continue
        cells: list[float | None] = []
        for name, raw in zip(names, row[1:], strict=True):
            try:
                cells.append(_cell(raw))
            except ValueError:
                problems.append(f"{where}:{line}: {name}={raw!r} is not a number (leave empty for no data)")
                break
        if len(cells) < len(names):
            continue
        times.append(t)
        for column, value in zip(columns, cells, strict=True):
            column.append(value)
        if len(problems) >= 20:
            problems.append(f"{where}: stopping after 20 problems")
            break
    if not times and not problems:
        problems.append(f"{where}: header only, no rows")
    if problems:
        raise TraceError(f"{where}: {len(problems)} problem(s)", problems)
    return Trace(
        metric_names=names,
        times=tuple(times),
        values={n: tuple(c) for n, c in zip(names, columns, strict=True)},
    )
