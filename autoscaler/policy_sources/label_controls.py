"""The labels that steer the controller rather than describe a policy: enable, pause, resume.

``autoscaler.enable=true`` opts a service in to a policy from its labels. The pause labels
work on every governed service, whatever its policy came from (a file or labels):

* ``autoscaler.paused=true``: leave the replica count alone;
* ``autoscaler.pausedReplicas=N``: scale to N once, then leave it alone (KEDA's
  paused-replicas); it pauses on its own, without ``autoscaler.paused``;
* ``autoscaler.pausedBy`` / ``autoscaler.pausedAt``: who paused it and when (RFC 3339),
  written by ``swarm-autoscaler pause``; shown, never interpreted.

Removing them resumes. The functions that add and remove them are pure so the command
line and the tests share them; the write itself is a compare-and-swap done elsewhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

PREFIX = "autoscaler."
ENABLE = "autoscaler.enable"
PAUSED = "autoscaler.paused"
PAUSED_REPLICAS = "autoscaler.pausedReplicas"
PAUSED_BY = "autoscaler.pausedBy"
PAUSED_AT = "autoscaler.pausedAt"
PAUSE_KEYS = (PAUSED, PAUSED_REPLICAS, PAUSED_BY, PAUSED_AT)
CONTROL_KEYS = frozenset((ENABLE, *PAUSE_KEYS))
# The HA lease's labels on the controller's own service (``core.lease_rules``), and the
# state the controller keeps on the services it scales (``reconciler.scale_record``).
RESERVED_PREFIXES = ("autoscaler.lease.", "autoscaler.state.")

_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")
_MAX_PAUSED_REPLICAS = 10_000  # the model's maxReplicas bound


def is_true(value: str | None) -> bool:
    return value is not None and value.strip().lower() in _TRUE


@dataclass(frozen=True, slots=True)
class Pause:
    """A service's pause labels, read. ``problems`` are (label, message) pairs.

    A pause label that cannot be read still pauses (``paused`` is True): someone tried to
    pause the service, and scaling it anyway is the harmful guess. Only pausedReplicas is
    then not applied.
    """

    paused: bool = False
    replicas: int | None = None
    by: str | None = None
    at: str | None = None
    problems: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> tuple[int | None, str | None]:
        """What makes one pause differ from the next: pausedReplicas applies once per key."""
        return self.replicas, self.at

    @property
    def at_seconds(self) -> float | None:
        """``at`` as Unix seconds, when it is an RFC 3339 time."""
        if self.at is None:
            return None
        try:
            moment = datetime.fromisoformat(self.at)
        except ValueError:
            return None
        return moment.timestamp() if moment.tzinfo is not None else None

    def describe(self) -> str:
        """``paused by ana at 2026-12-01T16:40:00Z (autoscaler.paused)`` in words, for reasons."""
        who = f" by {self.by}" if self.by else ""
        when = f" at {self.at}" if self.at else ""
        how = f"{PAUSED_REPLICAS}={self.replicas}" if self.replicas is not None else f"{PAUSED}=true"
        return f"paused{who}{when} ({how})"

    def as_json(self) -> dict[str, object]:
        return {"paused": self.paused, "replicas": self.replicas, "by": self.by, "at": self.at}


NOT_PAUSED = Pause()


def read_pause(labels: Mapping[str, str]) -> Pause:
    """The pause state the labels ask for (``NOT_PAUSED`` without any pause label)."""
    if not any(key in labels for key in (PAUSED, PAUSED_REPLICAS)):
        return NOT_PAUSED
    problems: list[tuple[str, str]] = []
    paused = True
    flag = labels.get(PAUSED)
    if flag is not None:
        word = flag.strip().lower()
        if word in _FALSE:
            paused = False
        elif word not in _TRUE:
            problems.append((PAUSED, f"must be true or false, got {flag!r}; held as paused until fixed"))
    replicas: int | None = None
    count = labels.get(PAUSED_REPLICAS)
    if count is not None:
        try:
            replicas = int(count.strip())
        except ValueError:
            replicas = None
        if replicas is None or not 0 <= replicas <= _MAX_PAUSED_REPLICAS:
            problems.append(
                (
                    PAUSED_REPLICAS,
                    f"must be a whole number 0..{_MAX_PAUSED_REPLICAS}, got {count!r}; held as it is",
                )
            )
            replicas = None
        if not paused:
            problems.append(
                (
                    PAUSED,
                    f"is false but {PAUSED_REPLICAS} is set; remove one of them (held as paused meanwhile)",
                )
            )
            paused = True
    return Pause(
        paused, replicas, labels.get(PAUSED_BY) or None, labels.get(PAUSED_AT) or None, tuple(problems)
    )


def paused_labels(
    labels: Mapping[str, str], *, by: str, at: datetime, replicas: int | None
) -> dict[str, str]:
    """``labels`` with the pause labels set (and a pausedReplicas from an earlier pause dropped)."""
    result = {key: value for key, value in labels.items() if key not in PAUSE_KEYS}
    result[PAUSED] = "true"
    result[PAUSED_BY] = by
    result[PAUSED_AT] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
    if replicas is not None:
        result[PAUSED_REPLICAS] = str(replicas)
    return result


def resumed_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """``labels`` without any pause label; every other label kept as it was."""
    return {key: value for key, value in labels.items() if key not in PAUSE_KEYS}
