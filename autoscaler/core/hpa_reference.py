"""The HPA-default reference run: what Kubernetes' HPA with every default would do.

Same metrics, targets and replica bounds as the policy under test; everything else at
HPA v2's defaults: tolerance 0.1, scale-up window 0 with 100 % or 4 pods per 15 s,
scale-down window 300 s with 100 % per 15 s, no panic mode, no forecast, no fallback
(a failed read holds), no schedules (``spec``'s own bounds), and a decision every 15 s
(the controller manager's ``--horizontal-pod-autoscaler-sync-period``).
``simulate --compare hpa`` and ``bench/bench_quality.py`` replay it beside the policy on
the same trace and the same replica model.
"""

from __future__ import annotations

from dataclasses import replace

from autoscaler.core.behavior_policy import Behavior, Panic
from autoscaler.core.policy import PolicySpec
from autoscaler.core.predictive_policy import Predictive
from autoscaler.core.simulate import SimulationConfig, SimulationResult, simulate
from autoscaler.core.trace import Trace

HPA_SYNC_PERIOD = 15.0
HPA_TOLERANCE = 0.1


def hpa_reference_spec(spec: PolicySpec) -> PolicySpec:
    """``spec`` with behavior, tolerance, panic, predictive, fallback and schedules at HPA's defaults."""
    return spec.model_copy(
        update={
            "tolerance": HPA_TOLERANCE,
            "behavior": Behavior(),
            "panic": Panic(enabled=False),
            "predictive": Predictive(enabled=False),
            "fallback": None,
            "schedules": (),
        }
    )


def simulate_hpa_reference(spec: PolicySpec, trace: Trace, config: SimulationConfig) -> SimulationResult:
    """The HPA-default run on ``trace``: same replica model as ``config``, 15 s sync period."""
    return simulate(hpa_reference_spec(spec), trace, replace(config, interval=HPA_SYNC_PERIOD))
