"""Swarm nodes and tasks as the failover tracker sees them, plus the one write it needs.

Reads go to one manager: ``GET /nodes`` and ``GET /tasks`` filtered by service (Swarm keeps
each slot's recent task history, shut-down tasks with the node they ran on, which is what lets
a restarted controller rebuild an ongoing failover). ``force_update`` bumps
``TaskTemplate.ForceUpdate`` with the ``Version.Index`` compare-and-swap, which makes Swarm
replace every task of the service (``docker service update --force``).

No retries here: the failover monitor calls again on its next resync. Every aiodocker/aiohttp
error becomes one of ``autoscaler.errors``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from typing import Any, TypeVar

import aiodocker
import aiohttp

from autoscaler.core.failover_tracker import NodeView, TaskView
from autoscaler.errors import PermanentTargetError, TemporaryTargetError, VersionConflictError
from autoscaler.targets.docker_endpoint import DockerEndpoint
from autoscaler.targets.swarm import parse_timestamp
from autoscaler.targets.swarm_events import SwarmEvent, stream_events

T = TypeVar("T")

_CANNOT_CONNECT = 900  # aiodocker's pseudo status for a failed connection
_OUT_OF_SEQUENCE = "update out of sequence"


def node_view(raw: dict[str, Any]) -> NodeView:
    """A ``NodeView`` of one ``GET /nodes`` entry."""
    updated = raw.get("UpdatedAt")
    return NodeView(
        id=str(raw["ID"]),
        hostname=str(raw.get("Description", {}).get("Hostname") or raw["ID"][:12]),
        state=str(raw.get("Status", {}).get("State", "unknown")),
        availability=str(raw.get("Spec", {}).get("Availability", "active")),
        updated_at=parse_timestamp(updated) if updated else None,
    )


def task_view(raw: dict[str, Any]) -> TaskView:
    """A ``TaskView`` of one ``GET /tasks`` entry (``NodeID`` is absent until scheduled)."""
    status = raw.get("Status", {})
    created = parse_timestamp(raw["CreatedAt"])
    stamp = status.get("Timestamp")
    slot = raw.get("Slot")
    return TaskView(
        id=str(raw["ID"]),
        service_id=str(raw["ServiceID"]),
        node_id=raw.get("NodeID") or None,
        slot=int(slot) if slot else None,
        state=str(status.get("State", "new")),
        desired_state=str(raw.get("DesiredState", "running")),
        created_at=created,
        status_at=parse_timestamp(stamp) if stamp else created,
        error=status.get("Err") or None,
        message=str(status.get("Message", "")),
    )


class SwarmNodes:
    """Node and task reads (and ``force_update``) through one Swarm manager's Engine API.

    ``docker`` is an ``aiodocker.Docker`` the caller owns, or an endpoint URL
    (``unix:///run/docker.sock``, ``tcp://10.0.0.1:2375``; None: ``DOCKER_HOST``) for a
    client made on first use and closed by ``close()``.
    """

    def __init__(self, docker: aiodocker.Docker | str | None = None, *, timeout: float = 10.0) -> None:
        self._endpoint = DockerEndpoint(docker, timeout=timeout)
        self._timeout = timeout

    @property
    def where(self) -> str:
        return self._endpoint.where

    def _client(self) -> aiodocker.Docker:
        return self._endpoint.client()

    async def close(self) -> None:
        """Close the client this object made (never one the caller passed in)."""
        await self._endpoint.close()

    async def list_nodes(self) -> list[NodeView]:
        raw: list[dict[str, Any]] = await self._call(lambda d: d._query_json("nodes"))
        return self._read(raw, node_view)

    async def list_tasks(self, service_ids: Collection[str] | None = None) -> list[TaskView]:
        """Tasks of ``service_ids`` (all services when None), current and recent history."""
        if service_ids is not None and not service_ids:
            return []
        params = {}
        if service_ids is not None:
            params["filters"] = json.dumps({"service": sorted(service_ids)})
        raw: list[dict[str, Any]] = await self._call(lambda d: d._query_json("tasks", params=params))
        # The service filter also matches name prefixes: keep exactly the services asked for.
        wanted = None if service_ids is None else set(service_ids)
        return self._read([t for t in raw if wanted is None or t.get("ServiceID") in wanted], task_view)

    async def force_update(self, service_id: str) -> int:
        """Make Swarm replace every task of the service; returns the new ``ForceUpdate`` counter.

        Raises ``VersionConflictError`` if the service changed between read and write.
        """
        service: dict[str, Any] = await self._call(lambda d: d._query_json(f"services/{service_id}"))
        try:
            spec: dict[str, Any] = service["Spec"]
            template = spec.setdefault("TaskTemplate", {})
            template["ForceUpdate"] = int(template.get("ForceUpdate", 0)) + 1
            version = int(service["Version"]["Index"])
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise PermanentTargetError(
                f"Docker at {self.where} sent service {service_id} without Spec.TaskTemplate or "
                f"Version.Index ({type(exc).__name__}: {exc})"
            ) from exc
        body = json.dumps(spec)
        await self._call(
            lambda d: d._query_json(
                f"services/{service_id}/update", method="POST", params={"version": version}, data=body
            )
        )
        return int(template["ForceUpdate"])

    def events(self) -> AsyncIterator[SwarmEvent]:
        """Node, service and task events from the manager, reconnecting until cancelled."""
        return stream_events(self._client, self._timeout)

    async def _call(self, request: Callable[[aiodocker.Docker], Awaitable[T]]) -> T:
        try:
            return await request(self._client())
        except TimeoutError as exc:
            raise TemporaryTargetError(
                f"Docker at {self.where}: no answer within {self._timeout:g}s"
            ) from exc
        except aiodocker.DockerError as exc:
            message = str(exc.message)
            if _OUT_OF_SEQUENCE in message:
                raise VersionConflictError(
                    f"Docker at {self.where} refused the update: {message}; re-read the service"
                ) from exc
            if exc.status == _CANNOT_CONNECT or exc.status >= 500:
                raise TemporaryTargetError(f"Docker at {self.where}: {message}") from exc
            raise PermanentTargetError(f"Docker at {self.where} answered {exc.status}: {message}") from exc
        except aiohttp.ClientError as exc:
            raise TemporaryTargetError(f"Docker at {self.where}: {type(exc).__name__}: {exc}") from exc

    def _read(self, objects: list[dict[str, Any]], parse: Callable[[dict[str, Any]], T]) -> list[T]:
        try:
            return [parse(o) for o in objects]
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise PermanentTargetError(
                f"Docker at {self.where} sent a node or task this code cannot read "
                f"({type(exc).__name__}: {exc}); is it a Swarm manager (API >= 1.41)?"
            ) from exc
