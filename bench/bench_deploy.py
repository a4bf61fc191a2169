"""The chart on the lab: image size, stack start-up and leader take-over, against baselines
measured in the same run.

  - image:    the autoscaler image's size beside its base image's (what the venv adds);
  - start-up: `charts/deploy.sh` until every service runs healthy and a lease holder is
              written, beside a bare 2-replica busybox service on its own overlay reaching
              running (what Swarm itself needs to schedule and network tasks);
  - take-over: SIGKILL of the leader's container until another replica's name is in the
              lease label, beside the lease length (the design says "about one lease").

    python bench/bench_deploy.py [--kills 3] [--lease 6]     # needs `swarm-autoscaler lab up`
The image must exist on the lab's nodes (tests/integration/test_deploy_stack.py builds and
loads it) or is built here with charts/build-image.sh.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import docker

from autoscaler.core import lease_rules as rules
from swarm_lab import lab as lab_api

REPO = Path(__file__).resolve().parents[1]
CHARTS = REPO / "charts"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 300) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def source_tag() -> str:
    digest = hashlib.sha256()
    files = [REPO / "Dockerfile", REPO / "pyproject.toml", *sorted((CHARTS / "image").rglob("*"))]
    files += sorted(p for package in ("autoscaler", "ipvs_agent") for p in (REPO / package).rglob("*.py"))
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(REPO)).encode() + path.read_bytes())
    return f"swarm-autoscaler:lab-{digest.hexdigest()[:12]}"


def running(client: docker.DockerClient, name: str) -> int:
    tasks = client.services.get(name).tasks(filters={"desired-state": "running"})
    return sum(t["Status"]["State"] == "running" for t in tasks)


def holder(client: docker.DockerClient, service: str) -> str | None:
    labels = client.services.get(service).attrs["Spec"].get("Labels") or {}
    return rules.LeaseRecord.from_labels(labels).holder


def baseline_service_start(client: docker.DockerClient, busybox: str) -> float:
    name = f"benchbase{uuid.uuid4().hex[:4]}"
    network = client.networks.create(name, driver="overlay", attachable=True)
    started = time.monotonic()
    client.services.create(
        busybox, ["sleep", "100000"], name=name, networks=[name], mode={"Replicated": {"Replicas": 2}}
    )
    wait_for("the baseline service", lambda: running(client, name) == 2)
    elapsed = time.monotonic() - started
    client.services.get(name).remove()
    wait_for("the baseline tasks gone", lambda: not client.containers.list(filters={"name": name}))
    network.remove()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=3, help="leader kills to time (default 3)")
    parser.add_argument("--lease", type=int, default=6, help="LEASE_SECONDS for the run (default 6)")
    args = parser.parse_args()

    info = lab_api.info()
    client = docker.DockerClient(base_url=info.manager_url)
    tag = source_tag()
    env = {**os.environ, "DOCKER_HOST": info.manager_url}
    try:
        image = client.images.get(tag)
    except docker.errors.ImageNotFound:
        loads = [a for url in info.node_urls[1:] for a in ("--load-to", url)]
        subprocess.run(
            [
                str(CHARTS / "build-image.sh"),
                "--tag",
                tag,
                "--base",
                info.images["python"],
                "--offline",
                *loads,
            ],
            env=env,
            check=True,
        )
        image = client.images.get(tag)
    base = client.images.get(info.images["python"])
    size, base_size = int(image.attrs["Size"]), int(base.attrs["Size"])

    baseline = baseline_service_start(client, info.images["busybox"])

    links = Path("/run/swl-deploy") / f"bench{uuid.uuid4().hex[:4]}"
    for url in info.node_urls:
        name = docker.DockerClient(base_url=url).info()["Name"]
        socket = Path(url.removeprefix("unix://"))
        (links / name).mkdir(parents=True)
        (links / name / "docker.sock").symlink_to(socket)
        (links / name / "netns").symlink_to(socket.parent / "netns")
    stack = f"asbench{uuid.uuid4().hex[:4]}"
    env.update(
        STACK_NAME=stack,
        AUTOSCALER_IMAGE=tag,
        RESOLVE_IMAGE="never",
        DOCKER_SOCKET=f"{links}/{{{{.Node.Hostname}}}}/docker.sock",
        DOCKER_NETNS_DIR=f"{links}/{{{{.Node.Hostname}}}}/netns",
        EXAMPLE_PYTHON_IMAGE=info.images["python"],
        PROMETHEUS_IMAGE=info.images["prometheus"],
        PROMETHEUS_PORT="19091",
        CONTROLLER_MAX_PER_NODE="2",
        LEASE_SECONDS=str(args.lease),
    )
    controller = f"{stack}_autoscaler"
    takeovers: list[float] = []
    try:
        started = time.monotonic()
        subprocess.run([str(CHARTS / "deploy.sh")], env=env, check=True, capture_output=True)
        wait_for(
            "the stack up with a leader",
            lambda: (
                running(client, controller) == 2
                and running(client, f"{stack}_prometheus") == 1
                and running(client, f"{stack}_example-web") == 2
                and holder(client, controller)
            ),
        )
        startup = time.monotonic() - started
        for _ in range(args.kills):
            leader = holder(client, controller)
            assert leader is not None
            wait_for("two controllers running", lambda: running(client, controller) == 2)
            client.containers.get(leader.split("-")[0]).kill()
            killed = time.monotonic()
            wait_for("a new leader", lambda old=leader: holder(client, controller) not in (None, old))
            takeovers.append(time.monotonic() - killed)
    finally:
        subprocess.run(["docker", "stack", "rm", stack], env=env, capture_output=True, check=False)
        wait_for(
            "the stack removed",
            lambda: not client.services.list(filters={"label": f"com.docker.stack.namespace={stack}"}),
        )
        subprocess.run(["rm", "-rf", str(links)], check=False)

    added = (size - base_size) / 1e6
    print(f"image      {size / 1e6:7.1f} MB  base {base_size / 1e6:.1f} MB, added {added:.1f} MB")
    print(
        f"start-up   {startup:7.1f} s   bare 2-task service {baseline:.1f} s, "
        f"ratio {startup / baseline:.1f}x (includes waiting out one {args.lease} s lease)"
    )
    median = statistics.median(takeovers)
    each = ", ".join(f"{t:.1f}" for t in takeovers)
    print(
        f"take-over  {median:7.1f} s   median of {each}; {median / args.lease:.2f}x the {args.lease} s lease"
    )


if __name__ == "__main__":
    main()
