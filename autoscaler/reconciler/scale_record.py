"""Recent scale events kept on the service itself, so rate limits survive a restart.

The controller keeps its scale events in memory; a crash loop used to start each life
with none, and ``scaleUp.policies: [{type: Replicas, value: 1, periodSeconds: 10}]`` then
allowed one step per restart instead of one per 10 s. So every scale call also writes the
events its rate-limit periods still count into a service label, in the same
``POST /services/{id}/update?version=N`` as the new replica count: Swarm's compare-and-swap
makes the two one change, and no other store is needed. A new engine (at start, after a
failover to a standby, for a service seen for the first time) reads them back.

Without the label (a service scaled before this version, a ``docker stack deploy`` that
rewrote the labels), the spec's own last change stands in: ``PreviousSpec`` replicas to
``Spec`` replicas at ``UpdatedAt``, when that is recent enough to count.

The label is outside text when read (anyone with access to the service can write it), so
it is parsed strictly and bounded: a label that cannot be read is ignored with a warning.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass

from autoscaler.core.engine import Engine
from autoscaler.core.observation import ServiceState
from autoscaler.core.scaling_behavior import ScaleStep

log = logging.getLogger("autoscaler.reconciler")

LABEL = "autoscaler.state.scale-events"
# Rate-limit periods are at most 1800 s (the model's bound); 60 steps per direction within
# that is a step every 30 s for the longest period. Older steps are the ones dropped.
MAX_STEPS = 60
MAX_LABEL_CHARS = 4096
MAX_STEP_REPLICAS = 1_000_000


@dataclass(frozen=True)
class ScaleRecord:
    up: list[ScaleStep]
    down: list[ScaleStep]


def labels_for(engine: Engine, service: ServiceState, desired: int, now: float) -> dict[str, str]:
    """The label to write with the scale of ``service`` to ``desired`` replicas at ``now``."""
    assert service.replicas is not None  # only replicated services are scaled
    return with_step(engine.scale_history(now), now, service.replicas, desired)


def restore(engine: Engine, service: ServiceState, now: float) -> None:
    """A new engine goes on counting what a previous controller (or a person) did recently."""
    record, warning = recorded_history(service)
    if warning is not None:
        log.warning("%s: %s", service.name, warning, extra={"event": "scale_record", "service": service.name})
    if record.up or record.down:
        engine.restore_scale_history(record.up, record.down, now)


def encode(up: list[ScaleStep], down: list[ScaleStep]) -> str:
    """The label's value: ``{"up": [[t, n], ...], "down": [...]}``, times to 0.1 s."""

    def steps(events: list[ScaleStep]) -> list[list[float | int]]:
        return [[round(at, 1), n] for at, n in events[-MAX_STEPS:]]

    return json.dumps({"up": steps(up), "down": steps(down)}, separators=(",", ":"))


def with_step(
    history: tuple[list[ScaleStep], list[ScaleStep]], at: float, from_replicas: int, to_replicas: int
) -> dict[str, str]:
    """The labels to write with a scale from ``from_replicas`` to ``to_replicas`` at ``at``."""
    up, down = list(history[0]), list(history[1])
    if to_replicas > from_replicas:
        up.append((at, to_replicas - from_replicas))
    elif to_replicas < from_replicas:
        down.append((at, from_replicas - to_replicas))
    return {LABEL: encode(up, down)}


def decode(text: str) -> ScaleRecord:
    """The steps of a label value; ``ValueError`` saying what is wrong (never quoting it)."""
    if len(text) > MAX_LABEL_CHARS:
        raise ValueError(f"longer than {MAX_LABEL_CHARS} characters")
    data = json.loads(text)
    if not isinstance(data, dict) or set(data) - {"up", "down"}:
        raise ValueError('not {"up": [...], "down": [...]}')
    return ScaleRecord(_steps(data.get("up", [])), _steps(data.get("down", [])))


def _steps(value: object) -> list[ScaleStep]:
    if not isinstance(value, list) or len(value) > MAX_STEPS:
        raise ValueError(f"a direction is not a list of at most {MAX_STEPS} steps")
    steps: list[ScaleStep] = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2):
            raise ValueError("a step is not [time, replicas]")
        at, replicas = item
        if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at) or at < 0:
            raise ValueError("a step's time is not a finite number of seconds")
        if (
            isinstance(replicas, bool)
            or not isinstance(replicas, int)
            or not 0 < replicas <= MAX_STEP_REPLICAS
        ):
            raise ValueError(f"a step's replicas are not a whole number in 1..{MAX_STEP_REPLICAS}")
        steps.append((float(at), replicas))
    return steps


def recorded_history(service: ServiceState) -> tuple[ScaleRecord, str | None]:
    """The steps to restore for ``service``, and a warning when its label was unreadable."""
    text = service.labels.get(LABEL)
    warning = None
    if text is not None:
        try:
            return decode(text), None
        except ValueError as exc:  # json's own errors are ValueErrors too
            warning = f"label {LABEL} is unreadable ({str(exc)[:100]}); using the spec's last change"
    return _from_previous_spec(service), warning


def _from_previous_spec(service: ServiceState) -> ScaleRecord:
    before, now = service.previous_replicas, service.replicas
    if before is None or now is None or before == now:
        return ScaleRecord([], [])
    step = [(service.updated_at, abs(now - before))]
    return ScaleRecord(step, []) if now > before else ScaleRecord([], step)
