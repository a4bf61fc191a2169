"""The chart on the lab, end to end: build the image, `docker stack deploy` it, load the
example app and watch the deployed autoscaler scale it; kill the leader and watch a standby
take over and keep scaling; check from Docker's own event log that no scale was doubled.

The chart's defaults are VIP endpoints and ingress-published ports (the routing mesh, IPVS).
The netns lab's kernel has no IPVS, so here the stack is deployed with the override file
charts/values-netns-lab.env (dnsrr, host mode), the netns lab's exception. A lab with IPVS
(the VM lab) overrides the ``chart_lab`` fixture with no override file: the same tests then
check the mesh (every service has a VIP, Prometheus answers through the ingress on every node).

Figures (image size, stack start-up, leader take-over) are printed; run with ``-s``.
bench/bench_deploy.py prints the same figures over several runs.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import pytest
import requests
from timing import wait_until

from autoscaler.core import lease_rules as rules

REPO = Path(__file__).resolve().parents[2]
CHARTS = REPO / "charts"
LEASE_SECONDS = 6
# Building the image under a loaded lab takes minutes; the scenario itself a few more.
pytestmark = pytest.mark.timeout(1800)
T = TypeVar("T")


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 900) -> str:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


def source_hash() -> str:
    """Of what goes into the image, so an unchanged tree reuses the image on the nodes."""
    digest = hashlib.sha256()
    files = [REPO / "Dockerfile", REPO / "pyproject.toml", *sorted((REPO / "charts" / "image").rglob("*"))]
    files += sorted(p for package in ("autoscaler", "ipvs_agent") for p in (REPO / package).rglob("*.py"))
    for path in files:
        if path.is_file():
            digest.update(str(path.relative_to(REPO)).encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def unless_busy(check: Callable[[], T]) -> Callable[[], T | None]:
    """``check`` for wait_until, taking a manager too busy to answer (a 5xx such as a raft
    "context deadline exceeded", or a timeout: seen on the VM lab's TCG manager under load)
    as "not yet" instead of a failure."""

    def polled() -> T | None:
        try:
            return check()
        except docker.errors.APIError as exc:
            if exc.is_server_error():
                return None
            raise
        except requests.exceptions.RequestException:
            return None

    return polled


@dataclass
class Image:
    tag: str
    size_bytes: int
    build_seconds: float | None  # None: reused from an earlier run


def image_size_on(url: str, tag: str) -> int | None:
    """The image's size on one node, None if absent; waits out a node another test took down."""

    def ask() -> tuple[int | None] | None:
        try:
            client = docker.DockerClient(base_url=url, timeout=10)
        except docker.errors.DockerException:
            return None  # node down (the lab is shared with failover tests): ask again
        try:
            return (int(client.images.get(tag).attrs["Size"]),)
        except docker.errors.ImageNotFound:
            return (None,)
        except docker.errors.DockerException:
            return None
        finally:
            client.close()

    return wait_until(ask, deadline=180, what=f"the Docker API at {url}", every=0.25)[0]


@dataclass
class ChartLab:
    """Where the chart is deployed: a manager, every node's Docker API (the first is the
    manager), the lab's images (``python``, ``prometheus``), the override values files for
    ``deploy.sh --values``, the environment that fits the lab's nodes, extra compose files
    merged over stack.yml (``docker stack deploy -c``) and ``patience``, what the waits'
    deadlines are multiplied by (a TCG guest starts containers several times slower)."""

    manager_url: str
    node_urls: list[str]
    images: dict[str, str]
    values_files: list[Path]
    env: dict[str, str]
    compose_files: list[Path] = field(default_factory=list)
    patience: float = 1.0


def chart_values(values_files: list[Path], env: dict[str, str]) -> dict[str, str]:
    """The values deploy.sh uses: values.env, then each override file, then the environment."""
    merged: dict[str, str] = {}
    for path in [CHARTS / "values.env", *values_files]:
        for line in path.read_text().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.partition("=")
                merged[name] = value
    return merged | {k: v for k, v in env.items() if k in merged}


@pytest.fixture(scope="module")
def chart_lab(lab: Any, node_dirs: str) -> ChartLab:
    """The netns lab: no IPVS, so its exception; its dockerds share this host's filesystem."""
    return ChartLab(
        manager_url=lab.manager_url,
        node_urls=list(lab.node_urls),
        images=dict(lab.images),
        values_files=[CHARTS / "values-netns-lab.env"],
        env={"DOCKER_SOCKET": f"{node_dirs}/docker.sock", "DOCKER_NETNS_DIR": f"{node_dirs}/netns"},
    )


def build_image(manager_url: str, base: str) -> Image:
    """The image of this tree on ``manager_url`` (built from ``base`` there unless it has it)."""
    tag = f"swarm-autoscaler:lab-{source_hash()}"
    size = image_size_on(manager_url, tag)
    if size is not None:
        return Image(tag, size, None)
    started = time.monotonic()
    env = {**os.environ, "DOCKER_HOST": manager_url}
    out = run([str(CHARTS / "build-image.sh"), "--tag", tag, "--base", base, "--offline"], env)
    return Image(tag, int(out.split()[-1]), time.monotonic() - started)


@pytest.fixture(scope="module")
def image(chart_lab: ChartLab) -> Image:
    lab = chart_lab
    built = build_image(lab.manager_url, lab.images["python"])
    tag = built.tag
    for url in lab.node_urls[1:]:
        for _attempt in range(5):  # a node may be taken down by another test mid-load
            if image_size_on(url, tag) is not None:
                break
            save = subprocess.Popen(["docker", "-H", lab.manager_url, "save", tag], stdout=subprocess.PIPE)
            subprocess.run(
                ["docker", "-H", url, "load", "-q"], stdin=save.stdout, capture_output=True, check=False
            )
            save.wait()
        assert image_size_on(url, tag) is not None, f"could not load {tag} into {url}"
    return built


def docker_info_name(url: str) -> str | None:
    try:
        client = docker.DockerClient(base_url=url, timeout=10)
    except docker.errors.DockerException:
        return None
    try:
        return str(client.info()["Name"])
    except docker.errors.DockerException:
        return None
    finally:
        client.close()


@pytest.fixture(scope="module")
def node_dirs(lab: Any) -> Iterator[str]:
    """Per-node socket and netns paths under one templated path.

    Lab nodes share the host's filesystem but each dockerd has its own socket and netns
    directory, so the stack mounts /run/swl-deploy/{{.Node.Hostname}}/..., linked here.
    """
    base = Path("/run/swl-deploy") / uuid.uuid4().hex[:6]
    for url in lab.node_urls:
        hostname = wait_until(
            functools.partial(docker_info_name, url),
            deadline=180,
            what=f"the Docker API at {url}",
            every=0.25,
        )
        socket = Path(url.removeprefix("unix://"))
        (base / hostname).mkdir(parents=True)
        (base / hostname / "docker.sock").symlink_to(socket)
        (base / hostname / "netns").symlink_to(socket.parent / "netns")
    yield str(base / "{{.Node.Hostname}}")
    shutil.rmtree(base)


@dataclass
class Stack:
    name: str
    client: docker.DockerClient
    env: dict[str, str]
    deployed_at: float  # time.time()
    startup_seconds: float

    def service(self, short: str) -> Any:
        return self.client.services.get(f"{self.name}_{short}")

    def replicas(self, short: str) -> int:
        return int(self.service(short).attrs["Spec"]["Mode"]["Replicated"]["Replicas"])

    def running(self, short: str) -> int:
        tasks = self.service(short).tasks(filters={"desired-state": "running"})
        return sum(t["Status"]["State"] == "running" for t in tasks)

    def holder(self) -> str | None:
        return rules.LeaseRecord.from_labels(self.service("autoscaler").attrs["Spec"]["Labels"]).holder

    def prometheus_url(self) -> str:
        """The chart's Prometheus, published in host mode on the node running its task."""
        task = self.service("prometheus").tasks(filters={"desired-state": "running"})[0]
        address = self.client.nodes.get(task["NodeID"]).attrs["Status"]["Addr"]
        return f"http://{address}:{self.env['PROMETHEUS_PORT']}"

    def query(self, promql: str) -> float | None:
        """One number from the chart's Prometheus; None when the query has no result yet."""
        url = f"{self.prometheus_url()}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                result = json.load(response)["data"]["result"]
        except OSError:
            return None  # Prometheus still starting
        return float(result[0]["value"][1]) if result else None

    def set_load(self, rps: int) -> None:
        self.service("example-load").update(
            env=[f"RATE={rps}", "TARGET=example-web", "PORT=8000"], mode={"Replicated": {"Replicas": 1}}
        )

    def controller_logs(self) -> list[dict[str, Any]]:
        """Every JSON log line of every controller task, the killed ones included.

        The controller logs to stderr, which `docker service logs` passes on as stderr.
        """
        cmd = ["docker", "service", "logs", "--raw", f"{self.name}_autoscaler"]
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines = (proc.stdout + proc.stderr).splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def scale_events(self, until: float) -> list[dict[str, Any]]:
        """Docker's own record of every update to the example app's spec."""
        events = self.client.events(
            since=int(self.deployed_at),
            until=int(until) + 1,
            decode=True,
            filters={"type": "service", "service": f"{self.name}_example-web"},
        )
        return [e for e in events if e.get("Action") == "update"]


@pytest.fixture(scope="module")
def stack(chart_lab: ChartLab, image: Image) -> Iterator[Stack]:
    lab = chart_lab
    name = f"asdeploy{uuid.uuid4().hex[:4]}"
    env = {
        **os.environ,
        "DOCKER_HOST": lab.manager_url,
        "STACK_NAME": name,
        "AUTOSCALER_IMAGE": image.tag,
        "RESOLVE_IMAGE": "never",
        "EXAMPLE_PYTHON_IMAGE": lab.images["python"],
        "PROMETHEUS_IMAGE": lab.images["prometheus"],
        "PROMETHEUS_PORT": "19090",  # 9090 is the lab's own Prometheus
        "CONTROLLER_MAX_PER_NODE": "2",  # the lab has one manager
        "LEASE_SECONDS": str(LEASE_SECONDS),
        "LOOP_INTERVAL": "2",
        # Only this stack's example app: other test sessions' labelled services are not ours.
        "LABEL_SELECTOR": f"com.docker.stack.namespace={name}",
        **lab.env,  # last: a lab may keep a value the take-over test shortens (the VM lab's lease)
    }
    client = docker.DockerClient(base_url=lab.manager_url)
    deployed_at = time.time()
    started = time.monotonic()
    try:
        values = [a for p in lab.values_files for a in ("--values", str(p))]
        extra = [a for p in lab.compose_files for a in ("-c", str(p))]
        run([str(CHARTS / "deploy.sh"), *values, *extra], env)
        s = Stack(name, client, env, deployed_at, 0.0)
        wait_until(
            unless_busy(
                lambda: (
                    s.running("autoscaler") == 2
                    and s.running("prometheus") == 1
                    and s.running("example-web") == 2
                    and s.holder()
                )
            ),
            deadline=300 * lab.patience,
            what="every service of the stack running (controllers healthy) and a lease holder",
            every=0.25 * lab.patience,  # a TCG manager is slowed by polling too
        )
        s.startup_seconds = time.monotonic() - started
        yield s
    finally:
        subprocess.run(["docker", "stack", "rm", name], env=env, capture_output=True, check=False)
        wait_until(
            unless_busy(
                lambda: not client.services.list(filters={"label": f"com.docker.stack.namespace={name}"})
            ),
            deadline=120,
            what="the stack's services removed",
            every=0.25,
        )
        client.close()


def prometheus_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=5) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def test_stack_runs_with_the_endpoint_and_publish_modes_of_its_values(
    chart_lab: ChartLab, stack: Stack
) -> None:
    values = chart_values(chart_lab.values_files, stack.env)
    endpoint_mode, publish_mode = values["ENDPOINT_MODE"], values["PUBLISH_MODE"]
    print(f"\nstack deployed with endpoint_mode {endpoint_mode}, published ports in {publish_mode} mode")
    services = stack.client.services.list(filters={"label": f"com.docker.stack.namespace={stack.name}"})
    assert len(services) == 5
    for service in services:
        attrs = service.attrs
        assert attrs["Spec"]["EndpointSpec"]["Mode"] == endpoint_mode, attrs["Spec"]["Name"]
        # Swarm gives a VIP on each network in vip mode (what IPVS balances), none in dnsrr.
        assert bool(attrs["Endpoint"].get("VirtualIPs")) == (endpoint_mode == "vip"), attrs["Spec"]["Name"]
    ports = stack.service("prometheus").attrs["Endpoint"]["Ports"]
    assert [(p["PublishedPort"], p["PublishMode"]) for p in ports] == [
        (int(values["PROMETHEUS_PORT"]), publish_mode)
    ]
    # Host mode answers on the node running the task; ingress (the routing mesh) on every node.
    wait_until(
        unless_busy(lambda: prometheus_ready(stack.prometheus_url())),
        deadline=120 * chart_lab.patience,
        what="Prometheus ready on its node",
    )
    if publish_mode == "ingress":
        for node in stack.client.nodes.list():
            url = f"http://{node.attrs['Status']['Addr']}:{values['PROMETHEUS_PORT']}"
            wait_until(
                lambda u=url: prometheus_ready(u),
                deadline=60 * chart_lab.patience,
                what=f"Prometheus through the ingress at {url}",
            )


def scales_up_under_load(stack: Stack, patience: float = 1.0) -> str:
    """The deployed stack at work: Prometheus scrapes every part, one leader, and the leader
    scales the example app up under load. Returns the leader (``patience``: see ChartLab)."""
    first_leader = stack.holder()
    assert first_leader is not None and first_leader != rules.RELEASED
    # The chart's Prometheus finds everything by Swarm DNS and sees exactly one leader.
    wait_until(
        lambda: stack.query('count(up{job="autoscaler"} == 1)') == 2,
        deadline=120 * patience,
        what="Prometheus scraping both controllers",
        every=0.25 * patience,
    )
    wait_until(
        lambda: stack.query('count(up{job="example-web"} == 1)'),
        deadline=60 * patience,
        what="Prometheus scraping the example app",
        every=0.25 * patience,
    )
    wait_until(
        lambda: stack.query('count(up{job="ipvs-agent"} == 1)'),
        deadline=60 * patience,
        what="Prometheus scraping the IPVS agents",
        every=0.25 * patience,
    )
    assert (
        wait_until(
            lambda: stack.query("sum(autoscaler_lease_leader)"),
            deadline=60 * patience,
            what="the leader gauge",
            every=0.25 * patience,
        )
        == 1
    )

    stack.set_load(120)  # 120 req/s against 20 per replica wants 6
    wait_until(
        unless_busy(lambda: stack.replicas("example-web") > 2),
        deadline=180 * patience,
        what="the autoscaler to scale the example app up",
        every=0.25 * patience,
    )
    return first_leader


def test_deployed_autoscaler_scales_and_survives_losing_its_leader(image: Image, stack: Stack) -> None:
    size = f"{image.size_bytes / 1e6:.0f} MB"
    built = "reused" if image.build_seconds is None else f"built in {image.build_seconds:.0f}s"
    print(f"\nimage {image.tag}: {size} ({built}); stack up with a leader in {stack.startup_seconds:.1f}s")
    first_leader = scales_up_under_load(stack)

    leader_container = first_leader.split("-")[0]  # the holder names its container's hostname (short ID)
    killed = stack.client.containers.get(leader_container)
    killed.kill()
    killed_at, killed_wall = time.monotonic(), time.time()
    second_leader = wait_until(
        unless_busy(lambda: (h := stack.holder()) not in (None, first_leader) and h),
        deadline=LEASE_SECONDS * 5,
        what="a standby to take the lease",
        every=0.25,
    )
    takeover = time.monotonic() - killed_at
    print(
        f"leader {first_leader} killed; {second_leader} took over after {takeover:.1f}s "
        f"(lease {LEASE_SECONDS}s)"
    )

    # The killed leader's series goes stale at its first failed scrape: then exactly one again.
    wait_until(
        lambda: stack.query("sum(autoscaler_lease_leader)") == 1,
        deadline=60,
        what="one leader in Prometheus",
        every=0.25,
    )

    # Keeps scaling: the new leader moves the app beyond where it stood at the take-over.
    # (The lab's loaded CPUs serve far less than 240 req/s, so maxReplicas is not a goal.)
    at_takeover = stack.replicas("example-web")
    stack.set_load(240)
    wait_until(
        unless_busy(lambda: stack.replicas("example-web") != at_takeover),
        deadline=240,
        what="the new leader to scale",
        every=0.25,
    )
    finished = time.time()

    updates = stack.scale_events(finished)

    def scale_actions(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [
            e
            for e in logs
            if e.get("event") == "action"
            and e.get("action") == "scaled"
            and e.get("service") == f"{stack.name}_example-web"
        ]

    # A controller logs "scaled" after Docker answered, and Docker's log collection lags: the
    # last action can reach the logs after its update event. Let the logs catch up (bounded);
    # more updates than logged actions after that is a second leader acting.
    def caught_up() -> list[dict[str, Any]] | None:
        logs = stack.controller_logs()
        return logs if len(scale_actions(logs)) >= len(updates) else None

    try:
        logs = wait_until(caught_up, deadline=30, what="the logs to catch up", every=0.5)
    except AssertionError:
        logs = stack.controller_logs()  # compared as they are: the assertion below names the gap
    scaled = scale_actions(logs)
    changes = [
        (e["Actor"]["Attributes"].get("replicas.old"), e["Actor"]["Attributes"].get("replicas.new"))
        for e in updates
    ]
    print(
        f"scale actions logged: {[(e['from'], e['to']) for e in scaled]}; "
        f"spec updates seen by Docker: {changes}"
    )
    # Exactly one logged scale action per spec update Docker saw: an update no controller
    # logged would be a second writer. (Actions logged after `finished` have no update in
    # the window and are left out of the comparison.)
    logged = Counter((str(e["from"]), str(e["to"])) for e in scaled)
    seen = Counter((str(old), str(new)) for old, new in changes)
    assert not seen - logged, f"spec updates no controller logged: {seen - logged} (logged {logged})"
    for event in logs:
        if event.get("logger") == "autoscaler.reconciler.lease":
            print(f"  {event['time']} {event['message']}")
    after_kill = [e for e in scaled if datetime.fromisoformat(e["time"]).timestamp() > killed_wall]
    assert after_kill, "no replica scaled after the leader was killed"
    took = [e for e in logs if "took the lease" in str(e.get("message", ""))]
    assert len({e["message"].split()[0] for e in took}) >= 2, "the lease never changed hands"
