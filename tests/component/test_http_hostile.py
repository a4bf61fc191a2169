"""The controller's HTTP server against hostile clients (issue 11, items 10 and 12)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from autoscaler.observability.http import ObservabilityServer
from autoscaler.observability.logs import configure_logging


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
