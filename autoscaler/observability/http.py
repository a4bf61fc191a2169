"""The controller's HTTP face: /metrics, /healthz, /readyz and /decisions (aiohttp.web).

The server knows nothing of the loop: it asks a ``StatusProvider`` (implemented in the
reconciler) for health and for the decisions document, so this layer imports only core.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from autoscaler.observability.web_config import WebConfig, secure, site_ssl

# Docker's HEALTHCHECK and load balancers call these without credentials; they say only
# whether the loop is alive and ready, never a policy, a reading or a decision.
OPEN_PATHS = ("/healthz", "/readyz")


class StatusProvider(Protocol):
    def liveness(self) -> tuple[bool, dict[str, Any]]:
        """(alive, details): the process runs and its loop ticked recently."""
        ...

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        """(ready, details): policies loaded, a pass completed, Docker reachable."""
        ...

    def decisions(self) -> dict[str, Any]:
        """The last decision per service and the policy problems, as plain JSON."""
        ...


class _QuietBadRequests(logging.Filter):
    """Turn aiohttp's traceback for a request it refused into one DEBUG line.

    A client that sends a header over 8 KB, or bytes that are not HTTP, gets its 400 from
    aiohttp; the 9-line traceback aiohttp logs for it says nothing about our code, and a
    scanner sending such requests would fill the log. Errors in our handlers keep theirs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, HttpProcessingError):
            return True
        message = " ".join(str(error.message).split())
        logging.getLogger(record.name).debug(
            "refused a bad request (%d): %s", error.code, message[:120], extra={"event": "bad_request"}
        )
        return False


def server_logger() -> logging.Logger:
    """The logger for aiohttp's request handling, with refused requests kept quiet."""
    logger = logging.getLogger("autoscaler.http.server")
    if not any(isinstance(f, _QuietBadRequests) for f in logger.filters):
        logger.addFilter(_QuietBadRequests())
    return logger


def _json(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, indent=2, default=str), status=status, content_type="application/json"
    )


class AppServer:
    """Serves ``app()`` on host:port with the web config's TLS and basic auth: start, the bound
    port, stop. The controller's server below and the IPVS agent's are this with their routes."""

    def __init__(self, *, host: str, port: int, web_config: WebConfig | None) -> None:
        self.host = host
        self.requested_port = port
        self.web_config = web_config
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None, logger=server_logger())
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, self.host, self.requested_port, ssl_context=site_ssl(self.web_config)
        )
        await site.start()

    @property
    def port(self) -> int:
        """The bound port (useful when started on port 0)."""
        if self._runner is None or not self._runner.addresses:
            raise RuntimeError("server not started")
        address = self._runner.addresses[0]
        return int(address[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


class ObservabilityServer(AppServer):
    def __init__(
        self,
        registry: CollectorRegistry,
        status: StatusProvider,
        *,
        host: str,
        port: int,
        web_config: WebConfig | None = None,
    ) -> None:
        super().__init__(host=host, port=port, web_config=web_config)
        self.registry = registry
        self.status = status

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/decisions", self._decisions)
        secure(app, self.web_config, OPEN_PATHS)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        alive, details = self.status.liveness()
        return _json({"ok": alive, **details}, 200 if alive else 503)

    async def _readyz(self, request: web.Request) -> web.Response:
        ready, details = self.status.readiness()
        return _json({"ok": ready, **details}, 200 if ready else 503)

    async def _decisions(self, request: web.Request) -> web.Response:
        return _json(self.status.decisions())
