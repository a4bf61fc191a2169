"""Docker Swarm as the scaling target: services read, and scaled through ``DockerApi.update_spec``.

Errors and retries are ``targets.docker_api``'s (one place for the whole controller).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from autoscaler.core.observation import ServiceState, SwarmEvent
from autoscaler.errors import PermanentTargetError
from autoscaler.targets.docker_api import DockerApi, NotFoundError
from autoscaler.targets.swarm_events import stream_events

__all__ = ["SwarmEvent", "SwarmTarget", "parse_timestamp"]

_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$")


def parse_timestamp(text: str) -> float:
    """Unix seconds of an RFC 3339 time as Docker writes it (up to nanoseconds, Z or offset)."""
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    whole, fraction, zone = match.groups()
    base = datetime.fromisoformat(whole + ("+00:00" if zone == "Z" else zone))
    return base.timestamp() + (float("0." + fraction) if fraction else 0.0)


def _replicas_of(spec: dict[str, Any]) -> int | None:
    """Mode.Replicated.Replicas; None for global services and jobs, which are never scaled."""
    mode = spec.get("Mode", {})
    if "Replicated" not in mode:
        return None
    # Docker fills the default (1) in at creation, so an absent value is only seen from old engines.
    return int(mode["Replicated"].get("Replicas", 1))


def _state_of(service: dict[str, Any], running: int) -> ServiceState:
    spec = service.get("Spec", {})
    update_state = service.get("UpdateStatus", {}).get("State") or None
    return ServiceState(
        id=service["ID"],
        name=spec.get("Name", service["ID"]),
        replicas=_replicas_of(spec),
        running=running,
        version=int(service["Version"]["Index"]),
        updated_at=parse_timestamp(service["UpdatedAt"]),
        labels=dict(spec.get("Labels") or {}),
        update_state=update_state,
        load_balanced=bool(service.get("Endpoint", {}).get("VirtualIPs")),
        previous_replicas=_replicas_of(service["PreviousSpec"]) if "PreviousSpec" in service else None,
    )


def _running_service_id(task: dict[str, Any]) -> str | None:
    """The task's service ID if the task runs (and is meant to), else None."""
    if task.get("DesiredState") == "running" and task.get("Status", {}).get("State") == "running":
        return str(task["ServiceID"])
    return None


def _running_by_service(tasks: list[dict[str, Any]]) -> Counter[str]:
    return Counter(service_id for service_id in map(_running_service_id, tasks) if service_id is not None)


class SwarmTarget:
    """Reads and scales Swarm services through one manager's Engine API.

    ``docker`` is the shared ``DockerApi`` (the controller makes one), or what ``DockerApi``
    takes (an endpoint URL; None: ``DOCKER_HOST``) for an adapter of its own.
    """

    def __init__(
        self, docker: DockerApi | str | None = None, *, timeout: float = 10.0, retries: int = 2
    ) -> None:
        self._owns_api = not isinstance(docker, DockerApi)
        self.api = (
            docker if isinstance(docker, DockerApi) else DockerApi(docker, timeout=timeout, retries=retries)
        )

    @property
    def where(self) -> str:
        return self.api.where

    @property
    def http_requests(self) -> int:
        """Attempts sent through the Docker adapter, retries included; read by bench and tests."""
        return self.api.http_requests

    async def close(self) -> None:
        if self._owns_api:
            await self.api.close()

    async def list_services(self) -> list[ServiceState]:
        # Both lists are read item by item, each item reduced at once to what is kept (a
        # running task's service ID, a ServiceState): decoded whole, 10,000 services were
        # ~35 MiB at once for ~4 MiB kept. The tasks first: each service's state needs its count.
        filters = json.dumps({"desired-state": ["running"]})
        with self._unexpected_shape("services or tasks list"):
            task_services = await self.api.get_each("tasks", _running_service_id, {"filters": filters})
            running = Counter(service_id for service_id in task_services if service_id is not None)
            return await self.api.get_each("services", lambda s: _state_of(s, running[s["ID"]]))

    async def get_service(self, name_or_id: str) -> ServiceState | None:
        try:
            service = await self.api.inspect_service(name_or_id)
        except NotFoundError:
            return None
        with self._unexpected_shape(f"service {name_or_id!r}"):
            return _state_of(service, await self._count_running(service["ID"]))

    async def scale(
        self, state: ServiceState, replicas: int, *, labels: Mapping[str, str] | None = None
    ) -> ServiceState:
        if replicas < 0:
            raise PermanentTargetError(f"cannot scale service {state.name!r} to {replicas} replicas (< 0)")

        def set_replicas(spec: dict[str, Any]) -> None:
            if _replicas_of(spec) is None:
                mode = ", ".join(spec.get("Mode", {})) or "unknown"
                raise PermanentTargetError(
                    f"service {state.name!r} runs in {mode} mode; only replicated services can be scaled"
                )
            spec["Mode"]["Replicated"]["Replicas"] = replicas
            if labels:
                # In the same versioned update as the replicas: one change, or neither.
                spec["Labels"] = {**(spec.get("Labels") or {}), **labels}

        try:
            await self.api.update_spec(state.id, state.version, set_replicas)
        except NotFoundError as exc:
            raise PermanentTargetError(f"service {state.name!r} ({state.id}) no longer exists") from exc
        updated = await self.get_service(state.id)
        if updated is None:
            raise PermanentTargetError(f"service {state.name!r} ({state.id}) vanished right after scaling")
        return updated

    def events(self) -> AsyncIterator[SwarmEvent]:
        """Service, node and task events, reconnecting (and replaying the gap) until cancelled."""
        return stream_events(self.api.client, self.api.timeout)

    async def _count_running(self, service_id: str) -> int:
        filters = json.dumps({"service": [service_id], "desired-state": ["running"]})
        tasks = await self.api.get("tasks", {"filters": filters})
        return _running_by_service(tasks)[service_id]

    @contextmanager
    def _unexpected_shape(self, what: str) -> Iterator[None]:
        """A Docker answer this code cannot read is a permanent error, not a KeyError."""
        try:
            yield
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PermanentTargetError(
                f"Docker at {self.where} sent a {what} this autoscaler cannot read ({exc!r}); "
                "is it an Engine API >= 1.41 swarm manager?"
            ) from exc
