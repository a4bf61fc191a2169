"""Pause and resume a service by its labels, through Swarm's compare-and-swap.

The labels are changed on the spec as read and written back at that spec's version, like
a scale: a concurrent writer (``docker service update --env-add``, a stack deploy, the
controller scaling) makes Swarm refuse the write, and it is tried again on the fresh spec,
so nobody's change is lost. Only the labels change, so no task restarts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from autoscaler.errors import VersionConflictError
from autoscaler.policy_sources.label_controls import paused_labels, resumed_labels
from autoscaler.reconciler.ports import SpecWriter

DEFAULT_ATTEMPTS = 10


@dataclass(frozen=True, slots=True)
class LabelWrite:
    """What a pause or resume wrote: the labels after it, and how many tries it took."""

    labels: dict[str, str]
    attempts: int


async def pause(
    writer: SpecWriter,
    service: str,
    *,
    by: str,
    at: datetime,
    replicas: int | None = None,
    attempts: int = DEFAULT_ATTEMPTS,
) -> LabelWrite:
    """Set ``autoscaler.paused`` (and ``pausedReplicas`` when given) with who and when (UTC)."""
    return await _write(
        writer, service, lambda labels: paused_labels(labels, by=by, at=at, replicas=replicas), attempts
    )


async def resume(writer: SpecWriter, service: str, *, attempts: int = DEFAULT_ATTEMPTS) -> LabelWrite:
    """Remove every pause label; the controller carries on from its engine's history."""
    return await _write(writer, service, resumed_labels, attempts)


async def _write(
    writer: SpecWriter,
    service: str,
    change: Callable[[dict[str, str]], dict[str, str]],
    attempts: int,
) -> LabelWrite:
    written: dict[str, str] = {}

    def mutate(spec: dict[str, Any]) -> None:
        nonlocal written
        written = change(dict(spec.get("Labels") or {}))
        spec["Labels"] = written

    for attempt in range(1, attempts + 1):
        try:
            await writer.update_spec(service, None, mutate)
        except VersionConflictError:
            if attempt == attempts:
                raise
            continue  # someone else wrote first: read their spec and apply ours on top
        return LabelWrite(written, attempt)
    raise AssertionError("unreachable: the loop returns or raises")
