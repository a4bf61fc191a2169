"""Map a namespace's IPVS fwmarks to Swarm services, and backend addresses to tasks.

Swarm (libnetwork service_linux.go, ``fwMarker``) marks traffic for a service in the mangle
table of the load-balancer namespace: ``PREROUTING -p tcp --dport PUBLISHED -j MARK --set-mark
N`` for each published port (ingress_sbox) and ``INPUT -d VIP/32 -j MARK --set-mark N`` for the
service's virtual IP (lb_* and ingress_sbox). IPVS then balances fwmark service N. The mark is
the service's ``LocalLBIndex`` on *this* node: marks are allocated per node, so the mapping
must be rebuilt on every node and never carried across nodes.

Two records are combined: the mangle rules (what the kernel really does) and Swarm's own
``network inspect --verbose`` (``Services[name].LocalLBIndex``, ``VIP``, ``Ports``,
``Tasks[].EndpointIP``). Either alone is enough to name a fwmark; when both are present the
index wins and the rules only fill gaps.
"""

from __future__ import annotations

import itertools
import re
import shlex
import socket
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ipvs_agent.model import IpvsFormatError

_MARK_CHAINS = frozenset({"PREROUTING", "INPUT", "OUTPUT"})
_PORTS = re.compile(r"Target:\s*(\d+),\s*Publish:\s*(\d+)")


@dataclass(frozen=True, slots=True)
class MarkRule:
    """One ``-j MARK`` rule of the mangle table: traffic it matches gets ``fwmark``."""

    chain: str
    fwmark: int
    protocol: str | None = None
    dport: int | None = None
    destination: str | None = None


def parse_iptables_save(text: str) -> list[MarkRule]:
    """The MARK rules of the ``*mangle`` table in ``iptables-save`` output.

    Rules with negations, other targets or other chains are ignored: Swarm writes none.
    Raises IpvsFormatError (with the line number) for lines that do not tokenize or carry an
    unreadable mark.
    """
    rules = []
    table = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if table != "mangle" or not line.startswith("-A ") or "MARK" not in line:
            continue
        if '"' in line or "'" in line:  # only comments are quoted; shlex is 30x slower than split
            try:
                tokens = shlex.split(line)
            except ValueError as exc:
                raise IpvsFormatError(
                    f"iptables-save line {lineno}: cannot split {line[:80]!r}: {exc}"
                ) from None
        else:
            tokens = line.split()
        rule = _mark_rule(tokens, lineno)
        if rule is not None:
            rules.append(rule)
    return rules


def _mark_rule(tokens: list[str], lineno: int) -> MarkRule | None:
    if len(tokens) < 2 or tokens[1] not in _MARK_CHAINS or "!" in tokens:
        return None
    # Every token -> the token after it, the first occurrence winning. Non-option keys come
    # along but are never looked up.
    opts: dict[str, str] = {}
    for key, value in itertools.pairwise(tokens):
        opts.setdefault(key, value)
    if opts.get("-j") != "MARK":
        return None
    raw = opts.get("--set-xmark") or opts.get("--set-mark")
    if raw is None:
        return None
    value, _, mask = raw.partition("/")
    try:
        fwmark = int(value, 0)
        if mask and int(mask, 0) != 0xFFFFFFFF:
            return None  # a partial-mask rule ORs bits in; Swarm sets the whole mark
        dport = int(opts["--dport"]) if "--dport" in opts else None
    except ValueError:
        raise IpvsFormatError(
            f"iptables-save line {lineno}: unreadable mark or port in {' '.join(tokens)!r}"
        ) from None
    destination = opts.get("-d")
    if destination is not None:
        address, _, prefix = destination.partition("/")
        try:
            socket.inet_pton(socket.AF_INET, address)
        except OSError:
            raise IpvsFormatError(f"iptables-save line {lineno}: bad destination {destination!r}") from None
        if prefix not in ("", "32"):
            return None  # a subnet, not a VIP
        destination = address
    return MarkRule(
        chain=tokens[1], fwmark=fwmark, protocol=opts.get("-p"), dport=dport, destination=destination
    )


def read_mangle_rules(netns_path: str, timeout: float = 10.0) -> list[MarkRule]:
    """Run ``iptables-save -t mangle`` inside the namespace at ``netns_path`` and parse it.

    nsenter (not ``ip netns exec``) because it takes any bind-mounted namespace file, which
    is what Docker leaves under /var/run/docker/netns.
    """
    argv = ["nsenter", f"--net={netns_path}", "--", "iptables-save", "-t", "mangle"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise OSError(f"cannot run {' '.join(argv)}: {exc}") from exc
    if done.returncode != 0:
        raise OSError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[:300]}")
    return parse_iptables_save(done.stdout)


@dataclass(frozen=True, slots=True)
class SwarmServiceRecord:
    """One service as a node's ``network inspect --verbose`` shows it."""

    name: str
    vip: str | None
    lb_index: int | None
    published_ports: tuple[int, ...] = ()
    tasks: Mapping[str, str] = field(default_factory=dict)  # endpoint IP -> task name


@dataclass(frozen=True, slots=True)
class SwarmNetworkRecord:
    name: str
    id: str
    ingress: bool
    services: tuple[SwarmServiceRecord, ...]

    @property
    def namespace_name(self) -> str:
        """The file Docker bind-mounts this network's load balancer namespace at."""
        return "ingress_sbox" if self.ingress else "lb_" + self.id[:9]


def parse_network_inspect(doc: Mapping[str, Any]) -> SwarmNetworkRecord:
    """A network from ``GET /networks/{id}?verbose=true`` (or one element of the CLI's list)."""
    where = f"network {doc.get('Name', '?')!r}"
    if not isinstance(doc.get("Id"), str) or not isinstance(doc.get("Name"), str):
        raise IpvsFormatError(
            f"{where}: inspect output has no Id/Name; pass the verbose network inspect JSON"
        )
    services = []
    raw_services = doc.get("Services")
    if raw_services is None:
        raw_services = {}
    if not isinstance(raw_services, Mapping):
        raise IpvsFormatError(f"{where}: Services is {type(raw_services).__name__}, expected an object")
    for name, info in raw_services.items():
        if not name:
            continue  # the ingress sandbox's own endpoints are listed under an empty name
        if not isinstance(info, Mapping):
            raise IpvsFormatError(f"{where}: Services[{name!r}] is not an object")
        services.append(_service_record(str(name), info, where))
    return SwarmNetworkRecord(
        name=doc["Name"], id=doc["Id"], ingress=bool(doc.get("Ingress")), services=tuple(services)
    )


def _service_record(name: str, info: Mapping[str, Any], where: str) -> SwarmServiceRecord:
    # dnsrr services have no VIP: libnetwork prints Go's nil IP, "<nil>".
    vip: str | None = str(info.get("VIP") or "").split("/", 1)[0]
    try:
        socket.inet_pton(socket.AF_INET, vip or "")
    except OSError:
        vip = None
    lb_index = info.get("LocalLBIndex")
    if lb_index is not None and (not isinstance(lb_index, int) or isinstance(lb_index, bool)):
        raise IpvsFormatError(
            f"{where}: Services[{name!r}].LocalLBIndex is {lb_index!r}, expected an integer"
        )
    ports = tuple(int(m.group(2)) for p in info.get("Ports") or () for m in [_PORTS.search(str(p))] if m)
    tasks = {}
    for task in info.get("Tasks") or ():
        if isinstance(task, Mapping) and task.get("EndpointIP"):
            tasks[str(task["EndpointIP"]).split("/", 1)[0]] = str(task.get("Name") or "")
    return SwarmServiceRecord(
        name=name, vip=vip, lb_index=lb_index or None, published_ports=ports, tasks=tasks
    )


@dataclass(frozen=True, slots=True)
class FwmarkOwner:
    """Who a fwmark belongs to in one namespace, and how we know."""

    service: str
    evidence: str  # "LocalLBIndex", "VIP a.b.c.d", "published port N"
    tasks: Mapping[str, str] = field(default_factory=dict)


def map_fwmarks(rules: Iterable[MarkRule], records: Iterable[SwarmServiceRecord]) -> dict[int, FwmarkOwner]:
    """fwmark -> owning service for one namespace of one node."""
    records = list(records)
    owners: dict[int, FwmarkOwner] = {}
    for rec in records:
        if rec.lb_index:
            owners[rec.lb_index] = FwmarkOwner(rec.name, "LocalLBIndex", rec.tasks)
    by_vip = {rec.vip: rec for rec in records if rec.vip}
    by_port = {port: rec for rec in records for port in rec.published_ports}
    for rule in rules:
        if rule.fwmark in owners:
            continue
        if rule.destination and rule.destination in by_vip:
            owner = by_vip[rule.destination]
            owners[rule.fwmark] = FwmarkOwner(owner.name, f"VIP {rule.destination}", owner.tasks)
        elif rule.dport is not None and rule.dport in by_port:
            owner = by_port[rule.dport]
            owners[rule.fwmark] = FwmarkOwner(owner.name, f"published port {rule.dport}", owner.tasks)
    return owners
