"""One dockerd per node, each in its node's network namespace with its own dirs and cgroup."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

import docker

from swarm_lab import host, layout
from swarm_lab.errors import LabError

READY_TIMEOUT = 60.0


class Engine(Protocol):
    """A node's dockerd as a client reaches it (a netns lab node or a VM lab node)."""

    @property
    def docker_url(self) -> str: ...


@contextmanager
def client(node: Engine, timeout: float = 30.0) -> Iterator[docker.DockerClient]:
    """A Docker SDK client for the node's daemon, closed on exit (API 1.41: dockerd 20.10)."""
    connection = docker.DockerClient(base_url=node.docker_url, timeout=int(timeout), version="1.41")
    try:
        yield connection
    finally:
        connection.close()


def log_tail(node: layout.Node, lines: int = 15) -> str:
    try:
        text = node.log_file.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no daemon log)"
    return "\n".join(text[-lines:])


def dockerd_pid(node: layout.Node) -> int | None:
    pid = host.read_pidfile(node.pidfile)
    return pid if pid is not None and host.is_alive(pid) else None


def answers(node: Engine) -> bool:
    try:
        with client(node, timeout=3) as c:
            return bool(c.ping())
    except Exception:  # any failure means "not answering yet"
        return False


def _write_daemon_json(node: layout.Node) -> None:
    config = {
        # dockerd < 23 derives the engine ID from this key; one per node or all nodes look alike.
        "deprecated-key-path": str(node.data_root / "key.json"),
        "metrics-addr": f"{node.ip}:{layout.DOCKER_METRICS_PORT}",
        "experimental": True,
        "log-opts": {"max-size": "5m", "max-file": "1"},
    }
    (node.exec_root / "daemon.json").write_text(json.dumps(config, indent=2))


def start(node: layout.Node) -> None:
    """Start the node's dockerd (if not running) and wait until its API answers."""
    if dockerd_pid(node) is None:
        # A SIGKILLed dockerd can linger as a zombie (PID 1 here reaps late): dead to us, but
        # a new dockerd still finds its pid in the pidfile and refuses to start.
        node.pidfile.unlink(missing_ok=True)
        # Same for the containerd dockerd runs: a zombie's pid in its pidfile makes dockerd
        # wait for a containerd that is gone ("timeout waiting for containerd to start").
        containerd_pidfile = node.exec_root / "containerd" / "containerd.pid"
        containerd_pid = host.read_pidfile(containerd_pidfile)
        if containerd_pid is not None and not host.is_alive(containerd_pid):
            containerd_pidfile.unlink(missing_ok=True)
        node.data_root.mkdir(parents=True, exist_ok=True)
        node.exec_root.mkdir(parents=True, exist_ok=True)
        _write_daemon_json(node)
        dockerd = [
            "dockerd",
            f"--data-root={node.data_root}",
            f"--exec-root={node.exec_root}",
            f"--pidfile={node.pidfile}",
            f"--host={node.docker_url}",
            f"--config-file={node.exec_root / 'daemon.json'}",
            "--exec-opt=native.cgroupdriver=cgroupfs",
            f"--cgroup-parent={node.cgroup_parent}",
        ]
        # nsenter, not `ip netns exec`: the latter remounts /sys and hides the cgroup tree.
        cmd = [
            "nsenter",
            f"--net={node.netns_path}",
            "unshare",
            "--uts",
            "--",
            "sh",
            "-c",
            f'hostname {node.hostname} && exec "$@"',
            "sh",
            *dockerd,
        ]
        # Without it Swarm asks a registry for every task's image, and there is none.
        env = {**os.environ, "DOCKER_SERVICE_PREFER_OFFLINE_IMAGE": "1"}
        with node.log_file.open("ab") as log:
            subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
            )
    wait_ready(node)


def wait_ready(node: layout.Node, timeout: float = READY_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(node):
            return
        time.sleep(0.1)
    raise LabError(
        f"dockerd of {node.name} did not answer on {node.docker_url} within {timeout:.0f}s; "
        f"daemon log tail ({node.log_file}):\n{log_tail(node)}"
    )


def stop(node: layout.Node, sig: int, with_containerd: bool) -> None:
    """Signal dockerd (and its containerd child) and wait for them to exit."""
    pid = dockerd_pid(node)
    if pid is None:
        return
    targets = [pid]
    if with_containerd:
        targets += host.children_named(pid, "containerd")
    left = host.kill_and_wait(targets, sig, timeout=40.0)
    if left:
        raise LabError(f"dockerd of {node.name} (pids {left}) still runs 40s after signal {sig}")


def kill_everything(node: layout.Node) -> None:
    """SIGKILL every process of the node: its netns (daemons, shims) and its cgroup (containers)."""
    for _ in range(5):  # new processes can appear while the first ones die
        pids = set(host.cgroup_pids(node.name))
        if host.netns_exists(node.netns):
            pids.update(host.netns_pids(node.netns))
        pid = dockerd_pid(node)
        if pid is not None:
            pids.add(pid)
        pids = {p for p in pids if host.is_alive(p)}
        if not pids:
            return
        left = host.kill_and_wait(pids, signal.SIGKILL, timeout=10.0)
        if left:
            raise LabError(f"processes {left} of {node.name} survived SIGKILL")


def node_pids(node: layout.Node) -> list[int]:
    pids = set(host.cgroup_pids(node.name))
    if host.netns_exists(node.netns):
        pids.update(host.netns_pids(node.netns))
    return sorted(p for p in pids if host.is_alive(p))
