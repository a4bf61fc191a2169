"""Replacement confirmation that knows the load balancer: the pure verdict and the tracker with IPVS views.

Three nodes; node 2 is lost with web's slot-2 task (address 10.0.1.2 on the overlay, 10.255.0.2
on the ingress). Its replacement w2b runs on node 3 as 10.0.1.7 / 10.255.0.7. Nodes 1 and 3 each
balance web in two IPVS entries (the ingress published port, the overlay VIP).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

import pytest

from autoscaler.core.failover_tracker import (
    FailoverEvent,
    FailoverTracker,
    LoadBalancerView,
    LostStatus,
    ManagedService,
    NodeView,
    ReplacementConfirmed,
    TaskView,
)
from autoscaler.core.load_balancer import routing_verdict
from autoscaler.core.policy import LoadBalancerCheck, NodeFailure

T0 = 1_700_000_000.0
E = TypeVar("E")


def node(n: int, state: str = "ready", at: float = T0) -> NodeView:
    return NodeView(id=f"n{n}", hostname=f"host{n}", state=state, availability="active", updated_at=at)


def cluster(**overrides: NodeView) -> list[NodeView]:
    return list(({f"n{i}": node(i) for i in (1, 2, 3)} | overrides).values())


def task(tid: str, node_id: str, slot: int, *, state: str = "running", created: float = T0 - 100) -> TaskView:
    return TaskView(
        id=tid,
        service_id="svc-web",
        node_id=node_id,
        slot=slot,
        state=state,
        desired_state="running",
        created_at=created,
        status_at=created + 1,
    )


def of_type(events: list[FailoverEvent], kind: type[E]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


LOST = ("10.0.1.2", "10.255.0.2")
NEW = ("10.0.1.7", "10.255.0.7")
OTHERS = ("10.0.1.1", "10.255.0.1", "10.0.1.3", "10.255.0.3")


def web(mode: LoadBalancerCheck = LoadBalancerCheck.AUTO, *, load_balanced: bool = True) -> ManagedService:
    return ManagedService(
        id="svc-web",
        name="web",
        node_failure=NodeFailure(confirm_within_seconds=30, load_balancer=mode),
        load_balanced=load_balanced,
    )


def entries(*addresses: str) -> dict[str, frozenset[str]]:
    """web's two entries on a node: the ingress (10.255.*) and the VIP (10.0.1.*) one."""
    return {
        "ingress_sbox 256": frozenset(a for a in addresses if a.startswith("10.255.")),
        "lb_abc 257": frozenset(a for a in addresses if a.startswith("10.0.1.")),
    }


BEFORE = (*OTHERS, *LOST)  # what every node routes to before the failure
AFTER = (*OTHERS, *NEW)  # the mesh once it caught up


def view(n1: tuple[str, ...] = AFTER, n3: tuple[str, ...] = AFTER, **kw: object) -> LoadBalancerView:
    return LoadBalancerView(
        routes={"host1": {"web": entries(*n1)}, "host3": {"web": entries(*n3)}},
        **kw,  # type: ignore[arg-type]
    )


DEAD = cluster(n2=node(2, "down", at=T0 + 3))
A, R, IG = LoadBalancerCheck.AUTO, LoadBalancerCheck.REQUIRED, LoadBalancerCheck.IGNORE
NOT_READ = LoadBalancerView.unreadable("TemporarySourceError: ipvs: no agent answered")
NO_IPVS = LoadBalancerView(unavailable=frozenset({"host1", "host3"}))


@pytest.mark.parametrize(
    ("mode", "balanced", "seen", "confirmed", "checked", "says"),
    [
        # routed everywhere, the lost task gone: confirmed, and the reason says IPVS was checked
        (A, True, view(), True, True, "an IPVS backend on 2/2 nodes"),
        (R, True, view(), True, True, "an IPVS backend on 2/2 nodes"),
        # ignore: never looks
        (IG, True, view(n1=BEFORE, n3=BEFORE), True, False, "IPVS not checked: loadBalancer: ignore"),
        # routed on node 3 only: wait, naming node 1
        (A, True, view(n1=BEFORE), False, True, "not yet an IPVS backend on host1 (1/2 nodes"),
        # in the VIP entry but not yet in the ingress one on node 1: still not routed there
        (A, True, view(n1=(*OTHERS, *LOST, NEW[0])), False, True, "not yet an IPVS backend on host1"),
        # routed everywhere, but node 1 still sends to the lost task
        (
            A,
            True,
            view(n1=(*AFTER, LOST[1])),
            False,
            True,
            "(10.0.1.2, 10.255.0.2) is still an IPVS backend on host1",
        ),
        # no agents configured: auto keeps today's behaviour, required waits
        (A, True, None, True, False, "no IPVS agents configured"),
        (R, True, None, False, True, "no IPVS agents configured"),
        # the agents cannot be read at all
        (A, True, NOT_READ, True, False, "could not be read: TemporarySourceError"),
        (R, True, NOT_READ, False, True, "could not be read: TemporarySourceError"),
        # agents answer, but no kernel has IPVS (the netns lab running agents)
        (A, True, NO_IPVS, True, False, "no agent read IPVS (IPVS unavailable on host1, host3)"),
        (R, True, NO_IPVS, False, True, "no agent read IPVS"),
        # one ready node's agent silent: its routing is unknown, so wait (also in auto)
        (
            A,
            True,
            LoadBalancerView(
                routes={"host1": {"web": entries(*AFTER)}}, failures=("http://n3:9105: refused",)
            ),
            False,
            True,
            "no IPVS reading from node(s) host3 (agent failed: http://n3:9105: refused)",
        ),
        # a dnsrr service: IPVS never routes to it, so it is not checked even when required
        (R, False, view(n1=BEFORE, n3=BEFORE), True, False, "has no VIP and no ingress-published port"),
        # agents read, but no node has an entry for the service yet (all its backends were lost)
        (A, True, LoadBalancerView(routes={"host1": {}, "host3": {}}), False, True, "no IPVS entry for web"),
    ],
)
def test_routing_verdict(
    mode: LoadBalancerCheck,
    balanced: bool,
    seen: LoadBalancerView | None,
    confirmed: bool,
    checked: bool,
    says: str,
) -> None:
    verdict = routing_verdict(
        mode, service="web", load_balanced=balanced, replacement=NEW, lost=LOST, nodes=DEAD, view=seen
    )
    assert (verdict.confirmed, verdict.checked) == (confirmed, checked), verdict.reason
    assert says in verdict.reason


def test_a_node_that_does_not_balance_the_service_is_not_counted() -> None:
    """A VIP-only service has an lb_ namespace only on nodes with a task on its network."""
    seen = LoadBalancerView(routes={"host1": {"web": entries(*AFTER)}, "host3": {"db": entries("10.0.1.9")}})
    verdict = routing_verdict(
        A, service="web", load_balanced=True, replacement=NEW, lost=LOST, nodes=DEAD, view=seen
    )
    assert verdict.confirmed and verdict.reason == "an IPVS backend on 1/1 nodes"


# -- the tracker, driven with IPVS views ---------------------------------------------------------


def tasks(*, replacement: str | None = None) -> list[TaskView]:
    """web slots 1-3 on n1-n3 with their addresses; w2b (slot 2 on n3) in state ``replacement``."""

    def addressed(t: TaskView, n: int) -> TaskView:
        return replace(t, addresses=(f"10.0.1.{n}", f"10.255.0.{n}"))

    out = [addressed(task(f"w{n}", f"n{n}", n), n) for n in (1, 2, 3)]
    if replacement is not None:
        new = task("w2b", "n3", 2, state=replacement, created=T0 + 4)
        out.append(replace(new, addresses=NEW))
    return out


def lose_node2(service: ManagedService, seen: LoadBalancerView | None) -> FailoverTracker:
    tracker = FailoverTracker()
    managed = {service.id: service}
    tracker.observe(T0, cluster(), tasks(), managed, view(n1=BEFORE, n3=BEFORE))
    orphaned = [replace(t, desired_state="shutdown") if t.node_id == "n2" else t for t in tasks()]
    tracker.observe(T0 + 3.5, DEAD, orphaned, managed, seen)
    return tracker


def test_replacement_is_confirmed_only_once_ipvs_routes_to_it_and_not_to_the_lost_task() -> None:
    service = web(A)
    managed = {service.id: service}
    tracker = lose_node2(service, view(n1=BEFORE, n3=BEFORE))
    assert tracker.open_failovers[0].lost[0].addresses == LOST

    steps = [
        # (IPVS as the agents see it, confirmed yet?, what the waiting task says)
        (view(n1=BEFORE, n3=BEFORE), False, "not yet an IPVS backend on host1, host3 (0/2 nodes"),
        (view(n1=BEFORE, n3=(*BEFORE, *NEW)), False, "not yet an IPVS backend on host1 (1/2"),
        (view(n1=(*BEFORE, *NEW), n3=(*BEFORE, *NEW)), False, "is still an IPVS backend on host1, host3"),
        (view(n1=(*AFTER, LOST[0]), n3=AFTER), False, "is still an IPVS backend on host1"),
        (view(), True, None),
    ]
    for at, (seen, done, says) in enumerate(steps):
        now = T0 + 7 + at
        events = tracker.observe(now, DEAD, tasks(replacement="running"), managed, seen)
        lost = tracker.failovers()[0].lost[0]
        assert bool(of_type(events, ReplacementConfirmed)) == done, (at, lost.pending_reason)
        if done:
            assert lost.status is LostStatus.CONFIRMED and lost.confirmed_at == now
            assert lost.confirm_reason == "confirmed: running, healthy, and an IPVS backend on 2/2 nodes"
            assert tracker.hold_reason(service.id, now) is None
        else:
            assert says is not None and lost.pending_reason is not None
            assert lost.pending_reason.startswith(
                "waiting for the load balancer: task w2b is running and healthy"
            )
            assert says in lost.pending_reason
            hold = tracker.hold_reason(service.id, now)
            assert hold is not None and "(1 running, waiting for the load balancer)" in hold


def test_a_replacement_not_running_yet_is_not_asked_about_ipvs() -> None:
    service = web(R)
    tracker = lose_node2(service, view())
    tracker.observe(T0 + 5, DEAD, tasks(replacement="starting"), {service.id: service}, view())
    lost = tracker.failovers()[0].lost[0]
    assert lost.status is LostStatus.WAITING
    assert lost.pending_reason is not None and lost.pending_reason.startswith("task w2b is starting")


def test_agents_unreachable_waits_with_the_reason_and_the_confirm_window_still_fires() -> None:
    service = web(R)
    managed = {service.id: service}
    tracker = lose_node2(service, NOT_READ)
    events = tracker.observe(T0 + 8, DEAD, tasks(replacement="running"), managed, NOT_READ)
    lost = tracker.failovers()[0].lost[0]
    assert not of_type(events, ReplacementConfirmed)
    assert lost.pending_reason == (
        "waiting for the load balancer: task w2b is running and healthy, the IPVS agents could not be "
        "read: TemporarySourceError: ipvs: no agent answered"
    )
    deadline = T0 + 3 + 30  # failed_at + confirmWithinSeconds
    events = tracker.observe(deadline, DEAD, tasks(replacement="running"), managed, NOT_READ)
    failover = tracker.failovers()[0]
    assert [r.service_name for r in failover.timeouts] == ["web"]
    assert failover.timeouts[0].reasons == (lost.pending_reason,)
    # the agents answer again, routed: confirmed after the timeout, as a late replacement is
    events = tracker.observe(deadline + 1, DEAD, tasks(replacement="running"), managed, view())
    assert of_type(events, ReplacementConfirmed) and failover.lost[0].status is LostStatus.CONFIRMED


def test_auto_without_agents_confirms_on_running_and_healthy_and_says_ipvs_was_not_checked() -> None:
    service = web(A)
    tracker = lose_node2(service, None)
    events = tracker.observe(T0 + 7, DEAD, tasks(replacement="running"), {service.id: service}, None)
    confirmed = of_type(events, ReplacementConfirmed)
    assert len(confirmed) == 1
    assert confirmed[0].task.confirm_reason == (
        "confirmed: running and healthy (IPVS not checked: no IPVS agents configured "
        "(--ipvs-agent or AUTOSCALER_IPVS__DNS_NAME); loadBalancer: auto)"
    )


def test_an_address_the_replacement_inherited_from_the_lost_task_is_not_a_lost_backend() -> None:
    """Swarm may give the freed address to the new task: routed to it is routed to the replacement."""
    service = web(R)
    managed = {service.id: service}
    tracker = lose_node2(service, view(n1=BEFORE, n3=BEFORE))
    reused = [replace(t, addresses=LOST) if t.id == "w2b" else t for t in tasks(replacement="running")]
    orphan_kept = [
        replace(t, state="running", desired_state="shutdown") if t.id == "w2" else t for t in reused
    ]
    events = tracker.observe(T0 + 7, DEAD, orphan_kept, managed, view(n1=BEFORE, n3=BEFORE))
    assert of_type(events, ReplacementConfirmed), tracker.failovers()[0].lost[0].pending_reason
