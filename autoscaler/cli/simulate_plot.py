"""``simulate --plot``: load, capacity and replicas over time. Needs the ``plot`` extra."""

from __future__ import annotations

from pathlib import Path

# The object-oriented API renders straight to a file: no pyplot, no display, no global state.
from matplotlib.figure import Figure

from autoscaler.core.policy import ScalingPolicy
from autoscaler.core.simulate import SimulationResult
from autoscaler.core.trace import Trace


def plot_timeline(path: Path, policy: ScalingPolicy, trace: Trace, result: SimulationResult) -> None:
    first = policy.spec.metrics[0].name
    ts = [s.t for s in result.steps]
    fig = Figure(figsize=(11, 4.5))
    load_ax = fig.subplots()
    load_ax.step(
        trace.times,
        [v if v is not None else float("nan") for v in trace.values[first]],
        where="post",
        color="tab:blue",
        label=f"{first} (load)",
    )
    cap = result.summary.capacity
    if cap is not None:
        load_ax.step(
            ts,
            [s.ready * cap for s in result.steps],
            where="post",
            color="tab:green",
            linestyle="--",
            label=f"capacity (ready x {cap:g})",
        )
    load_ax.set_xlabel("t (s)")
    load_ax.set_ylabel(first)
    load_ax.set_ylim(bottom=0)
    rep_ax = load_ax.twinx()
    rep_ax.step(ts, [s.ready for s in result.steps], where="post", color="tab:orange", label="ready replicas")
    rep_ax.step(
        ts,
        [s.decision.desired for s in result.steps],
        where="post",
        color="tab:red",
        linestyle=":",
        label="desired replicas",
    )
    rep_ax.set_ylabel("replicas")
    rep_ax.set_ylim(bottom=0)
    handles = load_ax.get_legend_handles_labels()[0] + rep_ax.get_legend_handles_labels()[0]
    load_ax.legend(handles=handles, loc="upper left", fontsize="small")
    load_ax.set_title(f"swarm-autoscaler simulate: policy {policy.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
