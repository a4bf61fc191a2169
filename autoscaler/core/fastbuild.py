"""Build the per-tick value objects without the frozen dataclasses' ``__init__``.

``Decision`` and ``MetricRecommendation`` are frozen, slotted dataclasses; their generated
``__init__`` goes through ``object.__setattr__`` for every field, which was half the cost
of a decision (the engine builds both for every policy on every tick). Calling the slot
descriptors directly gives the same objects (equal, hashable, immutable afterwards) at
about half the price. ``_setters`` checks the field list at import, so a field added to
``decision.py`` fails loudly here instead of leaving an attribute unset.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from autoscaler.core.decision import Decision, MetricRecommendation


def _setters(cls: type, names: tuple[str, ...]) -> tuple[Callable[[object, object], None], ...]:
    """Slot setters of a frozen dataclass, checked against its fields.

    The generated ``__init__`` of a frozen dataclass pays ``object.__setattr__`` per field;
    calling the slot descriptors directly halves the cost of the two objects built every
    tick. The check makes a new field in ``decision.py`` fail at import, not silently.
    """
    fields = tuple(f.name for f in dataclasses.fields(cls))
    if fields != names or hasattr(cls, "__post_init__"):
        raise TypeError(f"{cls.__name__} fields are {fields}; update fastbuild for {names}")
    return tuple(cls.__dict__[n].__set__ for n in names)


_REC_FIELDS = ("name", "value", "desired", "reason")
_DECISION_FIELDS = (
    "at",
    "current",
    "running",
    "desired",
    "recommendation",
    "reason",
    "panic",
    "metrics",
    "limits",
)
_R_NAME, _R_VALUE, _R_DESIRED, _R_REASON = _setters(MetricRecommendation, _REC_FIELDS)
_D_AT, _D_CUR, _D_RUN, _D_DES, _D_REC, _D_REASON, _D_PANIC, _D_METRICS, _D_LIMITS = _setters(
    Decision, _DECISION_FIELDS
)
_new = object.__new__


def build_recommendation(
    name: str, value: float | None, desired: int | None, reason: str
) -> MetricRecommendation:
    rec: MetricRecommendation = _new(MetricRecommendation)
    _R_NAME(rec, name)
    _R_VALUE(rec, value)
    _R_DESIRED(rec, desired)
    _R_REASON(rec, reason)
    return rec


def build_decision(
    at: float,
    current: int,
    running: int,
    desired: int,
    recommendation: int,
    reason: str,
    panic: bool,
    metrics: tuple[MetricRecommendation, ...],
    limits: tuple[str, ...],
) -> Decision:
    d: Decision = _new(Decision)
    _D_AT(d, at)
    _D_CUR(d, current)
    _D_RUN(d, running)
    _D_DES(d, desired)
    _D_REC(d, recommendation)
    _D_REASON(d, reason)
    _D_PANIC(d, panic)
    _D_METRICS(d, metrics)
    _D_LIMITS(d, limits)
    return d
