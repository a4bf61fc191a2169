"""The controller's HTTP server against hostile clients (issue 11, items 10 and 12)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
from prometheus_client import CollectorRegistry
from timing import FakeClock

from autoscaler.observability.http import ObservabilityServer
from autoscaler.observability.logs import configure_logging
from autoscaler.observability.web_config import WebConfig, WebConfigError, load_web_config

from .fakes import FakeTarget
from .test_serve import start_serving


class Status:
    def liveness(self) -> tuple[bool, dict[str, Any]]:
        return True, {}

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        return True, {}

    def decisions(self) -> dict[str, Any]:
        return {"services": {}}


@pytest.fixture
def debug_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("json", "DEBUG", stream)
    yield stream
    logger = logging.getLogger("autoscaler")
    logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


@pytest.fixture
async def server() -> AsyncIterator[ObservabilityServer]:
    running = ObservabilityServer(CollectorRegistry(), Status(), host="127.0.0.1", port=0)
    await running.start()
    yield running
    await running.stop()


async def raw_request(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    await writer.wait_closed()
    return answer


async def test_a_header_over_8_kb_gets_400_and_one_debug_line_not_a_traceback(
    server: ObservabilityServer, debug_log: io.StringIO
) -> None:
    huge = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\nConnection: close\r\n\r\n"
    for _ in range(3):
        answer = await raw_request(server.port, huge)
        assert answer.startswith(b"HTTP/1.0 400 ")
    lines = [json.loads(line) for line in debug_log.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["bad_request"] * 3
    assert all(line["level"] == "DEBUG" and "exception" not in line for line in lines)
    assert all(len(line["message"]) < 200 for line in lines)
    # And the server still answers.
    assert (await raw_request(server.port, b"GET /healthz HTTP/1.0\r\n\r\n")).startswith(b"HTTP/1.0 200 ")


# --- item 12: an optional web config (TLS, basic auth), file contents out of answers ---


def make_certificate(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "server.crt", directory / "server.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def write_web_config(directory: Path, text: str) -> Path:
    path = directory / "web.yml"
    path.write_text(text)
    return path


PASSWORD_HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(rounds=4)).decode()


async def serve_with(config: WebConfig) -> ObservabilityServer:
    running = ObservabilityServer(CollectorRegistry(), Status(), host="127.0.0.1", port=0, web_config=config)
    await running.start()
    return running


async def status_of(url: str, **options: Any) -> int:
    async with aiohttp.ClientSession() as session, session.get(url, **options) as answer:
        return answer.status


async def test_basic_auth_guards_metrics_and_decisions_but_not_health(tmp_path: Path) -> None:
    config = load_web_config(
        write_web_config(tmp_path, f"basic_auth_users:\n  prometheus: '{PASSWORD_HASH}'\n")
    )
    running = await serve_with(config)
    base = f"http://127.0.0.1:{running.port}"
    try:
        right = {"Authorization": aiohttp.encode_basic_auth("prometheus", "s3cret")}
        for path in ("/metrics", "/decisions"):
            assert await status_of(base + path) == 401
            assert (
                await status_of(
                    base + path, headers={"Authorization": aiohttp.encode_basic_auth("prometheus", "wrong")}
                )
                == 401
            )
            assert (
                await status_of(
                    base + path, headers={"Authorization": aiohttp.encode_basic_auth("nobody", "s3cret")}
                )
                == 401
            )
            assert await status_of(base + path, headers=right) == 200
            assert await status_of(base + path, headers=right) == 200  # the remembered check
        for path in ("/healthz", "/readyz"):
            assert await status_of(base + path) == 200
    finally:
        await running.stop()


async def test_tls_serves_https_only(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    config = load_web_config(
        write_web_config(tmp_path, f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
    )
    running = await serve_with(config)
    try:
        trusted = ssl.create_default_context(cafile=str(cert))
        assert await status_of(f"https://127.0.0.1:{running.port}/healthz", ssl=trusted) == 200
        with pytest.raises(aiohttp.ClientError):
            await status_of(f"http://127.0.0.1:{running.port}/healthz")
    finally:
        await running.stop()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("basic_auth_users:\n  prometheus: s3cret\n", "not a bcrypt hash"),
        ("basic_auth_user:\n  prometheus: x\n", "basic_auth_user: Extra inputs are not permitted"),
        ("tls_server_config:\n  cert_file: /nonexistent.crt\n  key_file: /nonexistent.key\n", "cannot load"),
        ("tls_server_config: [\n  secret-key-material\n", "not valid YAML"),
    ],
)
def test_a_bad_web_config_is_refused_without_quoting_it(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(WebConfigError) as refused:
        load_web_config(write_web_config(tmp_path, text))
    assert says in str(refused.value)
    assert "s3cret" not in str(refused.value) and "secret-key-material" not in str(refused.value)


async def test_decisions_name_where_a_policy_problem_is_but_never_quote_the_file(
    policy_dir: Path, clock: FakeClock
) -> None:
    (policy_dir / "leak.yaml").write_text(
        "apiVersion: autoscaler.swarm/v1\nkind: ScalingPolicy\nmetadata:\n  name: leak\n"
        "spec:\n  service: 'password=hunter2'\n  maxReplicas: 5\n  metrics: []\n"
    )
    run, started = start_serving(policy_dir, FakeTarget(), {}, clock)
    _, server = await started
    assert server is not None
    try:
        url = f"http://127.0.0.1:{server.port}/decisions"
        async with aiohttp.ClientSession() as session, session.get(url) as answer:
            body = await answer.text()
        document = json.loads(body)
        leak = policy_dir / "leak.yaml"
        assert document["policy_problems"] == [f"{leak}:6: spec.service", f"{leak}:8: spec.metrics"]
        assert "hunter2" not in body
    finally:
        os.kill(os.getpid(), signal.SIGTERM)
        await run


def dockerfile_probe() -> list[str]:
    dockerfile = Path(__file__).resolve().parents[2] / "Dockerfile"
    line = next(
        line for line in dockerfile.read_text().splitlines() if line.strip().startswith('CMD ["python3"')
    )
    command: list[str] = json.loads(line.strip().removeprefix("CMD "))
    return [sys.executable, *command[1:]]


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
async def test_the_image_healthcheck_probe_passes_with_and_without_tls(tmp_path: Path, tls: bool) -> None:
    config = WebConfig()
    env = {"PATH": os.environ.get("PATH", "")}
    if tls:
        cert, key = make_certificate(tmp_path)
        config = load_web_config(
            write_web_config(tmp_path, f"tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n")
        )
        env["HEALTHCHECK_TLS"] = "1"
    running = await serve_with(config)
    try:
        env["HEALTHCHECK_PORT"] = str(running.port)
        probe = await asyncio.create_subprocess_exec(*dockerfile_probe(), env=env)
        assert await probe.wait() == 0
    finally:
        await running.stop()
