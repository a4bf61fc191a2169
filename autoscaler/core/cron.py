"""Cron times in a time zone, for ``spec.schedules``: a thin layer over cronsim and zoneinfo.

cronsim parses and walks the expressions (Debian cron's semantics, daylight-saving jumps
included); this module only turns its errors into policy messages and answers the two
questions a schedule asks: the latest cron time at or before a moment, and the next one
after it. Times are Unix seconds in, aware datetimes inside.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

# Fixed instant used only to check that an expression parses.
_CHECK_AT = datetime(2026, 1, 1, tzinfo=UTC)


def cron_problem(expr: str) -> str | None:
    """Why ``expr`` is not a usable 5-field cron expression, or None."""
    if len(expr.split()) != 5:
        return (
            f"not a 5-field cron expression ({len(expr.split())} fields): "
            "write minute hour day-of-month month day-of-week, e.g. '0 8 * * 1-5'"
        )
    try:
        CronSim(expr, _CHECK_AT)
    except CronSimError as exc:
        return f"not a valid cron expression: {exc} (e.g. '0 8 * * 1-5' is 08:00 Monday to Friday)"
    return None


def timezone_problem(name: str) -> str | None:
    """Why ``name`` is not a known IANA time zone, or None."""
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {name!r}: use an IANA name such as UTC or Europe/Paris"
    return None


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def latest_at_or_before(expr: str, zone_name: str, at: float) -> float | None:
    """The latest time ``expr`` matches at or before ``at`` (Unix seconds), or None if never."""
    # cronsim iterates strictly before its start; start one second later to include ``at``.
    start = datetime.fromtimestamp(int(at) + 1, tz=zone(zone_name))
    try:
        found = next(CronSim(expr, start, reverse=True))
    except StopIteration:
        return None
    return found.timestamp()


def next_after(expr: str, zone_name: str, at: float) -> float | None:
    """The first time ``expr`` matches strictly after ``at`` (Unix seconds), or None if never."""
    start = datetime.fromtimestamp(int(at), tz=zone(zone_name))
    try:
        found = next(CronSim(expr, start))
    except StopIteration:
        return None
    return found.timestamp()


def describe(at: float, zone_name: str) -> str:
    """``at`` as local wall time in ``zone_name``, for reasons: 2026-12-01 08:00 Europe/Paris."""
    local = datetime.fromtimestamp(at, tz=zone(zone_name))
    return f"{local:%Y-%m-%d %H:%M} {zone_name}"
