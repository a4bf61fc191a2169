"""A version conflict forced deterministically: the controller's scale call arrives stale.

The controller talks to the lab manager through ``ConflictInjectingProxy``, a loopback HTTP
proxy to the manager's socket. When the controller posts ``/services/{id}/update`` for the
chosen service, the proxy first updates that service's labels itself, then forwards the
controller's request unchanged: it carries the version the controller read, so Swarm
refuses it ("update out of sequence"). The controller must re-read, decide again and scale,
without writing its stale spec over the label the other writer set.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import docker
import pytest
from aiohttp import web
from controller_helpers import ControllerProcess, LabServices, PolicyFile, free_port, unique
from timing import wait_until

from swarm_lab.sessions import LabHandle

_UPDATE = re.compile(r"^(?:/v[0-9.]+)?/services/(?P<id>[^/]+)/update$")
# Hop-by-hop or recomputed by aiohttp; everything else goes through as Docker sent it.
_DROPPED_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}
INJECTED_LABEL = ("e2e.concurrent-writer", "was-here")


class ConflictInjectingProxy:
    """Docker API on 127.0.0.1 forwarding to a unix socket; stales the first update of one service."""

    def __init__(self, manager_url: str) -> None:
        self.socket_path = manager_url.removeprefix("unix://")
        self.sdk = docker.DockerClient(base_url=manager_url, timeout=30)
        self.port = free_port()
        self.target_id: str | None = None
        self.injections = 0
        self.update_statuses: list[int] = []  # answers to the target's update calls, in order
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="conflict-proxy", daemon=True)
        self._runner: web.AppRunner | None = None
        self._thread.start()
        if not self._ready.wait(timeout=15):
            raise RuntimeError(f"the proxy did not start listening on 127.0.0.1:{self.port}")

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._upstream = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=self.socket_path),
            timeout=aiohttp.ClientTimeout(total=None),  # the event stream stays open
            auto_decompress=False,
        )
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def _write_concurrently(self, service_id: str) -> None:
        """Another writer's update: a label only, so it starts no rolling update."""
        spec = self.sdk.api.inspect_service(service_id)
        body = spec["Spec"]
        body.setdefault("Labels", {})[INJECTED_LABEL[0]] = INJECTED_LABEL[1]
        url = self.sdk.api._url("/services/{0}/update", service_id)
        response = self.sdk.api._post_json(url, data=body, params={"version": spec["Version"]["Index"]})
        self.sdk.api._raise_for_status(response)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        match = _UPDATE.match(request.path)
        updated_id = match["id"] if match is not None and request.method == "POST" else None
        is_target_update = updated_id is not None and updated_id == self.target_id
        if updated_id is not None and is_target_update and self.injections == 0:
            await asyncio.get_running_loop().run_in_executor(None, self._write_concurrently, updated_id)
            self.injections += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROPPED_HEADERS}
        async with self._upstream.request(
            request.method, f"http://docker{request.path_qs}", headers=headers, data=await request.read()
        ) as upstream:
            if is_target_update:
                self.update_statuses.append(upstream.status)
            reply = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in _DROPPED_HEADERS},
            )
            await reply.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await reply.write(chunk)
            except (ConnectionResetError, aiohttp.ClientConnectionError):
                return reply  # the controller hung up (it stopped, or reconnects its event stream)
            await reply.write_eof()
            return reply

    def close(self) -> None:
        async def shutdown() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            await self._upstream.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=15)
        self._loop.close()
        self.sdk.close()


@pytest.fixture
def proxy(lab: LabHandle) -> Iterator[ConflictInjectingProxy]:
    running = ConflictInjectingProxy(lab.manager_url)
    try:
        yield running
    finally:
        running.close()


def test_version_conflict_is_re_read_and_re_decided(
    lab: LabHandle, proxy: ConflictInjectingProxy, tmp_path: Path
) -> None:
    services = LabServices(lab.manager_url, lab.images)
    name = unique("e2e-conflict")
    controller: ControllerProcess | None = None
    try:
        proxy.target_id = services.web(name, replicas=1).id
        # minReplicas 2: the controller's first decision is a scale call, 1 -> 2.
        PolicyFile(name, min_replicas=2).write(tmp_path)
        started = time.time()
        controller = ControllerProcess(
            policies=tmp_path,
            docker_host=proxy.url,
            prometheus_url=lab.prometheus_url,
            workdir=tmp_path,
            interval=1.0,
        )
        action = controller.wait_action(
            name, since=started, deadline=45, to=lambda old, new: (old, new) == (1, 2), what="1 -> 2"
        )

        assert proxy.injections == 1
        assert len(proxy.update_statuses) == 2 and proxy.update_statuses[0] >= 400, proxy.update_statuses
        assert proxy.update_statuses[1] == 200, proxy.update_statuses
        assert controller.conflicts(name), "the refused update was not reported as a version conflict"
        assert not controller.events("failure", name), "the conflict was left as a failure"
        record: dict[str, Any] = wait_until(
            lambda: controller.record(name) if controller else None, deadline=10, what=f"{name}'s record"
        )
        assert record["outcome"] == "scaled" and record["error"] is None, record
        assert action["from"] == 1

        service = services.service(name).attrs
        assert service["Spec"]["Mode"]["Replicated"]["Replicas"] == 2
        # Scaling with the stale spec would have dropped the other writer's label.
        assert service["Spec"]["Labels"].get(INJECTED_LABEL[0]) == INJECTED_LABEL[1]
    finally:
        if controller is not None:
            controller.stop()
        services.remove_all()
