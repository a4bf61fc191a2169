"""The leader lease's decisions, pure: who may take, renew or must wait, given the clock.

The lease lives on Swarm as labels of the controller's own service spec and every write
is a compare-and-swap on the spec's ``Version.Index`` (see ``autoscaler.reconciler.lease``).
These rules decide what to write and when; they never touch Docker and never read a clock.

Timing follows Kubernetes client-go's leader election, not the wall-clock ``expires``
label: a candidate counts a lease as expired once it has watched the *same* record stay
unchanged for a whole lease period on its own monotonic clock. Managers' wall clocks may
disagree; durations measured on one clock cannot. ``expires`` is still written, for people
and dashboards reading ``docker service inspect``.

Why no two leaders act at once: a holder that starts a successful write at ``t`` acts only
until ``t + lease - margin`` (its own clock). Any other candidate sees that write at some
``t' >= t`` and may take over only at ``t' + lease`` or later, by a CAS write that fails if
the holder renewed in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

HOLDER_LABEL = "autoscaler.lease.holder"
EXPIRES_LABEL = "autoscaler.lease.expires"
# Written as the holder on a clean shutdown: a standby may take over at once, with no wait.
RELEASED = "released"


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The lease labels as read from the service spec; raw strings, never trusted for timing.

    ``holder`` is None when the labels are absent: never taken, or wiped by a
    ``docker stack deploy`` that rewrote the service's labels. Absent is NOT free: whoever
    held it may still be acting, so candidates wait a lease period, as for any record.
    """

    holder: str | None
    expires: str | None

    @staticmethod
    def from_labels(labels: dict[str, str]) -> LeaseRecord:
        return LeaseRecord(holder=labels.get(HOLDER_LABEL), expires=labels.get(EXPIRES_LABEL))

    @property
    def released(self) -> bool:
        return self.holder == RELEASED


def holder_labels(identity: str, wall_now: float, lease_seconds: float) -> dict[str, str]:
    """The labels a take or renewal writes (``expires`` is informational Unix time)."""
    return {HOLDER_LABEL: identity, EXPIRES_LABEL: f"{wall_now + lease_seconds:.3f}"}


def released_labels() -> dict[str, str]:
    return {HOLDER_LABEL: RELEASED, EXPIRES_LABEL: "0"}


@dataclass(frozen=True, slots=True)
class SpecLabels:
    """The lease's service spec labels at one ``Version.Index``."""

    version: int
    labels: dict[str, str]


@dataclass(frozen=True, slots=True)
class LeaseTiming:
    """``lease_seconds``: how long a write keeps its writer leader. ``renew_every``: lease/3,
    so two renewals can fail before the lease runs out. ``margin``: the holder stops acting
    this long before its lease ends, to cover a scale call in flight and clock-rate drift."""

    lease_seconds: float

    def __post_init__(self) -> None:
        if not 3.0 <= self.lease_seconds <= 3600.0:
            raise ValueError(
                f"lease seconds {self.lease_seconds} out of range: use 3..3600 "
                "(AUTOSCALER_LEASE__SECONDS); 15 is a good default"
            )

    @property
    def renew_every(self) -> float:
        return self.lease_seconds / 3.0

    @property
    def margin(self) -> float:
        return min(self.lease_seconds / 6.0, 5.0)

    @property
    def retry_every(self) -> float:
        """Pause after a failed write or read: short, so a blip does not cost the lease."""
        return max(0.2, self.lease_seconds / 15.0)


@dataclass(frozen=True, slots=True)
class Observation:
    """A record as a candidate saw it at spec ``version``, and when (monotonic) it first saw
    that version."""

    record: LeaseRecord
    version: int
    since: float


def observe(previous: Observation | None, record: LeaseRecord, version: int, now: float) -> Observation:
    """Restart the expiry clock whenever the spec version moves (a renewal, a take, a wipe).

    Keyed by version, not by the labels' text: a take followed by a wipe restores the very
    labels a candidate saw before (absent), and that candidate must not count through it.
    Any other change to the service also restarts the clock, which only delays a take-over.
    """
    if previous is not None and previous.version == version:
        return previous
    return Observation(record=record, version=version, since=now)


class Step(StrEnum):
    TAKE = "take"  # write our labels (CAS); on success we lead
    RENEW = "renew"  # we lead: write our labels again (CAS)
    WAIT = "wait"  # someone else may be acting: look again later
    STEP_DOWN = "step_down"  # the record names another holder while we thought we led


@dataclass(frozen=True, slots=True)
class Plan:
    step: Step
    reason: str
    wait: float = 0.0  # seconds until looking again, for WAIT


def plan(
    identity: str,
    observation: Observation,
    now: float,
    timing: LeaseTiming,
    *,
    leading: bool,
) -> Plan:
    """What to do next, given the record last read and whether we hold a valid lease now."""
    record = observation.record
    if leading:
        if record.holder in (identity, None):
            # None: labels wiped by a redeploy. We are still within our lease and every
            # candidate restarted its wait on seeing the wipe, so writing them back is safe.
            return Plan(Step.RENEW, "holding the lease")
        return Plan(Step.STEP_DOWN, f"the lease names {record.holder!r}, not us: stepping down")
    # Our own lapsed record gets no shortcut: a rollback of the controller service
    # (``docker service rollback``, failure_action: rollback) can restore labels naming us
    # while another replica holds the lease and has not yet read the change.
    if record.released:
        return Plan(Step.TAKE, "the lease was released")
    unchanged_for = now - observation.since
    if unchanged_for >= timing.lease_seconds:
        who = "absent labels" if record.holder is None else f"holder {record.holder!r}"
        return Plan(Step.TAKE, f"{who} unchanged for {unchanged_for:.1f}s >= {timing.lease_seconds:g}s")
    remaining = timing.lease_seconds - unchanged_for
    return Plan(
        Step.WAIT,
        f"held by {record.holder or '(absent labels)'}; expires in {remaining:.1f}s unless renewed",
        wait=min(remaining, timing.renew_every),
    )


def valid_until(write_started: float, timing: LeaseTiming) -> float:
    """Until when (monotonic) a write that started at ``write_started`` lets us act."""
    return write_started + timing.lease_seconds - timing.margin
