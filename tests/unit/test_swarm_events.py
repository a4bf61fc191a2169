"""The event stream's reconnect: it asks for the gap with ``since`` and never yields twice.

A scripted Engine API on loopback ends the first stream early, then checks that the second
request carries ``since`` = the last event seen, and replays that event plus a new one.
(The real daemon's events are covered in tests/integration/test_swarm_target.py.)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from autoscaler.targets.swarm import SwarmEvent, SwarmTarget

T0 = time.time_ns()


def raw_event(kind: str, action: str, actor: str, at_ns: int, **attributes: str) -> dict[str, Any]:
    return {
        "Type": kind,
        "Action": action,
        "Actor": {"ID": actor, "Attributes": attributes},
        "time": at_ns // 1_000_000_000,
        "timeNano": at_ns,
    }


CREATE = raw_event("service", "create", "svc1", T0, name="web")
TASK_START = raw_event(
    "container",
    "start",
    "c1",
    T0 + 5,
    **{"com.docker.swarm.service.id": "svc1", "com.docker.swarm.service.name": "web"},
)
PLAIN_CONTAINER = raw_event("container", "start", "c2", T0 + 3, name="not-a-task")
NODE_DOWN = raw_event("node", "update", "node2", T0 + 9, name="node2")


class ScriptedEngine:
    def __init__(self) -> None:
        self.event_requests: list[dict[str, str]] = []
        self.release_second = asyncio.Event()

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response({"ApiVersion": "1.41"})

    async def events(self, request: web.Request) -> web.StreamResponse:
        self.event_requests.append(dict(request.query))
        response = web.StreamResponse()
        await response.prepare(request)
        if len(self.event_requests) == 1:
            for event in (CREATE, PLAIN_CONTAINER, TASK_START):
                await response.write(json.dumps(event).encode() + b"\n")
            return response  # the daemon goes away mid-stream
        for event in (TASK_START, NODE_DOWN):  # Docker replays from ``since`` inclusive
            await response.write(json.dumps(event).encode() + b"\n")
        await self.release_second.wait()
        return response


@pytest.fixture
async def engine() -> AsyncIterator[tuple[ScriptedEngine, str]]:
    script = ScriptedEngine()
    app = web.Application()
    app.router.add_get("/version", script.version)
    app.router.add_get("/v1.41/events", script.events)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield script, f"tcp://127.0.0.1:{port}"
    script.release_second.set()
    await runner.cleanup()


async def test_reconnect_replays_the_gap_without_duplicates(engine: tuple[ScriptedEngine, str]) -> None:
    script, url = engine
    target = SwarmTarget(url, timeout=2.0)
    seen: list[SwarmEvent] = []
    stream = target.events()
    try:
        async with asyncio.timeout(20):
            async for event in stream:
                seen.append(event)
                if event.kind == "node":
                    break
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
        await target.close()

    assert [(e.kind, e.action, e.id, e.name) for e in seen] == [
        ("service", "create", "svc1", "web"),
        ("task", "start", "svc1", "web"),
        ("node", "update", "node2", "node2"),
    ]
    assert seen[0].at == pytest.approx(T0 / 1e9)
    first, second = script.event_requests
    assert "since" not in first
    assert json.loads(first["filters"]) == json.loads(second["filters"])
    seconds, nanos = second["since"].split(".")
    assert int(seconds) * 1_000_000_000 + int(nanos) == TASK_START["timeNano"]
