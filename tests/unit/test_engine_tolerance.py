"""Per-direction tolerance (KEP-4951): behavior.scaleUp/scaleDown.tolerance, default spec.tolerance."""

from __future__ import annotations

import copy

import pytest
from test_engine import UNLIMITED, make_spec, read

from autoscaler.core.engine import Engine
from autoscaler.core.tolerance import Tolerances


def desired(spec_fields: dict[str, object], value: float, running: int) -> int:
    engine = Engine(make_spec(**{"maxReplicas": 2000, **spec_fields}), now=0.0, current=running)
    return engine.decide(now=1000.0, current=running, running=running, readings=read(rps=value)).desired


def directions(up: float | None = None, down: float | None = None) -> dict[str, object]:
    behavior: dict[str, dict[str, object]] = copy.deepcopy(UNLIMITED)
    if up is not None:
        behavior["scaleUp"]["tolerance"] = up
    if down is not None:
        behavior["scaleDown"]["tolerance"] = down
    return {"behavior": behavior, "maxReplicas": 2000}


# The KEP's motivation: 1,000 replicas at 104 % of target. With HPA's 10 % nothing moves
# (40 replicas of load unserved); a 1 % scale-up tolerance adds them, and the default
# scale-down tolerance still ignores a 5 % dip.
@pytest.mark.parametrize(
    ("fields", "per_replica", "expected"),
    [
        ({}, 104.0, 1000),  # |1 - 1.04| <= 0.1
        (directions(up=0.01), 104.0, 1040),  # 1.04 > 1 + 0.01
        (directions(up=0.01), 95.0, 1000),  # scale-down tolerance is still spec.tolerance (0.1)
        (directions(down=0.01), 95.0, 950),  # 0.95 < 1 - 0.01
        (directions(down=0.01), 104.0, 1000),  # scale-up tolerance stays 0.1
        ({"tolerance": 0.02, **directions(down=0.5)}, 104.0, 1040),  # up defaults to spec.tolerance
        ({"tolerance": 0.02, **directions(down=0.5)}, 60.0, 1000),  # 0.6 >= 1 - 0.5
        (directions(up=0.0, down=0.0), 100.0, 1000),  # exactly on target: no change
    ],
)
def test_kep_4951_per_direction(fields: dict[str, object], per_replica: float, expected: int) -> None:
    assert desired(fields, per_replica * 1000, 1000) == expected


def test_bounds_are_inclusive_as_in_hpa() -> None:
    t = Tolerances(up=0.25, down=0.5)
    assert t.within(1.25) and t.within(0.5) and not t.within(1.2500001) and not t.within(0.4999999)


def test_reason_shows_both_directions_when_they_differ() -> None:
    engine = Engine(make_spec(**directions(up=0.01)), now=0.0, current=10)
    d = engine.decide(now=1000.0, current=10, running=10, readings=read(rps=1005.0))
    assert "within tolerance -0.1/+0.01" in d.reason and d.desired == 10
