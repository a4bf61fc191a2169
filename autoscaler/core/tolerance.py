"""Per-direction tolerance (HPA 1.33+, KEP-4951): how far a ratio may stray before it counts.

``behavior.scaleUp.tolerance`` and ``behavior.scaleDown.tolerance`` each default to
``spec.tolerance``. A metric's usage ratio (metric ÷ target, per replica for averageValue)
asks for no change while ``1 - scaleDown <= ratio <= 1 + scaleUp``, the comparison HPA's
replica calculator makes (``Tolerances.isWithin``). Large services want a finer scale-up
tolerance: at 1,000 replicas the default 10 % hides 100 replicas' worth of load.
"""

from __future__ import annotations

from dataclasses import dataclass

from autoscaler.core.decision import num
from autoscaler.core.policy import PolicySpec


@dataclass(frozen=True, slots=True)
class Tolerances:
    up: float
    down: float

    @staticmethod
    def of(spec: PolicySpec) -> Tolerances:
        up = spec.behavior.scale_up.tolerance
        down = spec.behavior.scale_down.tolerance
        return Tolerances(
            up=spec.tolerance if up is None else up,
            down=spec.tolerance if down is None else down,
        )

    def within(self, ratio: float) -> bool:
        return 1.0 - self.down <= ratio <= 1.0 + self.up

    @property
    def text(self) -> str:
        """``0.1`` when both directions agree, else ``-0.1/+0.02`` (down, then up)."""
        if self.up == self.down:
            return num(self.up)
        return f"-{num(self.down)}/+{num(self.up)}"
