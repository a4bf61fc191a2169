"""Names, addresses and paths of the lab: one place so up, down and status agree.

Everything the lab creates on the host carries the ``swl`` prefix (netns, veths, bridge,
cgroups, iptables comments) so teardown can find it, and so it never touches another
engineer's namespaces or daemons.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

PREFIX = "swl"
BRIDGE = f"{PREFIX}br0"
SUBNET = "10.77.0.0/24"
BRIDGE_IP = "10.77.0.1"
# Swarm carves overlay subnets out of this pool; kept apart from the node subnet.
ADDRESS_POOL = "10.78.0.0/16"
IPTABLES_COMMENT = "swarm-autoscaler-lab"

# A tmpfs while the lab is up (see host.ensure_tmpfs): data roots, daemon logs.
STATE_DIR = Path("/var/lib/swarm-autoscaler-lab")
STATE_TMPFS_SIZE = "8g"  # an upper bound, not a reservation: ~0.4 GiB used per node
# Kept short: containerd's unix socket paths live under it and must stay < 108 bytes.
RUN_DIR = Path("/run/swl")
CACHE_DIR = Path("/var/cache/swarm-autoscaler-lab")
STATE_FILE = RUN_DIR / "lab.json"

# Image contexts (web, loadgen, prometheus) and the demo policy, shipped inside the package as
# package data: found the same way from a checkout (editable install) and a wheel. setuptools
# installs packages as plain files, so the Traversable is a real directory.
ASSETS = Path(str(resources.files("swarm_lab") / "assets"))
DEMO_POLICY = ASSETS / "demo-policy.yaml"

NETWORK = "lab-net"
PROMETHEUS_PORT = 9090
DOCKER_METRICS_PORT = 9323
MAX_NODES = 9


@dataclass(frozen=True, slots=True)
class Node:
    """One Swarm node: a dockerd with its own network namespace, dirs and cgroup."""

    index: int  # 1-based; node 1 is the manager

    @property
    def name(self) -> str:
        return f"{PREFIX}node{self.index}"

    @property
    def hostname(self) -> str:
        return f"{PREFIX}-node{self.index}"

    @property
    def netns(self) -> str:
        return self.name

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    @property
    def host_veth(self) -> str:
        return f"{PREFIX}h{self.index}"

    @property
    def node_veth(self) -> str:
        return f"{PREFIX}n{self.index}"

    @property
    def ip(self) -> str:
        return f"10.77.0.{10 + self.index}"

    @property
    def data_root(self) -> Path:
        return STATE_DIR / f"node{self.index}"

    @property
    def exec_root(self) -> Path:
        return RUN_DIR / f"n{self.index}"

    @property
    def socket(self) -> Path:
        return self.exec_root / "docker.sock"

    @property
    def docker_url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.exec_root / "dockerd.pid"

    @property
    def log_file(self) -> Path:
        return STATE_DIR / f"node{self.index}.log"

    @property
    def cgroup_parent(self) -> str:
        return f"/{self.name}"

    @property
    def is_manager(self) -> bool:
        return self.index == 1


def nodes(count: int) -> list[Node]:
    if not 1 <= count <= MAX_NODES:
        raise ValueError(f"node count {count} out of range: use 1..{MAX_NODES} (--nodes)")
    return [Node(i) for i in range(1, count + 1)]


MANAGER = Node(1)
