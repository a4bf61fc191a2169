"""Swarm nodes and tasks as the failover tracker sees them, plus the one write it needs.

Reads go to one manager: ``GET /nodes`` and ``GET /tasks`` filtered by service (Swarm keeps
each slot's recent task history, shut-down tasks with the node they ran on, which is what lets
a restarted controller rebuild an ongoing failover). ``force_update`` bumps
``TaskTemplate.ForceUpdate`` through ``DockerApi.update_spec`` (the ``Version.Index``
compare-and-swap), which makes Swarm replace every task of the service
(``docker service update --force``). Errors and retries are ``targets.docker_api``'s.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any, TypeVar

import aiodocker

from autoscaler.core.failover_tracker import NodeView, TaskView
from autoscaler.core.observation import SwarmEvent
from autoscaler.errors import PermanentTargetError
from autoscaler.targets.docker_api import DockerApi
from autoscaler.targets.swarm import parse_timestamp
from autoscaler.targets.swarm_events import stream_events

T = TypeVar("T")


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
        addresses=_addresses(raw),
    )


def _addresses(raw: dict[str, Any]) -> tuple[str, ...]:
    """The task's IPs on its networks (``NetworksAttachments[].Addresses``, "10.0.1.5/24")."""
    return tuple(
        str(address).split("/", 1)[0]
        for attachment in raw.get("NetworksAttachments") or ()
        for address in attachment.get("Addresses") or ()
    )


class SwarmNodes:
    """Node and task reads (and ``force_update``) through one Swarm manager's Engine API.

    ``docker`` is the shared ``DockerApi`` (the controller makes one), or what ``DockerApi``
    takes (an ``aiodocker.Docker`` the caller owns, an endpoint URL; None: ``DOCKER_HOST``)
    for an adapter of its own, closed by ``close()``.
    """

    def __init__(
        self, docker: DockerApi | aiodocker.Docker | str | None = None, *, timeout: float = 10.0
    ) -> None:
        self._owns_api = not isinstance(docker, DockerApi)
        self.api = docker if isinstance(docker, DockerApi) else DockerApi(docker, timeout=timeout)

    @property
    def where(self) -> str:
        return self.api.where

    async def close(self) -> None:
        """Close the adapter made here (never one the caller passed in)."""
        if self._owns_api:
            await self.api.close()

    async def list_nodes(self) -> list[NodeView]:
        raw: list[dict[str, Any]] = await self.api.get("nodes")
        return self._read(raw, node_view)

    async def list_tasks(self, service_ids: Collection[str] | None = None) -> list[TaskView]:
        """Tasks of ``service_ids`` (all services when None), current and recent history."""
        if service_ids is not None and not service_ids:
            return []
        params = {}
        if service_ids is not None:
            params["filters"] = json.dumps({"service": sorted(service_ids)})
        raw: list[dict[str, Any]] = await self.api.get("tasks", params)
        # The service filter also matches name prefixes: keep exactly the services asked for.
        wanted = None if service_ids is None else set(service_ids)
        return self._read([t for t in raw if wanted is None or t.get("ServiceID") in wanted], task_view)

    async def force_update(self, service_id: str) -> int:
        """Make Swarm replace every task of the service; returns the new ``ForceUpdate`` counter.

        Raises ``VersionConflictError`` if the service changed between read and write.
        """

        def bump(spec: dict[str, Any]) -> None:
            try:
                template = spec.setdefault("TaskTemplate", {})
                template["ForceUpdate"] = int(template.get("ForceUpdate", 0)) + 1
            except (ValueError, TypeError, AttributeError) as exc:
                raise PermanentTargetError(
                    f"Docker at {self.where} sent service {service_id} with an unreadable "
                    f"Spec.TaskTemplate ({type(exc).__name__}: {exc})"
                ) from exc

        spec = await self.api.update_spec(service_id, None, bump)
        return int(spec["TaskTemplate"]["ForceUpdate"])

    def events(self) -> AsyncIterator[SwarmEvent]:
        """Node, service and task events from the manager, reconnecting until cancelled."""
        return stream_events(self.api.client, self.api.timeout)

    def _read(self, objects: list[dict[str, Any]], parse: Callable[[dict[str, Any]], T]) -> list[T]:
        try:
            return [parse(o) for o in objects]
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            raise PermanentTargetError(
                f"Docker at {self.where} sent a node or task this code cannot read "
                f"({type(exc).__name__}: {exc}); is it a Swarm manager (API >= 1.41)?"
            ) from exc
