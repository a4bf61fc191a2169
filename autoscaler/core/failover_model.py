"""The values the failover tracker reads and reports: Swarm's nodes and tasks, failovers, events.

Kept apart from the state machine (``autoscaler.core.failover_tracker``) so that module stays about
transitions; everything here is re-exported there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from autoscaler.core.policy import NodeFailure, OnTimeout


@dataclass(frozen=True, slots=True)
class NodeView:
    """One Swarm node. ``updated_at`` is Swarm's ``UpdatedAt`` (when its state last changed)."""

    id: str
    hostname: str
    state: str  # ready | down | unknown | disconnected
    availability: str  # active | pause | drain
    updated_at: float | None = None

    @property
    def failure(self) -> str | None:
        """Why this node's tasks must run elsewhere, or None when it is fine."""
        if self.state != "ready":
            return self.state
        if self.availability == "drain":
            return "drain"
        return None


@dataclass(frozen=True, slots=True)
class TaskView:
    """One Swarm task: ``status_at`` is ``Status.Timestamp`` (when it reached ``state``).

    ``addresses`` are its IPs on its networks (``NetworksAttachments[].Addresses``, without
    the prefix length): what IPVS lists as its backends.
    """

    id: str
    service_id: str
    node_id: str | None
    slot: int | None
    state: str
    desired_state: str
    created_at: float
    status_at: float
    error: str | None = None
    message: str = ""
    addresses: tuple[str, ...] = ()

    @property
    def running(self) -> bool:
        return self.state == "running" and self.desired_state == "running"

    def why_not_running(self) -> str:
        detail = self.error or self.message or "no reason given"
        return f"task {self.id[:12]} is {self.state}: {detail}"


@dataclass(frozen=True, slots=True)
class ManagedService:
    """A service a policy governs, with that policy's ``nodeFailure`` settings.

    ``load_balanced``: Swarm gave it virtual IPs (VIP endpoint mode on a network, or
    ingress-published ports), so IPVS routes to its tasks.
    """

    id: str
    name: str
    node_failure: NodeFailure = field(default_factory=NodeFailure)
    load_balanced: bool = False


class LostStatus(StrEnum):
    WAITING = "waiting"
    CONFIRMED = "confirmed"  # a replacement is running on another node
    RECOVERED = "recovered"  # the node came back and the task is running again
    UNCONFIRMED = "unconfirmed"  # the node came back, nothing of this slot is running
    DROPPED = "dropped"  # the service was removed or is no longer managed


@dataclass(slots=True)
class LostTask:
    """A task that was on the failed node, and what became of its slot."""

    service_id: str
    service_name: str
    slot: int | None
    task_id: str
    created_at: float
    addresses: tuple[str, ...] = ()  # its network addresses, which must leave the IPVS tables
    status: LostStatus = LostStatus.WAITING
    replacement_id: str | None = None
    replacement_node: str | None = None
    replacement_created_at: float | None = None
    running_at: float | None = None  # Swarm's timestamp of the replacement reaching running
    confirmed_at: float | None = None  # when we first saw it running
    pending_reason: str | None = None
    confirm_reason: str | None = None  # what was checked, e.g. "... and an IPVS backend on 2/2 nodes"
    timed_out: bool = False


@dataclass(slots=True)
class TimeoutRecord:
    """One ``onTimeout`` firing; ``outcome`` is filled in by whoever performs the action."""

    service_id: str
    service_name: str
    action: OnTimeout
    at: float
    waiting: int
    reasons: tuple[str, ...]
    outcome: str | None = None


@dataclass(slots=True)
class Failover:
    number: int
    node_id: str
    hostname: str
    kind: str  # down | unknown | disconnected | drain | removed
    failed_at: float  # Swarm's time of the node change, else when we first saw it
    detected_at: float
    found_at_start: bool  # opened on the first snapshot (controller (re)start), not a transition
    back_at: float | None = None  # when the node was seen ready and active again
    services: set[str] = field(default_factory=set)  # service ids whose lost tasks are recorded
    lost: list[LostTask] = field(default_factory=list)
    timeouts: list[TimeoutRecord] = field(default_factory=list)
    settled_at: float | None = None  # every lost task resolved
    closed_at: float | None = None
    close_reason: str | None = None

    @property
    def waiting(self) -> list[LostTask]:
        return [t for t in self.lost if t.status is LostStatus.WAITING]


@dataclass(frozen=True, slots=True)
class FailoverOpened:
    failover: Failover


@dataclass(frozen=True, slots=True)
class ReplacementConfirmed:
    failover: Failover
    task: LostTask


@dataclass(frozen=True, slots=True)
class ConfirmationTimedOut:
    """Perform ``record.action`` for ``service`` and write what happened into ``record.outcome``."""

    failover: Failover
    service: ManagedService
    record: TimeoutRecord


@dataclass(frozen=True, slots=True)
class FailoverSettled:
    """Every lost task is resolved (or the failover closed first): time for the log line."""

    failover: Failover


@dataclass(frozen=True, slots=True)
class FailoverClosed:
    failover: Failover


FailoverEvent = (
    FailoverOpened | ReplacementConfirmed | ConfirmationTimedOut | FailoverSettled | FailoverClosed
)
