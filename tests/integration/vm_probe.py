"""Run INSIDE a VM lab node (``lab exec N -- python3 THIS NAMESPACE``): one namespace read four
ways back to back, printed as JSON, so the host-side test compares them for the same moment.

- ``netlink``: the agent's netlink reader (IpvsNetlink in the namespace, as the agent does);
- ``procfs``: the agent's /proc reader on ``/proc/thread-self/net/ip_vs`` there;
- ``proc_text``: that file's raw text, read in the same thread right after;
- ``ipvsadm`` / ``ipvsadm_stats``: ``ipvsadm -Ln --exact`` and ``-Ln --stats --exact`` there.
The connections the test holds open keep ActiveConn steady across the four reads.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from ipvs_agent.netlink_socket import IpvsNetlink
from ipvs_agent.netns import run_in_netns
from ipvs_agent.procfs import parse_ip_vs

PROC = "/proc/thread-self/net/ip_vs"


def _services(services: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "fwmark": s.fwmark,
            "scheduler": s.scheduler,
            "connections_total": s.connections_total,
            "servers": sorted(
                [rs.address, rs.port, rs.forward, rs.weight, rs.active_connections, rs.inactive_connections]
                for rs in s.real_servers
            ),
        }
        for s in services
    ]


def main(namespace: str) -> None:
    path = f"/var/run/docker/netns/{namespace}"

    def read() -> dict[str, Any]:
        with IpvsNetlink() as nl:
            netlink = nl.read()
        with open(PROC, encoding="ascii") as f:
            text = f.read()
        return {"netlink": _services(netlink), "procfs": _services(parse_ip_vs(text)), "proc_text": text}

    found = run_in_netns(path, read)
    for key, extra in (("ipvsadm", []), ("ipvsadm_stats", ["--stats"])):
        argv = ["nsenter", f"--net={path}", "ipvsadm", "-Ln", "--exact", *extra]
        found[key] = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    mangle = ["nsenter", f"--net={path}", "iptables-save", "-t", "mangle"]
    found["mangle"] = subprocess.run(mangle, capture_output=True, text=True, check=True).stdout
    json.dump(found, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1])
