"""One Engine API endpoint: an aiodocker client made on first use, or one the caller owns."""

from __future__ import annotations

import aiodocker
import aiohttp

from autoscaler.errors import PermanentTargetError


class DockerEndpoint:
    """``docker`` is an ``aiodocker.Docker`` the caller owns (never closed here), or an
    endpoint URL (``unix:///run/docker.sock``, ``tcp://10.0.0.1:2375``; None: ``DOCKER_HOST``
    or the local socket) for a client made on first use and closed by ``close()``.
    """

    def __init__(self, docker: aiodocker.Docker | str | None, *, timeout: float) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be > 0 seconds (got {timeout})")
        self._given = docker if isinstance(docker, aiodocker.Docker) else None
        self.url = docker if isinstance(docker, str) else None
        self.timeout = timeout
        self._own: aiodocker.Docker | None = None

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
