"""Reading and mapping one node's IPVS tables: 1,000 virtual services x 10 backends.

The issue's goal: read and map 1,000 services x 10 backends in under 50 ms (fixture data).
Measured end to end as the agent does it on a scrape (collect_node: decode the kernel's
output, parse the mangle rules, map fwmarks to services and backends to tasks, build the
samples), once through the netlink path and once through the /proc fallback.

Baselines, measured in the same run on the same bytes and text:
- pyroute2's own IPVS message classes decoding the netlink bytes (the library alternative to
  our struct decoder: decoding only, no mapping);
- ``str.split()`` of every /proc line (the least any text parser must do).
The data come from tests/fixtures/ipvs/kernel_format.py (the kernel's formats).
Run: ``python bench/bench_ipvs.py [--services 1000] [--backends 10] [--repeat 15]``.

``--kernel`` adds the whole per-scrape cost on the real kernel this runs on (bench/ipvs_kernel.py:
the same table built in a scratch namespace, namespace entry, the iptables-save fork, the
exposition, and Docker's records against real services), with ``ipvsadm``, a bare fork and
a Docker ``/_ping`` as the baselines. As root in the VM lab's guest (the guest's python3 with
the checkout's packages, the ``swl.pythonpath`` of its /proc/cmdline):
``swarm-autoscaler lab exec --timeout 3000 1 -- env PYTHONPATH=... python3 bench/bench_ipvs.py --kernel``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import statistics
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "ipvs"))
import kernel_format as kf

from ipvs_agent.collect import collect_node
from ipvs_agent.mangle import (
    MarkRule,
    SwarmNetworkRecord,
    SwarmServiceRecord,
    parse_iptables_save,
)
from ipvs_agent.model import VirtualService
from ipvs_agent.netlink import decode_real_servers, decode_services
from ipvs_agent.procfs import parse_ip_vs

FAMILY = 0x1D


def _ip(i: int, base: int) -> str:
    return f"10.{base}.{i // 256}.{i % 256}"


def build(
    services: int, backends: int
) -> tuple[list[kf.Service], str, bytes, list[bytes], str, SwarmNetworkRecord]:
    specs = []
    records = []
    rules = ["*mangle"]
    for i in range(services):
        mark = 256 + i
        dests = [
            kf.Dest(
                _ip(i * backends + j, 1), active=(i + j) % 50, inactive=j, weight=0 if j == 0 else 1, conns=i
            )
            for j in range(backends)
        ]
        specs.append(kf.Service(fwmark=mark, dests=dests, conns=i * 10, cps=i % 7))
        vip = _ip(i, 0)
        rules.append(
            f"-A PREROUTING -p tcp -m tcp --dport {10000 + i} -j MARK --set-xmark {mark:#x}/0xffffffff"
        )
        rules.append(f"-A INPUT -d {vip}/32 -j MARK --set-xmark {mark:#x}/0xffffffff")
        # half the services known by LocalLBIndex, half only by VIP (the rules' fallback)
        records.append(
            SwarmServiceRecord(
                name=f"svc{i}",
                vip=vip,
                lb_index=mark if i % 2 == 0 else None,
                published_ports=(10000 + i,),
                tasks={d.address: f"svc{i}.{j + 1}.task" for j, d in enumerate(dests)},
            )
        )
    rules.append("COMMIT")
    network = SwarmNetworkRecord(name="ingress", id="ingress", ingress=True, services=tuple(records))
    dest_dumps = [kf.dest_dump(FAMILY, s.dests) for s in specs]
    return specs, kf.proc_ip_vs(specs), kf.service_dump(FAMILY, specs), dest_dumps, "\n".join(rules), network


class BenchNode:
    def __init__(self, via: str, proc: str, dump: bytes, dests: list[bytes], mangle: str) -> None:
        self.via, self.proc, self.dump, self.dests, self.mangle = via, proc, dump, dests, mangle

    def namespaces(self) -> list[str]:
        return ["ingress_sbox"]

    def read_ipvs(self, namespace: str) -> tuple[list[VirtualService], str]:
        if self.via == "procfs":
            return parse_ip_vs(self.proc), "procfs"
        out = []
        for svc, dests in zip(decode_services(self.dump, FAMILY), self.dests, strict=True):
            servers = tuple(decode_real_servers(dests, FAMILY, socket.AF_INET))
            out.append(
                VirtualService(svc.fwmark, svc.protocol, svc.address, svc.port, svc.scheduler, servers,
                               svc.connections_total, svc.connection_rate)
            )  # fmt: skip
        return out, "netlink"

    def read_rules(self, namespace: str) -> list[MarkRule]:
        return parse_iptables_save(self.mangle)

    def probe(self) -> None:
        return None


def pyroute2_decode(dump: bytes, dests: list[bytes]) -> int:
    from pyroute2.netlink.generic.ipvs import ipvsmsg

    count = 0
    for buf in (dump, *dests):
        off = 0
        while off < len(buf):
            length, mtype = struct.unpack_from("=IH", buf, off)
            if mtype == FAMILY:
                msg = ipvsmsg(buf[off : off + length])
                msg.decode()
                count += 1
            off += (length + 3) & ~3
    return count


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median CPU time of this thread in ms: wall time on a shared, loaded CI machine measures
    the neighbours; thread CPU time measures the code (printed with the load average)."""
    fn()  # warm-up
    samples = []
    for _ in range(repeat):
        started = time.thread_time()
        fn()
        samples.append(time.thread_time() - started)
    return statistics.median(samples) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--backends", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--kernel", action="store_true", help="also the whole per-scrape cost on this kernel")
    parser.add_argument(
        "--docker-services",
        default="0,10,20,30",
        help="with --kernel: real services to add, step by step, for Docker's records (default 0,10,20,30)",
    )
    args = parser.parse_args()
    _specs, proc, dump, dests, mangle, network = build(args.services, args.backends)
    netlink_node = BenchNode("netlink", proc, dump, dests, mangle)
    proc_node = BenchNode("procfs", proc, dump, dests, mangle)

    def check(node: BenchNode) -> None:
        snap = collect_node(node, lambda: [network])
        assert len(snap.services) == args.services and len(snap.backends) == args.services * args.backends
        assert all(s.service for s in snap.services), "every fwmark must map to its service"

    check(netlink_node)
    check(proc_node)
    netlink_ms = timed(lambda: collect_node(netlink_node, lambda: [network]), args.repeat)
    proc_ms = timed(lambda: collect_node(proc_node, lambda: [network]), args.repeat)
    decode_ms = timed(lambda: netlink_node.read_ipvs("ingress_sbox"), args.repeat)
    pyroute2_ms = timed(lambda: pyroute2_decode(dump, dests), max(3, args.repeat // 5))
    split_ms = timed(lambda: [line.split() for line in proc.split("\n")], args.repeat)
    total = args.services * args.backends
    load = os.getloadavg()[0]
    print(
        f"IPVS read+map, {args.services} services x {args.backends} backends ({total} backends), "
        f"median thread CPU ms (load average {load:.1f} on {os.cpu_count()} CPUs)"
    )
    print(f"  netlink path (decode + mangle + map + samples): {netlink_ms:8.1f} ms   goal < 50 ms")
    print(f"  /proc path   (parse  + mangle + map + samples): {proc_ms:8.1f} ms   goal < 50 ms")
    print(f"  our netlink decode only:                        {decode_ms:8.1f} ms")
    print(f"  baseline pyroute2 ipvsmsg decode only:          {pyroute2_ms:8.1f} ms")
    print(f"  baseline str.split of /proc lines only:         {split_ms:8.1f} ms")
    print(f"  ratio our decode / pyroute2 decode:   {decode_ms / pyroute2_ms:6.3f}")
    print(f"  ratio netlink path / pyroute2 decode: {netlink_ms / pyroute2_ms:6.3f}")
    print(f"  ratio /proc path / str.split floor:   {proc_ms / split_ms:6.1f}")
    if args.kernel:
        kernel_bench(args, _specs, mangle, network)


def kernel_bench(
    args: argparse.Namespace, specs: list[kf.Service], mangle: str, network: SwarmNetworkRecord
) -> None:
    import ipvs_kernel

    fwmarks = [s.fwmark for s in specs]
    backends = [[d.address for d in s.dests] for s in specs]
    rules, restore = ipvs_kernel.ipvsadm_rules(fwmarks, backends), ipvs_kernel.mangle_restore(mangle)
    # The records as an overlay network's, whose load balancer is the scratch namespace.
    overlay = dataclasses.replace(network, name="bench", id=f"b{os.getpid():08d}", ingress=False)
    repeat = max(3, args.repeat // 3)  # a read of the real table costs seconds under TCG
    with ipvs_kernel.scratch_namespace(overlay.namespace_name, rules, restore) as path:
        whole = ipvs_kernel.kernel_table(path, args.services, args.backends, overlay, repeat)
    counts = [int(c) for c in args.docker_services.split(",") if c.strip()]
    docker_ms = ipvs_kernel.docker_records(counts, repeat, extrapolate_to=args.services)
    if docker_ms is not None:
        print(f"\nwhole per-scrape cost, {args.services} x {args.backends}, estimated (wall):")
        for via, cost in whole.items():
            parts = f"{cost.wall_ms:8.0f} ms read+map+text + {docker_ms:6.0f} ms Docker"
            print(f"  {via:8s} {parts} = {cost.wall_ms + docker_ms:6.0f} ms")


if __name__ == "__main__":
    main()
