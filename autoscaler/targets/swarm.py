"""Docker Swarm as the scaling target, over the Engine API (aiodocker's HTTP session).

Calls go through aiodocker's low-level ``_query_json`` rather than its service helpers on
purpose: ``services.update`` only changes the image and passes the spec through
``clean_map`` (which drops empty and null fields), so it can neither set Replicas nor keep the
rest of the spec as it was. Here the spec read from ``GET /services/{id}`` goes back to
``POST /services/{id}/update?version=N`` with exactly one field changed.

Every aiodocker/aiohttp error is mapped onto ``autoscaler.errors``: unreachable daemon,
timeouts and 5xx are retried (bounded) then ``TemporaryTargetError``; Swarm's
"update out of sequence" is ``VersionConflictError`` (never retried: the caller must
re-read and decide again); other 4xx are ``PermanentTargetError``.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any, TypeVar

import aiodocker
import aiohttp
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from autoscaler.core.observation import ServiceState
from autoscaler.errors import PermanentTargetError, TemporaryTargetError, VersionConflictError
from autoscaler.targets.docker_endpoint import DockerEndpoint
from autoscaler.targets.swarm_events import SwarmEvent, stream_events

__all__ = ["SwarmEvent", "SwarmTarget", "parse_timestamp"]

T = TypeVar("T")

_RFC3339 = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$")
_OUT_OF_SEQUENCE = "update out of sequence"
# aiodocker reports a failed connection as a DockerError with this pseudo status.
_CANNOT_CONNECT = 900


class _Transient(Exception):
    """A failure that another attempt may not meet (connection, timeout, 5xx)."""


class _NotFoundError(PermanentTargetError):
    """404: no such service (``get_service`` turns it into None)."""


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
    )


def _running_by_service(tasks: list[dict[str, Any]]) -> Counter[str]:
    return Counter(
        task["ServiceID"]
        for task in tasks
        if task.get("DesiredState") == "running" and task.get("Status", {}).get("State") == "running"
    )


class SwarmTarget:
    """Reads and scales Swarm services through one manager's Engine API."""

    def __init__(self, docker_url: str | None = None, *, timeout: float = 10.0, retries: int = 2) -> None:
        if timeout <= 0 or retries < 0:
            raise ValueError(f"timeout must be > 0 and retries >= 0 (got {timeout}, {retries})")
        self._endpoint = DockerEndpoint(docker_url, timeout=timeout)
        self._timeout = timeout
        self._attempts = retries + 1
        self.http_requests = 0  # attempts sent, retries included; read by bench and tests

    @property
    def where(self) -> str:
        return self._endpoint.where

    def _client(self) -> aiodocker.Docker:
        return self._endpoint.client()

    async def close(self) -> None:
        await self._endpoint.close()

    async def list_services(self) -> list[ServiceState]:
        filters = json.dumps({"desired-state": ["running"]})
        try:
            # A TaskGroup, unlike gather, cancels the sibling call when one fails.
            async with asyncio.TaskGroup() as group:
                services = group.create_task(self._call(lambda d: d._query_json("services")))
                tasks = group.create_task(
                    self._call(lambda d: d._query_json("tasks", params={"filters": filters}))
                )
        except BaseExceptionGroup as group_error:
            raise group_error.exceptions[0] from None
        with self._unexpected_shape("services or tasks list"):
            running = _running_by_service(tasks.result())
            return [_state_of(service, running[service["ID"]]) for service in services.result()]

    async def get_service(self, name_or_id: str) -> ServiceState | None:
        service = await self._inspect(name_or_id)
        if service is None:
            return None
        with self._unexpected_shape(f"service {name_or_id!r}"):
            return _state_of(service, await self._count_running(service["ID"]))

    async def scale(self, state: ServiceState, replicas: int) -> ServiceState:
        if replicas < 0:
            raise PermanentTargetError(f"cannot scale service {state.name!r} to {replicas} replicas (< 0)")
        service = await self._inspect(state.id)
        if service is None:
            raise PermanentTargetError(f"service {state.name!r} ({state.id}) no longer exists")
        spec: dict[str, Any] = service["Spec"]
        if _replicas_of(spec) is None:
            mode = ", ".join(spec.get("Mode", {})) or "unknown"
            raise PermanentTargetError(
                f"service {state.name!r} runs in {mode} mode; only replicated services can be scaled"
            )
        current_version = int(service["Version"]["Index"])
        if current_version != state.version:
            raise VersionConflictError(
                f"service {state.name!r} changed since it was read (version {state.version} -> "
                f"{current_version}); re-read it before scaling"
            )
        spec["Mode"]["Replicated"]["Replicas"] = replicas
        body = json.dumps(spec)
        await self._call(
            lambda d: d._query_json(
                f"services/{state.id}/update", method="POST", params={"version": state.version}, data=body
            )
        )
        updated = await self.get_service(state.id)
        if updated is None:
            raise PermanentTargetError(f"service {state.name!r} ({state.id}) vanished right after scaling")
        return updated

    def events(self) -> AsyncIterator[SwarmEvent]:
        """Service, node and task events, reconnecting (and replaying the gap) until cancelled."""
        return stream_events(self._client, self._timeout)

    async def _inspect(self, name_or_id: str) -> dict[str, Any] | None:
        try:
            service: dict[str, Any] = await self._call(lambda d: d._query_json(f"services/{name_or_id}"))
        except _NotFoundError:
            return None
        return service

    async def _count_running(self, service_id: str) -> int:
        filters = json.dumps({"service": [service_id], "desired-state": ["running"]})
        tasks = await self._call(lambda d: d._query_json("tasks", params={"filters": filters}))
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

    async def _call(self, request: Callable[[aiodocker.Docker], Awaitable[T]]) -> T:
        """``request`` with bounded retries of transient failures, errors mapped to ours."""
        docker = self._client()
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=0.2, max=2.0),
                retry=retry_if_exception_type(_Transient),
                reraise=True,
            ):
                with attempt:
                    self.http_requests += 1
                    return await self._once(docker, request)
        except _Transient as exc:
            raise TemporaryTargetError(
                f"Docker at {self.where}: {exc} (after {self._attempts} attempts)"
            ) from exc
        raise AssertionError("unreachable: AsyncRetrying either returns or raises")

    async def _once(self, docker: aiodocker.Docker, request: Callable[[aiodocker.Docker], Awaitable[T]]) -> T:
        try:
            return await request(docker)
        except TimeoutError as exc:
            raise _Transient(f"no answer within {self._timeout:g}s") from exc
        except aiodocker.DockerError as exc:
            message = str(exc.message)
            if _OUT_OF_SEQUENCE in message:
                raise VersionConflictError(
                    f"Docker at {self.where} refused the update: {message}; re-read the service"
                ) from exc
            if exc.status == _CANNOT_CONNECT or exc.status >= 500:
                raise _Transient(message) from exc
            error = _NotFoundError if exc.status == 404 else PermanentTargetError
            raise error(f"Docker at {self.where} answered {exc.status}: {message}") from exc
        except aiohttp.ClientError as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
