"""The one Docker Engine API adapter: one aiodocker client, one error map, one retry policy.

Every read and write of the controller (services, tasks, nodes, the lease labels) goes
through ``DockerApi.call``, which maps aiodocker/aiohttp errors onto ``autoscaler.errors``
and retries the temporary ones with tenacity, bounded:

- unreachable daemon, timeouts and 5xx: retried, then ``TemporaryTargetError``;
- Swarm's "update out of sequence": ``VersionConflictError``, never retried (the caller must
  re-read and decide again);
- 404: ``NotFoundError``; other 4xx: ``PermanentTargetError``.

Spec writes go through ``update_spec`` only. It uses aiodocker's low-level ``_query_json``
rather than ``services.update`` on purpose: that helper only changes the image and passes the
spec through ``clean_map`` (dropping empty and null fields), so it can neither set Replicas
nor keep the rest of the spec as it was. Here the spec read from ``GET /services/{id}`` goes
back to ``POST /services/{id}/update?version=N`` with exactly what ``mutate`` changed.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiodocker
import aiohttp
import ijson
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from autoscaler.errors import PermanentTargetError, TemporaryTargetError, VersionConflictError

T = TypeVar("T")

_OUT_OF_SEQUENCE = "update out of sequence"
# aiodocker reports a failed connection as a DockerError with this pseudo status.
_CANNOT_CONNECT = 900

Request = Callable[[aiodocker.Docker], Awaitable[T]]


class NotFoundError(PermanentTargetError):
    """404: no such service, task or node."""


class _Transient(Exception):
    """A failure that another attempt may not meet (connection, timeout, 5xx)."""


class DockerApi:
    """One Engine API endpoint and the only place its errors are mapped and retried.

    ``docker`` is an ``aiodocker.Docker`` the caller owns (never closed here), or an
    endpoint URL (``unix:///run/docker.sock``, ``tcp://10.0.0.1:2375``; None: ``DOCKER_HOST``
    or the local socket) for a client made on first use and closed by ``close()``.
    ``retries`` is how many more attempts a temporary failure gets.
    """

    def __init__(
        self, docker: aiodocker.Docker | str | None = None, *, timeout: float = 10.0, retries: int = 2
    ) -> None:
        if timeout <= 0 or retries < 0:
            raise ValueError(f"timeout must be > 0 seconds and retries >= 0 (got {timeout}, {retries})")
        self._given = docker if isinstance(docker, aiodocker.Docker) else None
        self.url = docker if isinstance(docker, str) else None
        self.timeout = timeout
        self.attempts = retries + 1
        self._own: aiodocker.Docker | None = None
        self.http_requests = 0  # attempts sent, retries included; read by bench and tests

    @property
    def where(self) -> str:
        """The endpoint, for error messages."""
        if self.url:
            return self.url
        return "the given Docker client" if self._given is not None else "the default Docker endpoint"

    def client(self) -> aiodocker.Docker:
        if self._given is not None:
            return self._given
        # Made on first use: aiohttp wants its session created inside the running event loop.
        if self._own is None:
            try:
                self._own = aiodocker.Docker(url=self.url, timeout=aiohttp.ClientTimeout(total=self.timeout))
            except ValueError as exc:
                raise PermanentTargetError(
                    f"cannot use Docker endpoint {self.url or '(DOCKER_HOST unset)'}: {exc}; "
                    "give a unix:///path/docker.sock or tcp://host:port URL"
                ) from exc
        return self._own

    async def close(self) -> None:
        """Close the client made here (never one the caller passed in)."""
        if self._own is not None:
            await self._own.close()
            self._own = None

    async def get(self, path: str, params: dict[str, str] | None = None) -> Any:
        """``GET /{path}``'s decoded JSON."""
        return await self.call(lambda d: d._query_json(path, params=params))

    async def get_each(
        self, path: str, convert: Callable[[dict[str, Any]], T], params: dict[str, str] | None = None
    ) -> list[T]:
        """``GET /{path}``'s JSON list, each item handed to ``convert`` as soon as it is decoded.

        For lists that are long and of which little is kept: 10,000 services are 4 MB of JSON
        and ~35 MiB decoded all at once, for the few fields ``convert`` keeps; item by item,
        the body and one decoded item exist at a time. ``PermanentTargetError`` if the body
        is not a JSON list.
        """

        async def read(docker: aiodocker.Docker) -> bytes:
            async with docker._query(path, params=params) as response:
                return await response.read()

        body = await self.call(read)
        if not body.lstrip().startswith(b"["):
            raise self._not_a_list(path, f"it starts with {body.lstrip()[:1]!r}")
        try:
            return [convert(item) for item in ijson.items(body, "item", use_float=True)]
        except ijson.JSONError as exc:
            raise self._not_a_list(path, str(exc)) from exc

    def _not_a_list(self, path: str, why: str) -> PermanentTargetError:
        return PermanentTargetError(
            f"Docker at {self.where} sent a {path} answer that is not a JSON list ({why}); "
            "is it an Engine API >= 1.41 swarm manager?"
        )

    async def inspect_service(self, service: str) -> dict[str, Any]:
        """``GET /services/{service}`` (a name or an id); ``NotFoundError`` when there is none."""
        found: dict[str, Any] = await self.get(f"services/{service}")
        return found

    async def update_spec(
        self, service: str, version: int | None, mutate: Callable[[dict[str, Any]], None]
    ) -> dict[str, Any]:
        """Apply ``mutate`` to the service's spec and write it back at the version read.

        ``version`` is the ``Version.Index`` the caller decided on: when the service moved
        on since, this raises ``VersionConflictError`` without writing (None: the current
        version, for writes that do not depend on what the caller read). Swarm's own
        compare-and-swap then refuses the write if another writer got in between.
        Returns the spec as written.
        """
        found = await self.inspect_service(service)
        try:
            spec: dict[str, Any] = found["Spec"]
            current = int(found["Version"]["Index"])
        except (KeyError, TypeError, ValueError) as exc:
            raise PermanentTargetError(
                f"Docker at {self.where} sent service {service!r} without Spec or Version.Index "
                f"({type(exc).__name__}: {exc}); is it an Engine API >= 1.41 swarm manager?"
            ) from exc
        mutate(spec)  # first: it may refuse the write (PermanentTargetError) whatever the version
        if version is not None and current != version:
            raise VersionConflictError(
                f"service {service!r} changed since it was read (version {version} -> {current}); "
                "re-read it before writing"
            )
        body = json.dumps(spec)
        await self.call(
            lambda d: d._query_json(
                f"services/{service}/update", method="POST", params={"version": str(current)}, data=body
            )
        )
        return spec

    async def call(self, request: Request[T]) -> T:
        """``request`` with bounded retries of temporary failures, errors mapped to ours."""
        docker = self.client()
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self.attempts),
                wait=wait_exponential(multiplier=0.2, max=2.0),
                retry=retry_if_exception_type(_Transient),
                reraise=True,
            ):
                with attempt:
                    self.http_requests += 1
                    return await self._once(docker, request)
        except _Transient as exc:
            raise TemporaryTargetError(
                f"Docker at {self.where}: {exc} (after {self.attempts} attempts)"
            ) from exc
        raise AssertionError("unreachable: AsyncRetrying either returns or raises")

    async def _once(self, docker: aiodocker.Docker, request: Request[T]) -> T:
        try:
            return await request(docker)
        except TimeoutError as exc:
            raise _Transient(f"no answer within {self.timeout:g}s") from exc
        except aiodocker.DockerError as exc:
            message = str(exc.message)
            if _OUT_OF_SEQUENCE in message:
                raise VersionConflictError(
                    f"Docker at {self.where} refused the update: {message}; re-read the service"
                ) from exc
            if exc.status == _CANNOT_CONNECT or exc.status >= 500:
                raise _Transient(message) from exc
            error = NotFoundError if exc.status == 404 else PermanentTargetError
            raise error(f"Docker at {self.where} answered {exc.status}: {message}") from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
