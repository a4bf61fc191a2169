"""Enter Swarm's load-balancer namespaces and read IPVS there.

Docker bind-mounts each sandbox's network namespace under /var/run/docker/netns: the routing
mesh's is ``ingress_sbox``, each overlay network's load balancer ``lb_`` + 9 characters of the
network id. A thread joins one with setns(2) (Python 3.11 has no os.setns, hence ctypes) and
then opens its netlink socket or reads ``/proc/thread-self/net/ip_vs`` (``/proc/self/net``
would show the main thread's namespace). The thread is thrown away afterwards, so no other
code ever runs in a foreign namespace.
"""

from __future__ import annotations

import ctypes
import errno
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from autoscaler.errors import AutoscalerError
from ipvs_agent.mangle import MarkRule, read_mangle_rules
from ipvs_agent.model import VirtualService
from ipvs_agent.netlink import FamilyNotFoundError
from ipvs_agent.netlink_socket import IpvsNetlink
from ipvs_agent.procfs import parse_ip_vs

CLONE_NEWNET = 0x40000000
INGRESS_NAMESPACE = "ingress_sbox"
T = TypeVar("T")


class IpvsUnavailableError(AutoscalerError, OSError):
    """This node's kernel has no IPVS (neither the netlink family nor /proc/net/ip_vs)."""


def swarm_lb_namespaces(netns_dir: str | Path) -> list[str]:
    """Names of Swarm load-balancer namespaces in ``netns_dir`` (empty if it does not exist)."""
    try:
        names = os.listdir(netns_dir)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n == INGRESS_NAMESPACE or n.startswith("lb_"))


def _setns(path: str) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns({path}): {os.strerror(code)} (the agent needs CAP_SYS_ADMIN)")
    finally:
        os.close(fd)


def run_in_netns(path: str | None, work: Callable[[], T], timeout: float = 15.0) -> T:
    """Run ``work`` in a fresh thread inside the namespace at ``path`` (None: this namespace)."""
    box: dict[str, object] = {}

    def body() -> None:
        try:
            if path is not None:
                _setns(path)
            box["result"] = work()
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=body, name=f"netns:{path}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise TimeoutError(f"reading namespace {path} took more than {timeout:.0f}s")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def read_ipvs_here(proc_path: str = "/proc/thread-self/net/ip_vs") -> tuple[list[VirtualService], str]:
    """Read this thread's namespace: netlink first, /proc as the fallback. Returns (services, how)."""
    try:
        with IpvsNetlink() as nl:
            return nl.read(), "netlink"
    except FamilyNotFoundError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EACCES, errno.EPROTONOSUPPORT):
            raise
    try:
        with open(proc_path, encoding="ascii", errors="replace") as f:
            return parse_ip_vs(f.read()), "procfs"
    except FileNotFoundError:
        raise IpvsUnavailableError(
            errno.ENOENT,
            "the kernel has no IPVS: generic netlink family 'IPVS' is not registered and "
            f"{proc_path} does not exist (load the ip_vs module, or run on a node whose kernel has it)",
        ) from None


class HostIpvs:
    """The real node: Swarm's namespaces under ``netns_dir``, read through the kernel."""

    def __init__(self, netns_dir: str | Path = "/var/run/docker/netns") -> None:
        self.netns_dir = Path(netns_dir)

    def namespaces(self) -> list[str]:
        return swarm_lb_namespaces(self.netns_dir)

    def path(self, namespace: str) -> str:
        return str(self.netns_dir / namespace)

    def read_ipvs(self, namespace: str) -> tuple[list[VirtualService], str]:
        return run_in_netns(self.path(namespace), read_ipvs_here)

    def read_rules(self, namespace: str) -> list[MarkRule]:
        return read_mangle_rules(self.path(namespace))

    def probe(self) -> None:
        """Raise IpvsUnavailableError if this node's kernel has no IPVS at all."""
        run_in_netns(None, read_ipvs_here)
