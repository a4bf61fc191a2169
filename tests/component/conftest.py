from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from timing import FakeClock

from autoscaler.observability.metrics import ControllerMetrics
from autoscaler.policy_sources.loader import PolicyStore
from autoscaler.reconciler.loop import Reconciler

from .fakes import FakeSource, FakeTarget


@pytest.fixture(autouse=True)
async def no_leftover_tasks() -> AsyncIterator[None]:
    """Every task a test starts must be finished when it ends (no leaked loops or servers)."""
    before = asyncio.all_tasks()
    yield
    current = asyncio.current_task()
    leftover = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
    assert not leftover, f"tasks still running after the test: {leftover}"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    return directory


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def make_reconciler(
    clock: FakeClock, policy_dir: Path, registry: CollectorRegistry
) -> Callable[..., Reconciler]:
    def make(target: FakeTarget, source: FakeSource | None = None, **options: object) -> Reconciler:
        sources = {"prometheus": source} if source is not None else {}
        return Reconciler(
            target=target,
            sources=sources,
            policies=PolicyStore([policy_dir]),
            metrics=ControllerMetrics(registry),
            clock=clock,
            sleep=clock.sleep,
            **options,  # type: ignore[arg-type]
        )

    return make
