"""The `run` wiring end to end with fakes: exit codes, signals and the HTTP endpoints."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from timing import FakeClock, eventually

from autoscaler.cli import EXIT_INPUT, EXIT_OK
from autoscaler.cli.run import serve
from autoscaler.cli.shutdown import Shutdown
from autoscaler.observability.http import ObservabilityServer
from autoscaler.policy_sources.loader import PolicyStore
from autoscaler.reconciler.loop import Reconciler
from autoscaler.settings import load_settings

from .fakes import FakeSource, FakeTarget, service, write_policy

Started = asyncio.Future[tuple[Reconciler, ObservabilityServer | None]]


def settings_for(policy_dir: Path, **loop: Any) -> Any:
    return load_settings(
        overrides={"policies": {"paths": [policy_dir]}, "http": {"listen": "127.0.0.1:0"}, "loop": loop}
    )


def start_serving(
    policy_dir: Path,
    target: FakeTarget,
    sources: dict[str, Any],
    clock: FakeClock,
    *,
    registry: CollectorRegistry | None = None,
) -> tuple[asyncio.Task[int], Started]:
    """The real ``serve`` as a task, with fakes around it; ``started`` resolves once it serves."""
    started: Started = asyncio.get_running_loop().create_future()
    extra: dict[str, Any] = {"registry": registry} if registry is not None else {}
    run = asyncio.create_task(
        serve(
            settings_for(policy_dir),
            target=target,
            sources=sources,
            catalog=PolicyStore([policy_dir]),
            clock=clock,
            sleep=clock.sleep,
            started=started,
            **extra,
        )
    )
    return run, started


async def test_once_exits_zero_when_every_service_is_fine(policy_dir: Path, clock: FakeClock) -> None:
    write_policy(policy_dir, "web")
    target = FakeTarget(service("web", 1))
    code = await serve(
        settings_for(policy_dir, once=True),
        target=target,
        sources={"prometheus": FakeSource({("web", "rps"): 30.0})},
        catalog=PolicyStore([policy_dir]),
        clock=clock,
        sleep=clock.sleep,
    )
    assert code == EXIT_OK
    assert len(target.scale_calls) == 1 and target.closed


async def test_once_exits_non_zero_when_a_service_failed(policy_dir: Path, clock: FakeClock) -> None:
    for name in ("good", "bad"):
        write_policy(policy_dir, name)
    target = FakeTarget(service("good", 1), service("bad", 1))
    target.fail_scale["bad"] = RuntimeError("boom")
    code = await serve(
        settings_for(policy_dir, once=True),
        target=target,
        sources={"prometheus": FakeSource({("good", "rps"): 30.0, ("bad", "rps"): 30.0})},
        catalog=PolicyStore([policy_dir]),
        clock=clock,
        sleep=clock.sleep,
    )
    assert code == EXIT_INPUT
    assert [c.service for c in target.scale_calls] == ["good"]


async def test_once_exits_non_zero_on_a_broken_policy_file(policy_dir: Path, clock: FakeClock) -> None:
    no_name = "apiVersion: autoscaler.swarm/v1\nkind: ScalingPolicy\nmetadata: {}\n"
    (policy_dir / "typo.yaml").write_text(no_name)
    code = await serve(
        settings_for(policy_dir, once=True),
        target=FakeTarget(),
        sources={},
        catalog=PolicyStore([policy_dir]),
        clock=clock,
        sleep=clock.sleep,
    )
    assert code == EXIT_INPUT


async def test_sigterm_stops_the_controller_cleanly(policy_dir: Path, clock: FakeClock) -> None:
    write_policy(policy_dir, "web")
    target = FakeTarget(service("web", 1))
    run, started = start_serving(
        policy_dir, target, {"prometheus": FakeSource({("web", "rps"): 10.0})}, clock
    )
    reconciler, _ = await asyncio.wait_for(started, timeout=5)
    await eventually(lambda: reconciler.status.passes >= 1, what="first pass")

    os.kill(os.getpid(), signal.SIGTERM)
    code = await asyncio.wait_for(run, timeout=5)

    assert code == EXIT_OK and reconciler.stopping and target.closed
    # The handler is removed again: a later SIGTERM must not reach a dead controller.
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.default_int_handler)


async def test_http_endpoints_report_metrics_health_and_decisions(policy_dir: Path, clock: FakeClock) -> None:
    write_policy(policy_dir, "web", target=10.0, min_replicas=1, max_replicas=7)
    write_policy(policy_dir, "agent")
    target = FakeTarget(service("web", 1), service("agent", None, running=3))
    registry = CollectorRegistry()
    run, started = start_serving(
        policy_dir, target, {"prometheus": FakeSource({("web", "rps"): 30.0})}, clock, registry=registry
    )
    try:
        reconciler, server = await asyncio.wait_for(started, timeout=5)
        assert server is not None
        await eventually(lambda: reconciler.status.passes >= 1, what="first pass")
        base = f"http://127.0.0.1:{server.port}"
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/healthz") as r:
                assert r.status == 200
            async with http.get(f"{base}/readyz") as r:
                ready = await r.json()
                assert r.status == 200 and all(ready["checks"].values())
            async with http.get(f"{base}/metrics") as r:
                exposition = await r.text()
            async with http.get(f"{base}/decisions") as r:
                decisions = json.loads(await r.text())
    finally:
        reconciler.stop()
        await asyncio.wait_for(run, timeout=5)

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }
    web_desired = target.services["web"].replicas
    assert samples[("autoscaler_desired_replicas", (("service", "web"),))] == web_desired
    assert samples[("autoscaler_max_replicas", (("service", "web"),))] == 7
    assert samples[("autoscaler_policy_load_errors", ())] == 0
    assert any(name == "autoscaler_reconcile_duration_seconds_count" for name, _ in samples)

    web = decisions["services"]["web"]
    assert web["outcome"] == "scaled" and web["decision"]["desired"] == web_desired
    metric = web["decision"]["metrics"][0]
    assert metric["name"] == "rps" and metric["value"] == 30.0 and metric["target"] == 10.0
    assert decisions["services"]["agent"]["outcome"] == "skipped"
    assert decisions["policy_problems"] == []


async def test_readyz_fails_while_docker_is_unreachable(policy_dir: Path, clock: FakeClock) -> None:
    write_policy(policy_dir, "web")
    target = FakeTarget(service("web", 1))
    target.fail_list = ConnectionRefusedError("docker.sock: connection refused")
    run, started = start_serving(policy_dir, target, {}, clock)
    try:
        reconciler, server = await asyncio.wait_for(started, timeout=5)
        assert server is not None
        await eventually(lambda: reconciler.status.passes >= 1, what="first pass")
        url = f"http://127.0.0.1:{server.port}/readyz"
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            body = await r.json()
    finally:
        reconciler.stop()
        await asyncio.wait_for(run, timeout=5)
    assert r.status == 503
    assert body["checks"]["docker_reachable"] is False and "connection refused" in body["docker_error"]


async def test_sighup_reloads_policies_at_once(policy_dir: Path, clock: FakeClock) -> None:
    write_policy(policy_dir, "web", max_replicas=2)
    target = FakeTarget(service("web", 1))
    run, started = start_serving(
        policy_dir, target, {"prometheus": FakeSource({("web", "rps"): 1000.0})}, clock
    )
    try:
        reconciler, _ = await asyncio.wait_for(started, timeout=5)
        interval = reconciler.interval
        await eventually(
            lambda: reconciler.status.passes == 1 and clock.waiting_until(clock.now + interval),
            what="first pass done, loop asleep",
        )
        assert target.services["web"].replicas == 2
        write_policy(policy_dir, "web", max_replicas=5)

        os.kill(os.getpid(), signal.SIGHUP)
        # No clock movement: only the signal can cause this pass (after the debounce).
        await eventually(lambda: clock.waiting_until(clock.now + reconciler.debounce), what="debounce")
        clock.advance(reconciler.debounce)
        await eventually(lambda: reconciler.status.passes == 2, what="pass after SIGHUP")
    finally:
        reconciler.stop()
        await asyncio.wait_for(run, timeout=5)
    assert reconciler.status.records["web"].policy.spec.max_replicas == 5
    assert target.services["web"].replicas is not None and target.services["web"].replicas > 2


def test_run_rejects_bad_settings_with_the_field_named(capsys: Any) -> None:
    from autoscaler.cli import main

    assert main(["run", "--interval", "0", "--once"]) == EXIT_INPUT
    err = capsys.readouterr().err
    assert "loop.interval" in err and "AUTOSCALER_LOOP__INTERVAL" in err


async def test_real_wiring_builds_one_source_per_configured_backend(policy_dir: Path) -> None:
    from autoscaler.cli.run import _close, _real_catalog, _real_docker, _real_sources, _real_target

    settings = load_settings(
        overrides={
            "policies": {"paths": [policy_dir]},
            "docker": {"host": "unix:///nonexistent/docker.sock"},
            "prometheus": {"url": "http://127.0.0.1:9"},
            "ipvs": {"agents": ["http://127.0.0.1:9/metrics"]},
        }
    )
    docker = _real_docker(settings)
    target, sources, catalog = _real_target(docker), _real_sources(settings), _real_catalog(settings)
    try:
        assert docker.url == "unix:///nonexistent/docker.sock"
        assert sorted(sources) == ["ipvs", "prometheus"]
        assert catalog.policies == []  # nothing read before the first reload
    finally:
        await _close(target)
        for source in sources.values():
            await _close(source)
        await docker.close()

    bare = load_settings(overrides={"policies": {"paths": [policy_dir]}})
    sources = _real_sources(bare)
    assert sources == {}, "a backend without settings must not be half-configured"


class HangingSource(FakeSource):
    """A Prometheus that accepted the connection and never answers, not even to close."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()

    async def fetch(self, requests: Any) -> Any:
        self.asked.set()
        await asyncio.Event().wait()

    async def close(self) -> None:
        await asyncio.Event().wait()


async def test_sigterm_with_a_hanging_source_ends_at_the_grace_with_status_1(
    policy_dir: Path, clock: FakeClock
) -> None:
    # Issue 11, item 9: exit 0 although the pass was abandoned, and closing the clients had
    # no deadline at all (with Prometheus hanging the process lived 12.7 s).
    write_policy(policy_dir, "web")
    source = HangingSource()
    started: Started = asyncio.get_running_loop().create_future()
    shutdown = Shutdown(0.5)
    settings = load_settings(
        overrides={
            "policies": {"paths": [policy_dir]},
            "http": {"listen": "127.0.0.1:0"},
            "loop": {"shutdown_grace": 0.5},
        }
    )
    run = asyncio.create_task(
        serve(
            settings,
            target=FakeTarget(service("web", 1)),
            sources={"prometheus": source},
            catalog=PolicyStore([policy_dir]),
            clock=clock,
            sleep=clock.sleep,
            started=started,
            shutdown=shutdown,
        )
    )
    await asyncio.wait_for(started, timeout=5)
    await asyncio.wait_for(source.asked.wait(), timeout=5)

    os.kill(os.getpid(), signal.SIGTERM)
    code = await asyncio.wait_for(run, timeout=5)

    assert code == EXIT_INPUT
    assert shutdown.abandoned == ["the in-flight pass", "closing HangingSource"]
