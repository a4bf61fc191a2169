"""Names, addresses and paths of the VM lab: QEMU nodes with a real kernel (IPVS) on a host bridge.

Kept apart from the netns lab (``swl`` prefix, 10.77.0.0/24) so both can run at once:
everything here carries the ``swv`` prefix and lives on 10.79.0.0/24.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from swarm_lab import layout

PREFIX = "swv"
BRIDGE = f"{PREFIX}br0"
SUBNET = "10.79.0.0/24"
BRIDGE_IP = "10.79.0.1"
PREFIX_LEN = 24
# Swarm's overlay subnets inside the VMs; distinct from both labs' node subnets.
ADDRESS_POOL = "10.80.0.0/16"
IPTABLES_COMMENT = "swarm-autoscaler-vm-lab"

RUN_DIR = Path("/run/swv")
STATE_FILE = RUN_DIR / "lab.json"
CACHE_DIR = layout.CACHE_DIR  # the image is cached beside the netns lab's rootfs tarballs
PROMETHEUS_DIR = RUN_DIR / "prometheus"
PROMETHEUS_PORT = 9090
DOCKER_PORT = 2375
DOCKER_METRICS_PORT = 9323
AGENT_PORT = 9105
MAX_NODES = 4
VCPUS = 2
MEMORY_MIB = 2048


@dataclass(frozen=True, slots=True)
class VmNode:
    """One Swarm node: a QEMU guest with its own kernel, on a tap of the lab bridge."""

    index: int  # 1-based; node 1 is the manager

    @property
    def hostname(self) -> str:
        return f"{PREFIX}-node{self.index}"

    @property
    def ip(self) -> str:
        return f"10.79.0.{10 + self.index}"

    @property
    def tap(self) -> str:
        return f"{PREFIX}t{self.index}"

    @property
    def mac(self) -> str:
        return f"52:54:00:79:00:{10 + self.index:02x}"

    @property
    def run_dir(self) -> Path:
        return RUN_DIR / f"n{self.index}"

    @property
    def pidfile(self) -> Path:
        return self.run_dir / "qemu.pid"

    @property
    def console_log(self) -> Path:
        return self.run_dir / "console.log"

    @property
    def guest_agent_socket(self) -> Path:
        return self.run_dir / "qga.sock"

    @property
    def docker_url(self) -> str:
        return f"tcp://{self.ip}:{DOCKER_PORT}"

    @property
    def agent_url(self) -> str:
        return f"http://{self.ip}:{AGENT_PORT}/metrics"

    @property
    def is_manager(self) -> bool:
        return self.index == 1


def nodes(count: int) -> list[VmNode]:
    if not 1 <= count <= MAX_NODES:
        raise ValueError(f"VM node count {count} out of range: use 1..{MAX_NODES} (--nodes)")
    return [VmNode(i) for i in range(1, count + 1)]


MANAGER = VmNode(1)
PROMETHEUS_URL = f"http://{BRIDGE_IP}:{PROMETHEUS_PORT}"
