"""The engine's fast builders give the same value objects as the dataclass constructors."""

from __future__ import annotations

import dataclasses

import pytest

from autoscaler.core.decision import Decision, MetricRecommendation
from autoscaler.core.fastbuild import _setters, build_decision, build_recommendation


def test_built_objects_equal_constructed_ones_and_stay_frozen() -> None:
    rec = build_recommendation("rps", 12.5, 3, "why")
    assert rec == MetricRecommendation("rps", 12.5, 3, "why")
    assert hash(rec) == hash(MetricRecommendation("rps", 12.5, 3, "why"))
    d = build_decision(1.0, 2, 2, 3, 3, "because", True, (rec,), ("Panic",))
    assert d == Decision(
        at=1.0,
        current=2,
        running=2,
        desired=3,
        recommendation=3,
        reason="because",
        panic=True,
        metrics=(rec,),
        limits=("Panic",),
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.desired = 4  # type: ignore[misc]


def test_a_field_added_to_the_value_object_fails_loudly() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Grown:
        name: str
        extra: int

    with pytest.raises(TypeError, match="update fastbuild"):
        _setters(Grown, ("name",))
