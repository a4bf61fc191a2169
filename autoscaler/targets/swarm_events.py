"""Docker's event stream reduced to what makes the reconciler look again.

Service and node events come from the manager's swarm scope. Swarm has no task events of
its own, so a task starting or dying is seen as the container event of a container carrying
``com.docker.swarm.service.id`` (only the containers on the node whose daemon is being
watched, which is why the reconciler still polls).

The stream reconnects forever with a bounded backoff and asks Docker for the events it
missed meanwhile (``since`` = the last event seen), skipping the ones it already yielded.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiodocker
import aiohttp

from autoscaler.core.observation import SwarmEvent

_SERVICE_ID_LABEL = "com.docker.swarm.service.id"
_SERVICE_NAME_LABEL = "com.docker.swarm.service.name"
_TASK_ACTIONS = ("start", "die", "health_status")
_FILTERS = json.dumps({"type": ["service", "node", "container"]})
_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 10.0


def event_from_docker(raw: dict[str, Any]) -> SwarmEvent | None:
    """The ``SwarmEvent`` of one decoded Docker event, or None when it is not about the swarm."""
    kind = raw.get("Type")
    action = str(raw.get("Action", ""))
    actor = raw.get("Actor") or {}
    attributes: dict[str, str] = actor.get("Attributes") or {}
    at = int(raw.get("timeNano", 0)) / 1e9 or float(raw.get("time", 0))
    if kind in ("service", "node"):
        return SwarmEvent(kind, action, str(actor.get("ID", "")), attributes.get("name"), at)
    if kind == "container" and _SERVICE_ID_LABEL in attributes and action.startswith(_TASK_ACTIONS):
        return SwarmEvent(
            "task",
            action.split(":")[0],
            attributes[_SERVICE_ID_LABEL],
            attributes.get(_SERVICE_NAME_LABEL),
            at,
        )
    return None


async def stream_events(
    client: Callable[[], aiodocker.Docker], connect_timeout: float
) -> AsyncIterator[SwarmEvent]:
    """Yield swarm events until cancelled; ``client`` gives the (lazily made) aiodocker client."""
    since: int | None = None  # timeNano of the newest event yielded
    seen_at_since: set[str] = set()
    backoff = _BACKOFF_FIRST
    # Connect timeout bounded; no read timeout, because a quiet swarm sends nothing for hours.
    stream_timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, sock_read=None)
    while True:
        params = {"filters": _FILTERS}
        if since is not None:
            params["since"] = f"{since // 1_000_000_000}.{since % 1_000_000_000:09d}"
        connected_at = time.time_ns()
        try:
            async with client()._query("events", params=params, timeout=stream_timeout) as response:
                backoff = _BACKOFF_FIRST
                async for line in response.content:
                    if not line.strip():
                        continue
                    raw = json.loads(line)
                    stamp = int(raw.get("timeNano", 0))
                    key = line.decode(errors="replace")
                    if since is not None and (stamp < since or (stamp == since and key in seen_at_since)):
                        continue  # replayed after a reconnect, already yielded
                    if since is None or stamp > since:
                        since, seen_at_since = stamp, set()
                    seen_at_since.add(key)
                    event = event_from_docker(raw)
                    if event is not None:
                        yield event
        except (aiodocker.DockerError, aiohttp.ClientError, TimeoutError, ValueError):
            pass  # reconnect below; the gap is replayed through ``since``
        if since is None:
            since = connected_at
        await asyncio.sleep(backoff)  # backoff between reconnects, not synchronisation
        backoff = min(backoff * 2, _BACKOFF_MAX)
