"""``spec.predictive``: the policy's switch and settings for predictive scale-up.

Kept apart from ``policy.py`` because it is one self-contained block; ``PolicySpec``
only holds a ``predictive`` field of this type. The defaults are the ones
``bench/bench_quality.py`` measured best (see docs/benchmarks.md); docs/policy-reference.md
describes every field.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator
from pydantic.alias_generators import to_camel

# As core/policy.py's Number and Bool (not imported: policy.py imports this module).
_Number = Annotated[float, Strict()]
_Bool = Annotated[bool, Strict()]


class ForecastMethod(StrEnum):
    """How the next ``horizon`` seconds of a metric are extrapolated."""

    TREND = "trend"  # least-squares line over the last windowSeconds
    HOLT = "holt"  # Holt's double exponential smoothing (level + trend), time constants from the window


class PredictiveMode(StrEnum):
    ACT = "act"  # a forecast may raise the recommendation
    FORECAST_ONLY = "forecastOnly"  # compute, explain and export the forecast; never act on it


class Predictive(BaseModel):
    """Scale up ahead of a rise the recent history shows coming; never scale down on it."""

    # Strict and finite like every other block of the policy (core/policy.py): no 'yes' for
    # true, no '15' for 15, no .inf.
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, allow_inf_nan=False
    )

    enabled: _Bool = False
    mode: PredictiveMode = PredictiveMode.ACT
    method: ForecastMethod = ForecastMethod.TREND
    # What a new replica takes to serve; the horizon is this plus one evaluation interval.
    startup_seconds: Annotated[_Number, Field(ge=0, le=3600)] = 15.0
    # Fixed horizon instead of startupSeconds + the interval seen between evaluations.
    horizon_seconds: Annotated[_Number | None, Field(gt=0, le=3600)] = None
    window_seconds: Annotated[_Number, Field(gt=0, le=3600)] = 60.0
    # A forecast needs this much history (seconds) inside the window before it is used.
    min_history_seconds: Annotated[_Number | None, Field(gt=0, le=3600)] = None
    # Scatter around the fitted trend, as a fraction of the mean, above which it is not used.
    max_noise: Annotated[_Number, Field(gt=0, le=10)] = 0.25
    # Add a daily pattern once a day of history exists (one value per minute of the day).
    seasonal: _Bool = True

    @model_validator(mode="after")
    def _history_fits_window(self) -> Self:
        if self.min_history_seconds is not None and self.min_history_seconds > self.window_seconds:
            raise ValueError(
                f"minHistorySeconds ({self.min_history_seconds:g}) cannot exceed windowSeconds "
                f"({self.window_seconds:g}): the history kept is one window long"
            )
        return self

    @property
    def min_history(self) -> float:
        """Seconds of history needed before forecasting (default: half the window)."""
        return self.window_seconds / 2 if self.min_history_seconds is None else self.min_history_seconds
