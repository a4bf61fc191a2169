"""The VM lab's nodes as Swarm nodes: booted and answering, in the swarm, failed and repaired.

The swarm itself is formed by the code the netns lab uses (swarm.ensure_swarm) with the VM
lab's settings; what is VM-specific is here: waiting for a guest's dockerd and agent, the
busybox image, the three ways to fail a node, and booting a powered-off one again.
"""

from __future__ import annotations

import time
from typing import Literal

import docker

from swarm_lab import daemons, host, images, swarm, vm_exec, vm_image, vm_layout, vm_qemu, vm_state
from swarm_lab.errors import LabError
from swarm_lab.vm_layout import VmNode

VmNodeDownMode = Literal["link", "kill", "stop"]
BOOT_TIMEOUT = 300.0  # TCG: ~40 s to dockerd alone, minutes when the host's CPU is shared
# 10 s, not the netns lab's 1 s: under TCG on a shared 2-core host a 1 s heartbeat is missed
# often enough that the node flaps Down and its tasks are rescheduled in a loop (seen).
VM_SWARM = swarm.SwarmSettings(
    vm_layout.ADDRESS_POOL, heartbeat_ns=10_000_000_000, network=vm_state.NETWORK, ready_timeout=120.0
)


def log(message: str) -> None:
    print(f"lab: {message}", flush=True)


def wait_docker(node: VmNode, timeout: float = BOOT_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemons.answers(node):
            return
        if vm_qemu.qemu_pid(node) is None:
            raise LabError(
                f"node {node.index}'s VM exited while booting; console:\n{vm_qemu.console_tail(node)}"
            )
        time.sleep(0.5)
    raise LabError(
        f"dockerd of VM node {node.index} did not answer on {node.docker_url} within {timeout:.0f}s; "
        f"console ({node.console_log}):\n{vm_qemu.console_tail(node)}"
    )


def wait_agent(node: VmNode, timeout: float = 240.0) -> None:
    error = host.wait_http_ok(node.agent_url, timeout=timeout, request_timeout=60.0)
    if error is not None:
        log_tail = vm_exec.run(node, ["tail", "-n", "20", "/var/log/ipvs-agent.log"]).stdout
        raise LabError(
            f"the IPVS agent on node {node.index} did not answer at {node.agent_url} ({error}):\n{log_tail}"
        )


def ensure_busybox(node: VmNode) -> None:
    """lab/busybox on the node (2 MB, imported from the netns lab's cached rootfs tarball)."""
    with daemons.client(node) as c:
        try:
            c.images.get(vm_state.BUSYBOX)
            return
        except docker.errors.ImageNotFound:
            pass
        with images.busybox_rootfs().open("rb") as data:
            c.api.import_image_from_data(data.read(), repository=vm_state.BUSYBOX, tag="latest")


def exec_on(n: int, argv: list[str], timeout: float = 300.0) -> vm_exec.ExecResult:
    return vm_exec.run(vm_state.node(n), argv, timeout)


def node_down(n: int, mode: VmNodeDownMode = "link") -> None:
    """Fail node ``n``: ``link`` sets its tap down, ``kill`` powers the VM off (its RAM disk,
    so its engine state, is lost), ``stop`` SIGTERMs its dockerd."""
    node = vm_state.node(n)
    if mode == "link":
        vm_qemu.set_link(node, up=False)
    elif mode == "kill":
        vm_qemu.stop(node)
    elif mode == "stop":
        vm_exec.run(node, ["sh", "-c", "kill -TERM $(pidof dockerd) 2>/dev/null; true"])
        # Gone, not only silent: dockerd stops answering long before it has stopped its
        # containers and exited, and `node-up` must not find it still alive then (seen).
        deadline = time.monotonic() + 180.0
        while _dockerd_alive(node):
            if time.monotonic() > deadline:
                raise LabError(f"dockerd of VM node {n} still runs 180 s after SIGTERM")
            time.sleep(1.0)
    else:
        raise LabError(f"unknown node_down mode {mode!r}: use link, kill or stop")


def node_up(n: int) -> None:
    """Repair node ``n``: link up, VM running, dockerd up, in the swarm and every node ready.

    A powered-off worker (``--mode kill``) boots anew as an empty engine: it joins the swarm
    again under a new node ID (its old entries are removed), busybox is loaded again, and its
    agent answers before this returns."""
    node = vm_state.node(n)
    vm_qemu.set_link(node, up=True)
    if vm_qemu.qemu_pid(node) is None:
        if node.is_manager:
            raise LabError(
                "the manager VM was powered off and its swarm lived in its RAM disk: "
                "run `lab down --backend vm` and `lab up --backend vm` "
                "(use --mode link or stop for the manager)"
            )
        _boot_again(node)
    elif not daemons.answers(node):
        _start_dockerd(node)
    swarm.wait_nodes_ready(vm_layout.MANAGER, vm_state.info().nodes, VM_SWARM.ready_timeout)


def _dockerd_alive(node: VmNode) -> bool:
    return vm_exec.run(node, ["pidof", "dockerd"]).returncode == 0


def _start_dockerd(node: VmNode, timeout: float = BOOT_TIMEOUT) -> None:
    """dockerd started again and answering. swl-start-dockerd does nothing while a dockerd
    process lives, so it is asked again until one answers: a dockerd still exiting from
    ``--mode stop`` (or that crashed meanwhile) is followed by a fresh one."""
    deadline = time.monotonic() + timeout
    while not daemons.answers(node):
        if time.monotonic() > deadline:
            raise LabError(
                f"dockerd of VM node {node.index} not answering {timeout:.0f}s after node-up; its log:\n"
                + vm_exec.run(node, ["tail", "-n", "15", "/var/log/dockerd.log"]).stdout
            )
        # The engine's local network store goes with the old dockerd: once in CI (after the
        # failover test's reboot and a --mode stop) the restarted one failed every task needing
        # docker_gwbridge ("conflicts with network ...: networks have same bridge name", moby's
        # stale-bridge bug; one stop/up alone did not reproduce it). The swarm's networks come
        # back from the manager; bridge and docker_gwbridge are made anew.
        vm_exec.run(node, ["sh", "-c", "pidof dockerd >/dev/null || rm -rf /var/lib/docker/network"])
        vm_exec.run(node, ["swl-start-dockerd"])
        time.sleep(3.0)


def _boot_again(node: VmNode) -> None:
    started = time.monotonic()
    vm_qemu.start(node, vm_image.ensure_image(), vm_state.info().accel, vm_state.guest_source())
    wait_docker(node)
    swarm.join(node, vm_layout.MANAGER, swarm.worker_token(vm_layout.MANAGER))
    ensure_busybox(node)
    wait_agent(node)
    log(f"node {node.index} booted again and rejoined in {time.monotonic() - started:.0f}s")
