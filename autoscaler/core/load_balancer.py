"""Whether Swarm's routing mesh (IPVS) sends traffic to a replacement task: the pure verdict.

Swarm reports a replacement ``running`` (and healthy) before every node's IPVS tables list it
as a backend, and a lost task's backend may linger in them. ``LoadBalancerView`` is what the
IPVS agents saw at one moment; ``routing_verdict`` says, for one replacement, whether it is
routed on every node that balances its service and its lost task no longer is, or why the
confirmation must wait, or why IPVS is not checked at all (the policy's ``loadBalancer``).

A node's view holds, per service, each IPVS entry (one per load-balancer namespace and fwmark:
``ingress_sbox`` for published ports, ``lb_*`` per overlay network for the VIP) with the
addresses of its routed backends: weight > 0 (weight 0 is libnetwork draining a backend, no
new connection goes to it). A task is on a different network in each entry, so "a backend of
the entry" means one of its attachment addresses is there.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from autoscaler.core.failover_model import NodeView
from autoscaler.core.policy import LoadBalancerCheck

# service name -> IPVS entry ("namespace fwmark") -> routed backend addresses
NodeRoutes = Mapping[str, Mapping[str, frozenset[str]]]


@dataclass(frozen=True)
class LoadBalancerView:
    """IPVS as the agents saw it: ``routes`` per node hostname (agents that answered with IPVS).

    ``unavailable`` are nodes whose agent answered but whose kernel has no (readable) IPVS;
    ``failures`` the agents that did not answer ("url: why"); ``error`` is set when the view
    could not be read at all (no agent answered, timed out).
    """

    routes: Mapping[str, NodeRoutes] = field(default_factory=dict)
    unavailable: frozenset[str] = frozenset()
    failures: tuple[str, ...] = ()
    error: str | None = None

    @classmethod
    def unreadable(cls, why: str) -> LoadBalancerView:
        return cls(error=why)


@dataclass(frozen=True, slots=True)
class RoutingVerdict:
    """``confirmed`` False: wait, ``reason`` says for what. ``checked``: IPVS was looked at."""

    confirmed: bool
    checked: bool
    reason: str


def routing_verdict(
    mode: LoadBalancerCheck,
    *,
    service: str,
    load_balanced: bool,
    replacement: Collection[str],
    lost: Collection[str],
    nodes: Iterable[NodeView],
    view: LoadBalancerView | None,
) -> RoutingVerdict:
    """Is a running, healthy replacement (its addresses ``replacement``) routed, and ``lost`` not?

    ``lost`` are the lost task's addresses not held by a live task of the service (Swarm may
    give a freed address to the replacement). The nodes that must route are the ``ready``
    Swarm nodes (a drained node still balances its published ports); each needs an agent
    reading, and on each where the service has IPVS entries the replacement must be a routed
    backend of every one of them.
    """
    if mode is LoadBalancerCheck.IGNORE:
        return _unchecked("loadBalancer: ignore")
    if not load_balanced:
        return _unchecked(f"{service} has no VIP and no ingress-published port, IPVS does not route to it")
    if view is None:
        return _wait_or_skip(mode, "no IPVS agents configured (--ipvs-agent or AUTOSCALER_IPVS__DNS_NAME)")
    if view.error is not None:
        return _wait_or_skip(mode, f"the IPVS agents could not be read: {view.error}")
    if not view.routes:
        why = "no agent read IPVS"
        if view.unavailable:
            why += f" (IPVS unavailable on {', '.join(sorted(view.unavailable))})"
        return _wait_or_skip(mode, why)
    ready = sorted(n.hostname for n in nodes if n.state == "ready")
    unread = [h for h in ready if h not in view.routes]
    if unread:
        why = f"no IPVS reading from node(s) {', '.join(unread)}"
        details = [f"IPVS unavailable on {h}" for h in unread if h in view.unavailable]
        details += [f"agent failed: {f}" for f in view.failures]
        return _wait(why + (f" ({'; '.join(details)})" if details else ""))
    balancing = {h: view.routes[h].get(service, {}) for h in ready}
    balancing = {h: entries for h, entries in balancing.items() if entries}
    if not balancing:
        return _wait(f"no IPVS entry for {service} on any node yet")
    mine = set(replacement)
    missing = sorted(h for h, entries in balancing.items() if any(not mine & b for b in entries.values()))
    if missing:
        routed = len(balancing) - len(missing)
        return _wait(
            f"not yet an IPVS backend on {', '.join(missing)} ({routed}/{len(balancing)} nodes route to it)"
        )
    stale = sorted(h for h, entries in balancing.items() if any(set(lost) & b for b in entries.values()))
    if stale:
        gone = ", ".join(sorted(lost))
        return _wait(f"the lost task ({gone}) is still an IPVS backend on {', '.join(stale)}")
    return RoutingVerdict(True, True, f"an IPVS backend on {len(balancing)}/{len(balancing)} nodes")


def _unchecked(why: str) -> RoutingVerdict:
    return RoutingVerdict(True, False, f"IPVS not checked: {why}")


def _wait(why: str) -> RoutingVerdict:
    return RoutingVerdict(False, True, why)


def _wait_or_skip(mode: LoadBalancerCheck, why: str) -> RoutingVerdict:
    """``auto`` checks only when the agents can tell; ``required`` waits until they can."""
    return _unchecked(f"{why}; loadBalancer: auto") if mode is LoadBalancerCheck.AUTO else _wait(why)
