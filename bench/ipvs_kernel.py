"""bench_ipvs.py --kernel: the agent's whole per-scrape cost on a real kernel (the VM lab's guest).

1,000 services x 10 backends of real containers cannot run in a TCG guest, so the table is
built at that scale by hand: a scratch network namespace (``ip netns add lb_bench<pid>``)
gets the same fwmark services and real servers as the fixture data (``ipvsadm -R``) and the
same mangle MARK rules (``iptables-restore``). Its name starts with ``lb_`` like Swarm's load
balancers. The agent's own code then reads it as on a scrape: a thread per read entering the
namespace (setns), the netlink dump or /proc/net/ip_vs, ``nsenter iptables-save`` forked, the
mapping, the samples and the Prometheus text exposition.

Docker's records (``network inspect --verbose`` of every swarm network) are measured against
real services on the node's engine, as many as the guest can carry (busybox, one task each,
an ingress-published port), and extrapolated linearly to 1,000.

Times are medians of wall time and of CPU time including forked children (the forks and the
kernel are part of the cost; dockerd's CPU is not counted). Needs root, ipvsadm, iptables,
nsenter and ``ip``; the namespace and the services are removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from ipvs_agent.agent import IpvsCollector
from ipvs_agent.collect import collect_node
from ipvs_agent.mangle import MarkRule, SwarmNetworkRecord, read_mangle_rules
from ipvs_agent.model import VirtualService
from ipvs_agent.netns import HostIpvs, read_ipvs_here, run_in_netns
from ipvs_agent.procfs import parse_ip_vs
from ipvs_agent.swarm_records import docker_network_records

DOCKER_SOCKET = "unix:///var/run/docker.sock"
READ_TIMEOUT = 600.0


@dataclass(frozen=True)
class Cost:
    wall_ms: float
    cpu_ms: float  # this process and its children

    def __str__(self) -> str:
        return f"{self.wall_ms:8.1f} ms wall {self.cpu_ms:8.1f} ms CPU"


def measure(fn: Callable[[], object], repeat: int) -> Cost:
    fn()  # warm-up
    walls, cpus = [], []
    for _ in range(repeat):
        before = os.times()
        started = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - started)
        after = os.times()
        cpus.append(
            after.user + after.system + after.children_user + after.children_system
            - (before.user + before.system + before.children_user + before.children_system)
        )  # fmt: skip
    return Cost(statistics.median(walls) * 1000, statistics.median(cpus) * 1000)


def _run(argv: Sequence[str], stdin: str | None = None) -> str:
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[:500]}")
    return done.stdout


def ipvsadm_rules(fwmarks: Sequence[int], backends: Sequence[Sequence[str]]) -> str:
    """``ipvsadm -R`` input: fwmark services balanced round robin over masqueraded real
    servers, as Swarm programs them (weight 0 for the first, a draining task)."""
    lines = []
    for mark, addresses in zip(fwmarks, backends, strict=True):
        lines.append(f"-A -f {mark} -s rr")
        lines += [f"-a -f {mark} -r {a}:0 -m -w {0 if j == 0 else 1}" for j, a in enumerate(addresses)]
    return "\n".join(lines) + "\n"


def mangle_restore(iptables_save: str) -> str:
    """The fixture's ``iptables-save`` text with the built-in chains declared, for iptables-restore."""
    head, _, rest = iptables_save.partition("\n")
    chains = [f":{c} ACCEPT [0:0]" for c in ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")]
    return "\n".join([head, *chains, rest]) + "\n"


@contextlib.contextmanager
def scratch_namespace(name: str, ipvs: str, mangle: str) -> Iterator[str]:
    """A network namespace ``name`` holding the given IPVS table and mangle rules; its path."""
    _run(["ip", "netns", "add", name])
    try:
        # IPVS takes a masqueraded real server only if its address routes as unicast: an
        # interface on the backends' subnet, as Swarm's load-balancer namespaces have.
        _run(["ip", "-n", name, "link", "set", "lo", "up"])
        _run(["ip", "-n", name, "link", "add", "eth0", "type", "dummy"])
        _run(["ip", "-n", name, "addr", "add", "10.255.255.2/8", "dev", "eth0"])
        _run(["ip", "-n", name, "link", "set", "eth0", "up"])
        _run(["ip", "netns", "exec", name, "ipvsadm", "-R"], ipvs)
        _run(["ip", "netns", "exec", name, "iptables-restore"], mangle)
        yield f"/run/netns/{name}"
    finally:
        _run(["ip", "netns", "delete", name])


class ScratchIpvs(HostIpvs):
    """The agent's reader, looking only at the scratch namespace; ``via`` picks netlink or /proc."""

    def __init__(self, path: str, via: str) -> None:
        super().__init__(Path(path).parent)
        self.name, self.via = Path(path).name, via

    def namespaces(self) -> list[str]:
        return [self.name]

    def read_ipvs(self, namespace: str) -> tuple[list[VirtualService], str]:
        work = read_ipvs_here if self.via == "netlink" else read_proc_here
        # The agent gives a read 15 s; under TCG 1,000 x 10 takes longer: measured, not cut.
        return run_in_netns(self.path(namespace), work, timeout=READ_TIMEOUT)

    def read_rules(self, namespace: str) -> list[MarkRule]:
        return read_mangle_rules(self.path(namespace), timeout=READ_TIMEOUT)


def read_proc_here() -> tuple[list[VirtualService], str]:
    """The agent's /proc fallback, taken directly (the kernel has the netlink family)."""
    with open("/proc/thread-self/net/ip_vs", encoding="ascii") as f:
        return parse_ip_vs(f.read()), "procfs"


def exposition(reader: ScratchIpvs, network: SwarmNetworkRecord) -> bytes:
    """One scrape as the agent answers it: read, map, samples, Prometheus text."""
    registry = CollectorRegistry()
    registry.register(IpvsCollector(reader, "bench", lambda: [network], min_interval=0.0))
    return generate_latest(registry)


def kernel_table(
    path: str, services: int, backends: int, network: SwarmNetworkRecord, repeat: int
) -> dict[str, Cost]:
    """Print the costs of reading the scratch namespace at ``path`` and their baselines;
    returns the whole scrape's cost by reader ("netlink", "procfs")."""
    netlink, proc = ScratchIpvs(path, "netlink"), ScratchIpvs(path, "procfs")
    for reader in (netlink, proc):
        snap = collect_node(reader, lambda: [network])
        assert not snap.errors, snap.errors
        mapped = sum(bool(s.service) for s in snap.services)
        if (len(snap.services), len(snap.backends), mapped) != (services, services * backends, services):
            # Printed, not asserted: a /proc read in the VM guest came back short (995 of 1,000).
            print(f"  {reader.via}: read {len(snap.services)} services, {len(snap.backends)} backends")
    lines = exposition(netlink, network).count(b"\n")
    ns = netlink.name
    costs = {
        "netlink read (thread, setns, dump, decode)": measure(lambda: netlink.read_ipvs(ns), repeat),
        "/proc read   (thread, setns, read, parse) ": measure(lambda: proc.read_ipvs(ns), repeat),
        "mangle rules (nsenter iptables-save, parse)": measure(lambda: netlink.read_rules(ns), repeat),
        "whole scrape, netlink (+ map, samples, text)": measure(lambda: exposition(netlink, network), repeat),
        "whole scrape, /proc   (+ map, samples, text)": measure(lambda: exposition(proc, network), repeat),
    }
    floors = {
        "baseline nsenter ipvsadm -Ln --stats --exact": measure(
            lambda: _run(["nsenter", f"--net={path}", "--", "ipvsadm", "-Ln", "--stats", "--exact"]), repeat
        ),
        "baseline nsenter true (the fork floor)      ": measure(
            lambda: _run(["nsenter", f"--net={path}", "--", "true"]), repeat
        ),
    }
    print(f"\nreal kernel ({os.uname().release}), one namespace of {services} fwmark services x {backends}")
    print(
        f"real servers, {lines} exposition lines; median of {repeat} (load average {os.getloadavg()[0]:.1f})"
    )
    for name, cost in {**costs, **floors}.items():
        print(f"  {name}: {cost}")
    ipvsadm = floors["baseline nsenter ipvsadm -Ln --stats --exact"]
    fork = floors["baseline nsenter true (the fork floor)      "]
    whole = costs["whole scrape, netlink (+ map, samples, text)"]
    for label, cost, floor in [
        ("netlink read / ipvsadm -Ln (wall)", costs["netlink read (thread, setns, dump, decode)"], ipvsadm),
        ("whole scrape netlink / ipvsadm -Ln (wall)", whole, ipvsadm),
        ("mangle rules / nsenter true (wall)", costs["mangle rules (nsenter iptables-save, parse)"], fork),
    ]:
        print(f"  ratio {label}: {cost.wall_ms / floor.wall_ms:6.2f}")
    return {"netlink": whole, "procfs": costs["whole scrape, /proc   (+ map, samples, text)"]}


@contextlib.contextmanager
def real_services(count: int, deadline: float = 900.0) -> Iterator[None]:
    """``count`` busybox services, one task each, each publishing an ingress port."""
    import docker

    client = docker.DockerClient(base_url=DOCKER_SOCKET, timeout=120)
    prefix = f"benchipvs-{uuid.uuid4().hex[:4]}"
    created = []
    try:
        for i in range(count):
            created.append(
                client.services.create(
                    "lab/busybox",
                    ["sleep", "86400"],
                    name=f"{prefix}-{i}",
                    endpoint_spec=docker.types.EndpointSpec(ports={31000 + i: 80}),
                )
            )
        _wait_running(client, created, deadline)
        yield
    finally:
        for service in created:
            with contextlib.suppress(docker.errors.NotFound):
                service.remove()
        client.close()


def _wait_running(client: object, services: list[object], deadline: float) -> None:
    end = time.monotonic() + deadline
    while True:
        running = sum(
            any(t["Status"]["State"] == "running" for t in s.tasks(filters={"desired-state": "running"}))  # type: ignore[attr-defined]
            for s in services
        )
        if running == len(services):
            return
        if time.monotonic() > end:
            raise TimeoutError(
                f"only {running} of {len(services)} bench services running after {deadline:.0f}s"
            )
        time.sleep(2.0)


def docker_records(counts: Sequence[int], repeat: int, extrapolate_to: int) -> float | None:
    """The records' cost against real services, at each of ``counts`` services added; returns
    the wall ms extrapolated to ``extrapolate_to`` service records (None: too few steps)."""
    import docker

    api = docker.APIClient(base_url=DOCKER_SOCKET, timeout=60)
    rows = []
    print("\nDocker's records (network inspect --verbose of every swarm network), real services")
    previous = 0
    with contextlib.ExitStack() as stack:
        for count in sorted(counts):
            if count > previous:
                stack.enter_context(real_services(count - previous))
                previous = count
            records = docker_network_records(DOCKER_SOCKET)
            in_records = sum(len(net.services) for net in records)
            tasks = sum(len(s.tasks) for net in records for s in net.services)
            cost = measure(lambda: docker_network_records(DOCKER_SOCKET), repeat)
            ping = measure(api.ping, repeat)
            rows.append((in_records, cost))
            print(
                f"  {count:4d} added: {len(records)} networks, {in_records} service records, {tasks} tasks: "
                f"{cost}; ratio to one /_ping ({ping.wall_ms:.1f} ms): {cost.wall_ms / ping.wall_ms:6.1f}"
            )
    api.close()
    if len({n for n, _ in rows}) >= 2:
        # Least squares over every step: one TCG measurement is noisy.
        fit = statistics.linear_regression([float(n) for n, _ in rows], [c.wall_ms for _, c in rows])
        if fit.slope <= 0:
            print(f"  least squares slope {fit.slope:.2f} ms per service record: no growth above the noise")
            return None
        estimate = fit.intercept + fit.slope * extrapolate_to
        print(
            f"  least squares: {fit.intercept:.0f} ms + {fit.slope:.2f} ms per service record; "
            f"extrapolated to {extrapolate_to} service records: {estimate:.0f} ms wall"
        )
        return estimate
    return None
