"""What people see: `explain` against a live controller, JSON log lines, selector matches."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from timing import FakeClock, eventually

from autoscaler.cli import EXIT_INPUT, EXIT_OK, main
from autoscaler.observability.logs import configure_logging
from autoscaler.reconciler.loop import Reconciler
from autoscaler.reconciler.records import Outcome
from autoscaler.reconciler.status import ReconcilerStatus

from .fakes import FakeSource, FakeTarget, service, write_policy
from .test_serve import start_serving

MakeReconciler = Callable[..., Reconciler]


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = configure_logging("json", "INFO", stream)
    logger = logging.getLogger("autoscaler")
    yield stream
    logger.removeHandler(handler)
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


async def test_explain_prints_the_breakdown_from_a_running_controller(
    policy_dir: Path, clock: FakeClock, capsys: pytest.CaptureFixture[str]
) -> None:
    write_policy(policy_dir, "web", target=10.0, max_replicas=4)
    target = FakeTarget(service("web", 2))
    run, started = start_serving(
        policy_dir, target, {"prometheus": FakeSource({("web", "rps"): 90.0})}, clock
    )
    try:
        reconciler, server = await asyncio.wait_for(started, timeout=5)
        assert server is not None
        await eventually(lambda: reconciler.status.passes >= 1, what="first pass")
        url = f"http://127.0.0.1:{server.port}"
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["explain", "web", "--url", url])
        shown = capsys.readouterr().out
        missing = await asyncio.to_thread(main, ["explain", "nosuch", "--url", url])
        complaint = capsys.readouterr().err
    finally:
        reconciler.stop()
        await asyncio.wait_for(run, timeout=5)

    record = reconciler.status.records["web"]
    assert code == EXIT_OK and record.decision is not None
    assert f"desired {record.decision.desired}" in shown
    for limit in record.decision.limits:
        assert limit in shown
    assert "rps" in shown and "90" in shown and "10 /replica" in shown
    assert f"{90.0 / (10.0 * record.decision.running):.2f}" in shown  # the HPA ratio
    assert record.reason in shown
    assert missing == EXIT_INPUT and "nosuch" in complaint and "web" in complaint


def test_explain_says_when_the_controller_is_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:  # a port nobody listens on: bind, read it, close
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = main(["explain", "web", "--url", f"http://127.0.0.1:{port}", "--timeout", "2"])
    assert code == EXIT_INPUT
    assert f"cannot reach the controller at http://127.0.0.1:{port}/decisions" in capsys.readouterr().err


async def test_json_logs_have_one_line_per_decision_and_per_action(
    policy_dir: Path, make_reconciler: MakeReconciler, json_log: io.StringIO
) -> None:
    write_policy(policy_dir, "web")
    target = FakeTarget(service("web", 1))
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 30.0}))

    await reconciler.run_once()

    lines = [json.loads(line) for line in json_log.getvalue().splitlines()]
    decisions = [line for line in lines if line.get("event") == "decision"]
    actions = [line for line in lines if line.get("event") == "action"]
    scaled_to = target.services["web"].replicas
    assert len(decisions) == 1 and decisions[0]["service"] == "web" and decisions[0]["desired"] == scaled_to
    assert decisions[0]["metrics"] == {"rps": 30.0}
    assert len(actions) == 1 and actions[0]["to"] == scaled_to and actions[0]["from"] == 1
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)


async def test_selector_policies_govern_labelled_services_and_conflicts_are_reported(
    policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    write_policy(policy_dir, "tier-web", selector={"tier": "web"})
    write_policy(policy_dir, "team-a", selector={"team": "a"})
    target = FakeTarget(
        service("shop", 1, labels={"tier": "web"}),
        service("both", 1, labels={"tier": "web", "team": "a"}),
        service("other", 1, labels={"tier": "db"}),
    )
    source = FakeSource({(n, "rps"): 30.0 for n in ("shop", "both", "other")})
    reconciler = make_reconciler(target, source)

    result = await reconciler.run_once()

    assert result.scaled == ("shop",)
    assert reconciler.status.records["shop"].outcome is Outcome.SCALED
    assert "both" not in reconciler.status.records and "other" not in reconciler.status.records
    assert len(reconciler.status.conflicts) == 1
    assert "'both'" in reconciler.status.conflicts[0] and "team-a, tier-web" in reconciler.status.conflicts[0]


def explained(reconciler: Reconciler, *names: str) -> dict[str, str]:
    """What ``swarm-autoscaler explain NAME`` prints for each of ``names`` (from /decisions)."""
    from autoscaler.cli.explain import render

    document = ReconcilerStatus(reconciler).decisions()
    shown = {}
    for name in names:
        out = io.StringIO()
        render(document["services"][name], document, out)
        shown[name] = out.getvalue()
    return shown


async def test_explain_renders_services_without_a_decision(
    policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    write_policy(policy_dir, "agent")
    write_policy(policy_dir, "web")
    target = FakeTarget(service("agent", None, running=3), service("web", 2))
    target.fail_scale["web"] = RuntimeError("daemon exploded")
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 90.0}))
    await reconciler.run_once()

    shown = explained(reconciler, "agent", "web")
    assert "outcome   skipped" in shown["agent"] and "global-mode" in shown["agent"]
    assert "current -, running 3" in shown["agent"]
    assert "outcome   failed" in shown["web"] and "error     RuntimeError: daemon exploded" in shown["web"]


async def test_policies_that_govern_nothing_are_reported_once(
    policy_dir: Path, make_reconciler: MakeReconciler, caplog: pytest.LogCaptureFixture
) -> None:
    write_policy(policy_dir, "wbe", service="wbe")  # a typo of "web"
    write_policy(policy_dir, "batch", selector={"tier": "batch"})
    reconciler = make_reconciler(FakeTarget(service("web", 1)), FakeSource())

    with caplog.at_level(logging.WARNING, logger="autoscaler"):
        await reconciler.run_once()
        await reconciler.reconcile()

    idle = reconciler.status.idle_policies
    assert len(idle) == 2
    assert any("'wbe'" in m and "no service named" in m for m in idle)
    assert any("'batch'" in m and "tier=batch" in m for m in idle)
    warned = [r.getMessage() for r in caplog.records if getattr(r, "event", None) == "policy_idle"]
    assert sorted(warned) == sorted(idle), "idle policies must be logged once, not on every pass"


async def test_an_unchanged_decision_is_logged_at_debug_and_a_hold_once_when_it_starts(
    policy_dir: Path, make_reconciler: MakeReconciler, clock: FakeClock
) -> None:
    # Issue 11, item 13: INFO carried ~400 bytes per service per tick saying "no change".
    stream = io.StringIO()
    handler = configure_logging("json", "DEBUG", stream)
    try:
        write_policy(policy_dir, "web", target=10.0, down_window=300)
        source = FakeSource({("web", "rps"): 20.0})
        reconciler = make_reconciler(FakeTarget(service("web", 2)), source)

        def decision_levels() -> list[str]:
            lines = [json.loads(line) for line in stream.getvalue().splitlines()]
            stream.truncate(0)
            stream.seek(0)
            return [line["level"] for line in lines if line.get("event") == "decision"]

        await reconciler.run_once()  # 20 over 2 at 10 each: already right
        assert decision_levels() == ["INFO"]  # the first decision about a service is told
        for _ in range(3):
            clock.advance(5)
            await reconciler.run_once()
            assert decision_levels() == ["DEBUG"]
        source.values[("web", "rps")] = 5.0  # wants 1, held by the 300 s scale-down window
        for expected in ("INFO", "DEBUG", "DEBUG"):
            clock.advance(5)
            await reconciler.run_once()
            assert decision_levels() == [expected]
        source.values[("web", "rps")] = 20.0  # the hold ends
        clock.advance(5)
        await reconciler.run_once()
        assert decision_levels() == ["INFO"]
        del source.values[("web", "rps")]  # a failed reading is told every time
        for _ in range(2):
            clock.advance(5)
            await reconciler.run_once()
            assert decision_levels() == ["INFO"]
    finally:
        logger = logging.getLogger("autoscaler")
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(logging.NOTSET)


async def test_outside_text_is_bounded_in_decisions_and_the_log(
    policy_dir: Path, make_reconciler: MakeReconciler, json_log: io.StringIO
) -> None:
    # Issue 11, item 6: a 5 MB error written into every log line and /decisions record.
    write_policy(policy_dir, "web")
    target = FakeTarget(service("web", 1))
    source = FakeSource({("web", "rps"): 1000.0})
    source.fail = RuntimeError("p" * 5_000_000)
    target.fail_scale["web"] = RuntimeError("d" * 5_000_000)
    reconciler = make_reconciler(target, source)

    await reconciler.run_once()  # the source fails: the reading's reason quotes it
    record = ReconcilerStatus(reconciler).decisions()["services"]["web"]
    assert "ppp" in record["reason"] and len(json.dumps(record)) < 10_000

    source.fail = None
    await reconciler.run_once()  # now the scale call fails: the error quotes Docker
    record = ReconcilerStatus(reconciler).decisions()["services"]["web"]
    assert record["outcome"] == "failed" and "ddd" in record["error"] and len(json.dumps(record)) < 10_000
    assert all(len(line) < 20_000 for line in json_log.getvalue().splitlines())  # message + traceback bounds
