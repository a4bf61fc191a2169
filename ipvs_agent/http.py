"""The agent's HTTP server: /metrics and /healthz on aiohttp, like the controller's.

prometheus_client's ``start_http_server`` serves one thread per connection: 1,000
concurrent scrapes made 1,000 threads fighting over the collector's lock, and 692 of them
timed out at 30 s. Here one event loop holds every connection, and the scrapes that
arrive while a render is running wait for that render instead of starting their own: the
tables are read and formatted once however many scrapers ask (at most ``min_interval``
old, as the collector's own cache). The render runs in a worker thread, because reading
IPVS and formatting the text block; the loop keeps accepting meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from autoscaler.observability.http import AppServer
from autoscaler.observability.web_config import WebConfig, secure
from ipvs_agent.agent import IpvsCollector

# Docker's HEALTHCHECK calls this without credentials; it says only that the agent runs.
OPEN_PATHS = ("/healthz",)


class AgentServer(AppServer):
    """/metrics (the collector, rendered once per burst of scrapes) and /healthz."""

    def __init__(
        self,
        collector: IpvsCollector,
        *,
        host: str,
        port: int,
        web_config: WebConfig | None = None,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(host=host, port=port, web_config=web_config)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._min_interval = min_interval
        self._clock = clock
        self._body: bytes | None = None
        self._rendered_at = float("-inf")
        self._rendering: asyncio.Task[bytes] | None = None
        self.renders = 0  # how many times the tables were formatted; read by tests

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        secure(app, self.web_config, OPEN_PATHS)
        return app

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=await self._render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def _render(self) -> bytes:
        if self._body is not None and self._clock() - self._rendered_at < self._min_interval:
            return self._body
        if self._rendering is None:
            self._rendering = asyncio.create_task(self._render_now())
        # shield: a scraper that hangs up must not cancel the render the others wait for.
        return await asyncio.shield(self._rendering)

    async def _render_now(self) -> bytes:
        try:
            started = self._clock()
            body = await asyncio.to_thread(generate_latest, self.registry)
            self.renders += 1
            self._body, self._rendered_at = body, started
            return body
        finally:
            self._rendering = None


class BackgroundAgent:
    """An ``AgentServer`` on its own event loop in a daemon thread, for synchronous callers."""

    def __init__(self, server: AgentServer) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ipvs-agent-http", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(server.start(), self._loop).result()

    @property
    def port(self) -> int:
        return self.server.port

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def serve_in_thread(
    collector: IpvsCollector, listen: str, web_config: WebConfig | None = None, min_interval: float = 0.0
) -> BackgroundAgent:
    """Serve ``collector`` on ``listen`` (port 0: any free port) from a background thread."""
    from ipvs_agent.agent import parse_listen

    host, port = parse_listen(listen)
    return BackgroundAgent(
        AgentServer(collector, host=host, port=port, web_config=web_config, min_interval=min_interval)
    )
