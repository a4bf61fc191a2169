"""The HA lease's labels on the controller's own Swarm service spec (``Spec.Labels``).

Reads and writes go through ``DockerApi``; a write is ``DockerApi.update_spec`` at the
version read, so Swarm's compare-and-swap refuses it if anyone wrote in between.
"""

from __future__ import annotations

from typing import Any

from autoscaler.core.lease_rules import SpecLabels
from autoscaler.errors import PermanentTargetError
from autoscaler.targets.docker_api import DockerApi, NotFoundError


class ServiceLabelStore:
    """``reconciler.ports.LabelStore`` on a Swarm service, through the Docker Engine API."""

    def __init__(self, docker: DockerApi, service: str) -> None:
        self._docker = docker
        self._service = service

    async def read(self) -> SpecLabels:
        try:
            info = await self._docker.inspect_service(self._service)
        except NotFoundError as exc:
            raise self._no_such_service(exc) from exc
        try:
            return SpecLabels(
                version=int(info["Version"]["Index"]), labels=dict(info["Spec"].get("Labels") or {})
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PermanentTargetError(
                f"Docker at {self._docker.where} sent service {self._service!r} without Spec.Labels "
                f"or Version.Index ({type(exc).__name__}: {exc})"
            ) from exc

    async def write(self, version: int, labels: dict[str, str]) -> None:
        """Merge ``labels`` into the spec's, only at ``version``; raises ``VersionConflictError``."""

        def merge(spec: dict[str, Any]) -> None:
            spec["Labels"] = {**(spec.get("Labels") or {}), **labels}

        try:
            await self._docker.update_spec(self._service, version, merge)
        except NotFoundError as exc:
            raise self._no_such_service(exc) from exc

    def _no_such_service(self, exc: NotFoundError) -> PermanentTargetError:
        return PermanentTargetError(
            f"lease service {self._service!r}: no such service ({exc}). Set AUTOSCALER_LEASE__SERVICE "
            "to the controller's own service name (in a stack: <stack>_<service>)"
        )
