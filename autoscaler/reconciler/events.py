"""Turning Swarm events into "reconcile these services soon".

Events only make the loop react sooner; the periodic tick stays the source of truth
(level-triggered), so an event we cannot attribute simply wakes a full pass and a lost
event costs at most one interval.
"""

from __future__ import annotations


def touched_services(event: object) -> frozenset[str] | None:
    """The service names an event concerns; None when it may concern any service.

    Service and task events carry their service's ``name`` (``targets.swarm_events``);
    node events (a node going down or coming back) may move tasks of every service, and an
    event without a name cannot be attributed, so both wake everything.
    """
    kind = getattr(event, "kind", None)
    name = getattr(event, "name", None)
    if kind in ("service", "task") and isinstance(name, str) and name:
        return frozenset({name})
    return None
