"""Turning Swarm events into "reconcile these services soon".

Events only make the loop react sooner; the periodic tick stays the source of truth
(level-triggered), so an event we cannot attribute simply wakes a full pass and a lost
event costs at most one interval.
"""

from __future__ import annotations

from autoscaler.core.observation import SwarmEvent


def touched_services(event: SwarmEvent) -> frozenset[str] | None:
    """The service names an event concerns; None when it may concern any service.

    Service and task events carry their service's ``name`` (``targets.swarm_events``);
    node events (a node going down or coming back) may move tasks of every service, and an
    event without a name cannot be attributed, so both wake everything.
    """
    if event.kind in ("service", "task") and event.name:
        return frozenset({event.name})
    return None
