"""DockerApi against a scripted Engine API on loopback (aiohttp's test server).

Each test states what "Docker" answers and checks the one error map, the one retry policy
and ``update_spec``'s compare-and-swap. The real daemon is exercised in
tests/integration/test_swarm_target.py, test_failover_nodes.py and test_lease_swarm.py.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from autoscaler.errors import PermanentTargetError, TemporaryTargetError, VersionConflictError
from autoscaler.targets.docker_api import DockerApi, NotFoundError


@dataclass
class ScriptedDocker:
    """``answers``: path -> list of (status, body), the last one repeating. ``posted``: update bodies."""

    answers: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    posted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        if request.path == "/version":  # aiodocker's API version negotiation
            return web.json_response({"ApiVersion": "1.41"})
        path = request.path.removeprefix("/v1.41/")
        self.asked.append(f"{request.method} {path}")
        if request.method == "POST":
            self.posted.append((request.query.get("version", ""), await request.json()))
        queue = self.answers.get(f"{request.method} {path}") or [(404, {"message": f"no {path}"})]
        status, body = queue.pop(0) if len(queue) > 1 else queue[0]
        # Exactly Docker's content type (aiohttp's json_response adds a charset aiodocker does not expect).
        return web.Response(
            body=json.dumps(body).encode(), status=status, headers={"Content-Type": "application/json"}
        )


@pytest.fixture
async def docker() -> AsyncIterator[tuple[ScriptedDocker, DockerApi]]:
    script = ScriptedDocker()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", script.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    api = DockerApi(f"tcp://127.0.0.1:{server.port}", timeout=2.0, retries=2)
    try:
        yield script, api
    finally:
        await api.close()
        await server.close()


def service(version: int, replicas: int = 1) -> dict[str, Any]:
    return {
        "ID": "svc1",
        "Version": {"Index": version},
        "Spec": {"Name": "web", "Labels": {"keep": "me"}, "Mode": {"Replicated": {"Replicas": replicas}}},
    }


async def test_server_errors_are_retried_then_succeed(docker: tuple[ScriptedDocker, DockerApi]) -> None:
    script, api = docker
    script.answers["GET nodes"] = [(503, {"message": "busy"}), (200, [{"ID": "n1"}])]
    assert await api.get("nodes") == [{"ID": "n1"}]
    assert script.asked == ["GET nodes", "GET nodes"]
    assert api.http_requests == 2


async def test_retries_are_bounded_then_temporary(docker: tuple[ScriptedDocker, DockerApi]) -> None:
    script, api = docker
    script.answers["GET nodes"] = [(500, {"message": "raft is gone"})]
    with pytest.raises(TemporaryTargetError, match=r"raft is gone \(after 3 attempts\)"):
        await api.get("nodes")
    assert script.asked == ["GET nodes"] * 3


@pytest.mark.parametrize(
    ("status", "message", "error"),
    [
        (404, "service web not found", NotFoundError),
        (400, "invalid filter", PermanentTargetError),
        (500, "rpc error: update out of sequence", VersionConflictError),
    ],
)
async def test_client_errors_and_conflicts_are_not_retried(
    docker: tuple[ScriptedDocker, DockerApi], status: int, message: str, error: type[Exception]
) -> None:
    script, api = docker
    script.answers["GET services/web"] = [(status, {"message": message})]
    with pytest.raises(error, match=message):
        await api.inspect_service("web")
    assert script.asked == ["GET services/web"]


async def test_update_spec_writes_back_the_spec_read_with_only_the_change(
    docker: tuple[ScriptedDocker, DockerApi],
) -> None:
    script, api = docker
    script.answers["GET services/svc1"] = [(200, service(7))]
    script.answers["POST services/svc1/update"] = [(200, {"Warnings": None})]

    def scale_to_3(spec: dict[str, Any]) -> None:
        spec["Mode"]["Replicated"]["Replicas"] = 3

    written = await api.update_spec("svc1", 7, scale_to_3)
    assert script.posted == [("7", {**service(7, replicas=3)["Spec"]})]
    assert written == service(7, replicas=3)["Spec"]


async def test_update_spec_at_a_stale_version_writes_nothing(
    docker: tuple[ScriptedDocker, DockerApi],
) -> None:
    script, api = docker
    script.answers["GET services/svc1"] = [(200, service(8))]
    with pytest.raises(VersionConflictError, match=r"version 7 -> 8"):
        await api.update_spec("svc1", 7, lambda spec: None)
    assert script.posted == []


async def test_a_refusing_mutation_writes_nothing(docker: tuple[ScriptedDocker, DockerApi]) -> None:
    script, api = docker
    script.answers["GET services/svc1"] = [(200, service(7))]

    def refuse(spec: dict[str, Any]) -> None:
        raise PermanentTargetError("global mode")

    with pytest.raises(PermanentTargetError, match="global mode"):
        await api.update_spec("svc1", 7, refuse)
    assert script.posted == []


async def test_unreachable_daemon_is_temporary_after_the_retries() -> None:
    api = DockerApi("unix:///nonexistent/docker.sock", timeout=1.0, retries=1)
    try:
        with pytest.raises(TemporaryTargetError, match=r"nonexistent/docker.sock.*after 2 attempts"):
            await api.get("nodes")
    finally:
        await api.close()
    assert api.http_requests == 2


async def test_get_each_converts_every_item_of_the_list_in_order(
    docker: tuple[ScriptedDocker, DockerApi],
) -> None:
    script, api = docker
    services = [{"ID": f"svc{i}", "Spec": {"Name": f"web-{i}", "Weight": i / 2}} for i in range(2000)]
    script.answers["GET services"] = [(503, {"message": "busy"}), (200, services)]
    names = await api.get_each("services", lambda s: (s["Spec"]["Name"], s["Spec"]["Weight"]))
    assert names == [(f"web-{i}", i / 2) for i in range(2000)]
    assert script.asked == ["GET services", "GET services"]  # a 5xx is retried as by get()


@pytest.mark.parametrize("body", [{"message": "not a list"}, "services", 3])
async def test_get_each_refuses_an_answer_that_is_not_a_list(
    docker: tuple[ScriptedDocker, DockerApi], body: Any
) -> None:
    script, api = docker
    script.answers["GET services"] = [(200, body)]
    with pytest.raises(PermanentTargetError, match="sent a services answer that is not a JSON list"):
        await api.get_each("services", lambda s: s)
    assert script.asked == ["GET services"]
