"""Turning Swarm events into "reconcile these services soon".

Events only make the loop react sooner; the periodic tick stays the source of truth
(level-triggered), so an event we cannot attribute simply wakes a full pass and a lost
event costs at most one interval.
"""

from __future__ import annotations

ALL_SERVICES: frozenset[str] = frozenset()


def touched_services(event: object) -> frozenset[str] | None:
    """The service names an event concerns; None when it may concern any service.

    Service and task events name their service; node events (a node going down or
    coming back) may move tasks of every service, so they wake everything.
    """
    kind = getattr(event, "kind", None)
    if kind == "node":
        return None
    for attribute in ("service", "service_name"):
        name = getattr(event, attribute, None)
        if isinstance(name, str) and name:
            return frozenset({name})
    if kind == "service":
        name = getattr(event, "name", None)
        if isinstance(name, str) and name:
            return frozenset({name})
    return None
