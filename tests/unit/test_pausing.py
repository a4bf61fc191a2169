"""pause/resume: the read-modify-write of the labels, retried when Swarm refuses a stale write."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from autoscaler.errors import VersionConflictError
from autoscaler.reconciler import pausing

AT = datetime(2026, 12, 1, 16, 40, tzinfo=UTC)


class ScriptedSwarm:
    """One service spec; ``interleave`` other writers that get in between our read and write."""

    def __init__(self, labels: dict[str, str], interleave: list[Callable[[dict[str, Any]], None]]) -> None:
        self.spec: dict[str, Any] = {"Name": "web", "Labels": labels, "Env": []}
        self.version = 1
        self.interleave = interleave
        self.writes = 0

    async def update_spec(
        self, service: str, version: int | None, mutate: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        read_version, spec = self.version, copy.deepcopy(self.spec)
        mutate(spec)
        if self.interleave:  # someone else writes first: Swarm's CAS refuses ours
            self.interleave.pop(0)(self.spec)
            self.version += 1
        if read_version != self.version:
            raise VersionConflictError("update out of sequence")
        self.spec, self.version, self.writes = spec, self.version + 1, self.writes + 1
        return spec


def test_pause_lost_races_are_retried_on_the_fresh_spec() -> None:
    swarm = ScriptedSwarm(
        {"keep": "me"}, [lambda s: s["Env"].append("A=1"), lambda s: s["Env"].append("B=2")]
    )

    written = asyncio.run(pausing.pause(swarm, "web", by="ana", at=AT, replicas=0))

    assert written.attempts == 3 and swarm.writes == 1
    assert swarm.spec["Env"] == ["A=1", "B=2"], "the concurrent updates are kept"
    assert swarm.spec["Labels"] == {
        "keep": "me",
        "autoscaler.paused": "true",
        "autoscaler.pausedBy": "ana",
        "autoscaler.pausedAt": "2026-12-01T16:40:00Z",
        "autoscaler.pausedReplicas": "0",
    }
    assert written.labels == swarm.spec["Labels"]


def test_resume_removes_only_the_pause_labels() -> None:
    labels = {
        "keep": "me",
        "autoscaler.paused": "true",
        "autoscaler.pausedBy": "ana",
        "autoscaler.enable": "true",
    }
    swarm = ScriptedSwarm(labels, [])

    written = asyncio.run(pausing.resume(swarm, "web"))

    assert written.attempts == 1
    assert swarm.spec["Labels"] == {"keep": "me", "autoscaler.enable": "true"}


def test_a_writer_that_always_wins_makes_pause_give_up_without_writing() -> None:
    swarm = ScriptedSwarm({}, [lambda s: None] * 3)

    with pytest.raises(VersionConflictError):
        asyncio.run(pausing.pause(swarm, "web", by="ana", at=AT, attempts=3))

    assert swarm.writes == 0 and "autoscaler.paused" not in swarm.spec["Labels"]
