"""The agent's HTTP server under load and behind a web config (issue 11, items 11 and 12).

prometheus_client's server ran a thread per connection: 1,000 concurrent scrapes made
1,000 threads, and 692 of them timed out at 30 s. On aiohttp the connections share one
event loop and concurrent scrapes share one render.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import bcrypt
import pytest

from autoscaler.observability.web_config import load_web_config
from ipvs_agent.agent import IpvsCollector
from ipvs_agent.http import BackgroundAgent, serve_in_thread

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ipvs"
sys.path.insert(0, str(FIXTURES))
import kernel_format as kf  # noqa: E402
from fake_node import FakeNamespace, FakeNode, mangle_text  # noqa: E402

SCRAPERS = 1_000
CLIENT_TIMEOUT = 30.0  # what the hostile run gave each scrape before counting it as timed out


def node() -> FakeNode:
    services = [kf.Service(fwmark=256 + i, dests=[kf.Dest(f"10.0.0.{i + 2}", active=i)]) for i in range(50)]
    rules = mangle_text(
        *(
            f"-A PREROUTING -p tcp -m tcp --dport {8000 + i} -j MARK --set-xmark {256 + i:#x}/0xffffffff"
            for i in range(50)
        )
    )
    return FakeNode({"ingress_sbox": FakeNamespace(services=services, rules=rules, via="procfs")})


@pytest.fixture
def agent() -> Iterator[BackgroundAgent]:
    running = serve_in_thread(IpvsCollector(node(), node="node-a", min_interval=0), "127.0.0.1:0")
    try:
        yield running
    finally:
        running.close()


def test_a_thousand_concurrent_scrapes_all_answer_on_a_bounded_number_of_threads(
    agent: BackgroundAgent,
) -> None:
    threads_before = threading.active_count()
    most_threads = threads_before
    watching = True

    def watch_threads() -> None:
        nonlocal most_threads
        while watching:
            most_threads = max(most_threads, threading.active_count())
            time.sleep(0.01)  # sampling pace of a measurement, not a synchronisation

    async def scrape_all() -> list[tuple[int, int]]:
        timeout = aiohttp.ClientTimeout(total=CLIENT_TIMEOUT)
        connector = aiohttp.TCPConnector(limit=0)  # every scrape on its own connection at once
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

            async def scrape() -> tuple[int, int]:
                async with session.get(f"http://127.0.0.1:{agent.port}/metrics") as answer:
                    body = await answer.read()
                    return answer.status, body.count(b"swarm_ipvs_active_connections{")

            results = await asyncio.gather(*(scrape() for _ in range(SCRAPERS)), return_exceptions=True)
        return [r if isinstance(r, tuple) else (0, 0) for r in results]

    watcher = threading.Thread(target=watch_threads, daemon=True)
    watcher.start()
    started = time.monotonic()
    results = asyncio.run(scrape_all())
    took = time.monotonic() - started
    watching = False
    watcher.join()

    answered = sum(status == 200 and series == 50 for status, series in results)
    renders = agent.server.renders
    print(
        f"{SCRAPERS} concurrent scrapes: {answered} answered in {took:.1f} s, {renders} renders, "
        f"threads {threads_before} -> at most {most_threads}"
    )
    assert answered == SCRAPERS  # none timed out (30 s each) or failed
    assert renders < SCRAPERS  # scrapes that arrive during a render share it
    # One event loop, one render thread at a time, plus the watcher: not one per connection.
    assert most_threads <= threads_before + 3


def test_healthz_answers(agent: BackgroundAgent) -> None:
    async def get() -> int:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{agent.port}/healthz") as r,
        ):
            return r.status

    assert asyncio.run(get()) == 200


def test_basic_auth_from_the_web_config_guards_metrics_not_healthz(tmp_path: Path) -> None:
    hashed = bcrypt.hashpw(b"scrape", bcrypt.gensalt(rounds=4)).decode()
    config_file = tmp_path / "web.yml"
    config_file.write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    running = serve_in_thread(
        IpvsCollector(node(), node="node-a", min_interval=0), "127.0.0.1:0", load_web_config(config_file)
    )

    async def statuses() -> list[int]:
        base = f"http://127.0.0.1:{running.port}"
        right = {"Authorization": aiohttp.encode_basic_auth("prometheus", "scrape")}
        async with aiohttp.ClientSession() as session:
            found = []
            for path, headers in (("/metrics", {}), ("/metrics", right), ("/healthz", {})):
                async with session.get(base + path, headers=headers) as answer:
                    found.append(answer.status)
            return found

    try:
        assert asyncio.run(statuses()) == [401, 200, 200]
    finally:
        running.close()
