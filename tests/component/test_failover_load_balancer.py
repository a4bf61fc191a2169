"""The loop with the real failover monitor reading IPVS through fake agents.

web runs 3 replicas on 3 nodes; node 2 dies with slot 2, and from then on the metric asks
for 1 replica, so every pass wants to scale down. Scale-down stays held (and the decision says why) until the
replacement is running, healthy and routed by IPVS on the nodes, not merely running.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from timing import FakeClock

from autoscaler.cli.run import _load_balancer
from autoscaler.core.failover_model import NodeView, TaskView
from autoscaler.core.load_balancer import LoadBalancerView
from autoscaler.errors import TemporarySourceError
from autoscaler.reconciler.failover_monitor import FailoverMonitor
from autoscaler.reconciler.loop import Reconciler
from autoscaler.reconciler.records import Outcome
from autoscaler.reconciler.status import ReconcilerStatus
from autoscaler.sources.ipvs_agents import IpvsSource

from .fakes import FakeLoadBalancer, FakeNodes, FakeSource, FakeTarget, service, write_policy

MakeReconciler = Callable[..., Reconciler]
WEB_ID = "id-web"


def nodes(down: int | None = None, at: float = 0.0) -> list[NodeView]:
    return [
        NodeView(f"n{i}", f"host{i}", "down" if i == down else "ready", "active", updated_at=at)
        for i in (1, 2, 3)
    ]


def web_task(tid: str, n: int, slot: int, created: float, address: int, state: str = "running") -> TaskView:
    return TaskView(
        tid, WEB_ID, f"n{n}", slot, state, "running", created, created + 1, addresses=(f"10.0.1.{address}",)
    )


def replacement(clock: FakeClock) -> TaskView:
    """The lost task's (w2's) replacement: w2b, running on node 3 as 10.0.1.7 from now."""
    return web_task("w2b", 3, 2, clock.now, 7)


def lost_task(reconciler: Reconciler) -> dict[str, Any]:
    """The lost task of the open failover, as /decisions shows it."""
    task: dict[str, Any] = ReconcilerStatus(reconciler).decisions()["failovers"][0]["tasks"][0]
    return task


def routes(*addresses: int) -> LoadBalancerView:
    """Nodes 1 and 3 balancing web's VIP (fwmark 257 in lb_abc) to ``addresses``."""
    entry = {"web": {"lb_abc 257": frozenset(f"10.0.1.{a}" for a in addresses)}}
    return LoadBalancerView(routes={"host1": entry, "host3": entry})


def policy(directory: Path, node_failure: str) -> None:
    path = write_policy(directory, "web", target=10.0, down_window=0)
    path.write_text(path.read_text() + f"  nodeFailure:\n{node_failure}")


async def setup(
    clock: FakeClock,
    registry: CollectorRegistry,
    make_reconciler: MakeReconciler,
    agents: FakeLoadBalancer,
) -> tuple[Reconciler, FailoverMonitor, FakeNodes, FakeTarget]:
    target = FakeTarget(dataclasses.replace(service("web", 3), load_balanced=True))
    swarm = FakeNodes(nodes(), [web_task(f"w{i}", i, i, clock.now - 100, i) for i in (1, 2, 3)])
    monitor = FailoverMonitor(
        nodes=swarm,
        target=target,
        registry=registry,
        clock=clock,
        sleep=clock.sleep,
        load_balancer=agents,
        load_balancer_timeout=0.05,
    )
    source = FakeSource({("web", "rps"): 30.0})  # 3 replicas' worth: the first pass keeps 3
    reconciler = make_reconciler(target, source, failover=monitor)
    await reconciler.run_once()  # set_managed
    assert not target.scale_calls
    await monitor.resync()
    swarm.nodes = nodes(down=2, at=clock.now)
    clock.advance(1)
    await monitor.resync()
    source.values[("web", "rps")] = 10.0  # from now on the metric asks for 1
    return reconciler, monitor, swarm, target


async def test_scale_down_is_held_until_ipvs_routes_to_the_replacement(
    clock: FakeClock, registry: CollectorRegistry, policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    policy(policy_dir, "    loadBalancer: auto\n")
    agents = FakeLoadBalancer(routes(1, 2, 3))
    reconciler, monitor, swarm, target = await setup(clock, registry, make_reconciler, agents)
    swarm.tasks.append(replacement(clock))

    for view in (routes(1, 2, 3), routes(1, 2, 3, 7)):  # not routed yet; routed, lost still there
        agents.view = view
        clock.advance(1)
        await monitor.resync()
        await reconciler.run_once()
        record = reconciler.status.records["web"]
        assert record.outcome is Outcome.UNCHANGED and not target.scale_calls
        assert "1 running, waiting for the load balancer" in record.reason
        task = lost_task(reconciler)
        assert task["status"] == "waiting"
        assert task["pending_reason"].startswith(
            "waiting for the load balancer: task w2b is running and healthy"
        )

    agents.view = routes(1, 3, 7)
    clock.advance(1)
    await monitor.resync()
    task = lost_task(reconciler)
    assert task["status"] == "confirmed"
    assert task["confirm_reason"] == "confirmed: running, healthy, and an IPVS backend on 2/2 nodes"
    await reconciler.run_once()
    assert [c.replicas for c in target.scale_calls] == [1], "scale-down not released once routed"
    assert agents.reads >= 4


async def test_agents_unreachable_wait_then_on_timeout_scales_up(
    clock: FakeClock, registry: CollectorRegistry, policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    policy(
        policy_dir,
        "    loadBalancer: required\n    confirmWithinSeconds: 10\n    onTimeout: scaleUp\n",
    )
    agents = FakeLoadBalancer()
    agents.fail = TemporarySourceError("ipvs: no agent answered: http://10.0.0.2:9105/metrics: refused")
    reconciler, monitor, swarm, target = await setup(clock, registry, make_reconciler, agents)
    swarm.tasks.append(replacement(clock))
    clock.advance(1)
    await monitor.resync()
    task = lost_task(reconciler)
    assert task["pending_reason"] == (
        "waiting for the load balancer: task w2b is running and healthy, the IPVS agents could not be read: "
        "TemporarySourceError: ipvs: no agent answered: http://10.0.0.2:9105/metrics: refused"
    )
    assert registry.get_sample_value("autoscaler_failover_load_balancer_read_errors_total") == 2
    assert "IPVS agents not read" in monitor.load_balancer_state()

    clock.advance(10)  # past failed_at + confirmWithinSeconds
    await monitor.resync()
    timeout = ReconcilerStatus(reconciler).decisions()["failovers"][0]["timeouts"][0]
    assert timeout["action"] == "scaleUp" and timeout["outcome"] == "scaled 3 -> 4 replicas"
    assert timeout["reasons"] == [task["pending_reason"]]
    assert [c.replicas for c in target.scale_calls] == [4]


async def test_auto_without_reachable_agents_keeps_confirming_on_running_and_healthy(
    clock: FakeClock, registry: CollectorRegistry, policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    policy(policy_dir, "    loadBalancer: auto\n")
    agents = FakeLoadBalancer()
    agents.fail = TemporarySourceError("ipvs: no agent answered")
    reconciler, monitor, swarm, _ = await setup(clock, registry, make_reconciler, agents)
    swarm.tasks.append(replacement(clock))
    clock.advance(1)
    await monitor.resync()
    task = lost_task(reconciler)
    assert task["status"] == "confirmed"
    assert task["confirm_reason"] == (
        "confirmed: running and healthy (IPVS not checked: the IPVS agents could not be read: "
        "TemporarySourceError: ipvs: no agent answered; loadBalancer: auto)"
    )


async def test_a_hanging_agent_read_is_cut_short_and_the_task_waits_saying_so(
    clock: FakeClock, registry: CollectorRegistry, policy_dir: Path, make_reconciler: MakeReconciler
) -> None:
    policy(policy_dir, "    loadBalancer: required\n")
    agents = FakeLoadBalancer(routes(1, 2, 3, 7))
    agents.hang = True
    reconciler, monitor, swarm, _ = await setup(clock, registry, make_reconciler, agents)
    swarm.tasks.append(replacement(clock))
    clock.advance(1)
    events = await monitor.resync()  # returns: the read has its own timeout
    assert not events
    task = lost_task(reconciler)
    assert task["pending_reason"].endswith("the IPVS agents could not be read: no answer within 0.05s")


def test_the_controller_gives_the_failover_monitor_its_ipvs_source() -> None:
    """``run`` wires the ``ipvs`` metric source (the agents) in as the monitor's view of IPVS."""
    ipvs = IpvsSource(agents=["http://10.0.0.5:9105/metrics"])
    assert _load_balancer({"ipvs": ipvs, "prometheus": FakeSource()}) is ipvs
    assert _load_balancer({"prometheus": FakeSource()}) is None
