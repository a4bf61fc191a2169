"""run's gc.freeze() after the first pass that governs services (issue 15)."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from autoscaler.reconciler.loop import Reconciler

from .fakes import FakeSource, FakeTarget, refused, service, write_policy

MakeReconciler = Callable[..., Reconciler]


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Each test starts and ends with nothing frozen and the collector on."""
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.enable()


async def test_the_first_pass_with_services_freezes_and_the_collector_stays_on(
    unfrozen: None, policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    write_policy(policy_dir, "web", target=10.0)
    target = FakeTarget(service("web", 2))
    target.fail_list = refused()
    reconciler = make_reconciler(target, FakeSource({("web", "rps"): 20.0}), freeze_after_first_pass=True)

    result = await reconciler.run_once()  # Docker down: nothing governed yet, nothing frozen
    assert result.target_error is not None
    assert gc.get_freeze_count() == 0 and gc.isenabled()

    target.fail_list = None
    await reconciler.run_once()
    frozen = gc.get_freeze_count()
    assert frozen > 0 and gc.isenabled()

    gc.unfreeze()
    await reconciler.run_once()  # once only: later passes' objects stay collectable
    assert gc.get_freeze_count() == 0 and gc.isenabled()


async def test_without_the_option_nothing_is_frozen(
    unfrozen: None, policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    write_policy(policy_dir, "web", target=10.0)
    reconciler = make_reconciler(FakeTarget(service("web", 2)), FakeSource({("web", "rps"): 20.0}))

    await reconciler.run_once()

    assert reconciler.status.records["web"].decision is not None
    assert gc.get_freeze_count() == 0 and gc.isenabled()
