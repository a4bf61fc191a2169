"""A label edit reaches the controller through the service update event, not the next tick.

Its own module: the controller here runs with a 30 s tick and must be the only one governing
the service (the 1 s controller of ``test_labels_lab`` is gone once that module is done).
"""

from __future__ import annotations

import time
from pathlib import Path

from controller_helpers import ControllerProcess, LabServices, log_time, unique
from label_helpers import SELECT, docker, labelled, policy_labels, wait_replicas
from timing import wait_until

from swarm_lab.sessions import LabHandle


def test_a_label_edit_is_picked_up_from_the_swarm_event_not_the_tick(
    lab: LabHandle, services: LabServices, tmp_path: Path
) -> None:
    # A slow tick (30 s) so that only the service update event can explain an early pass.
    slow = ControllerProcess(
        policies=tmp_path,
        docker_host=lab.manager_url,
        prometheus_url=lab.prometheus_url,
        workdir=tmp_path,
        interval=30.0,
        extra=SELECT,
    )
    try:
        name = unique("lbl-event")
        labelled(services, name, policy_labels(max_replicas=6))
        wait_replicas(services, name, 3, deadline=90)  # created -> event -> pass
        passes_before = slow.passes()
        edited_at = time.time()
        docker(lab, "service", "update", "--detach", "--label-add", "autoscaler.maxReplicas=2", name)
        done_at = time.time()
        wait_replicas(services, name, 2, deadline=90)
        loaded = wait_until(
            lambda: slow.events("label_policy_loaded", name, since=edited_at), deadline=20, what="loaded"
        )[0]
        action = slow.wait_action(name, since=edited_at, deadline=20, to=lambda f, t: t == 2, what="to 2")
        print(
            f"\ninterval 30s: label edit -> policy in force {log_time(loaded) - done_at:.2f}s, "
            f"-> scaled {log_time(action) - done_at:.2f}s; passes meanwhile: {slow.passes() - passes_before}"
        )
    finally:
        slow.stop()
