"""Run a command on a VM node through the QEMU guest agent (``lab exec N -- CMD``).

qemu-ga runs in the guest on a virtio-serial port whose host end is a unix socket in the
node's run directory: no network service, no keys, nothing reachable from the lab bridge.
The protocol is QMP-style JSON lines: ``guest-sync`` to find the stream's start, then
``guest-exec`` (argv, captured output) and ``guest-exec-status`` polled until it exits.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import random
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from swarm_lab.errors import LabError
from swarm_lab.vm_layout import VmNode


@dataclass(frozen=True)
class ExecResult:
    returncode: int
    stdout: str
    stderr: str


class _Channel:
    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""

    def send(self, command: str, arguments: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"execute": command}
        if arguments is not None:
            message["arguments"] = arguments
        self._sock.sendall(json.dumps(message).encode() + b"\n")

    def receive(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise LabError("the VM's guest agent closed the connection")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        line = line.lstrip(b"\xff").strip()
        if not line:
            return self.receive()
        reply: dict[str, Any] = json.loads(line)
        return reply

    def call(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        self.send(command, arguments)
        reply = self.receive()
        if "error" in reply:
            raise LabError(f"guest agent {command} failed: {reply['error'].get('desc', reply['error'])}")
        return reply.get("return")

    def sync(self) -> None:
        # Replies of an earlier, interrupted client may still be queued: skip to ours.
        token = random.randrange(1, 2**31)
        self.send("guest-sync", {"id": token})
        while self.receive().get("return") != token:
            pass


@contextlib.contextmanager
def _channel(node: VmNode, timeout: float) -> Iterator[_Channel]:
    path = node.guest_agent_socket
    if not path.exists():
        raise LabError(f"node {node.index} has no guest agent socket ({path}): is the VM running?")
    # QEMU serves one client per socket: callers on this host take turns, one exchange each.
    with (node.run_dir / "qga.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            channel = _Channel(sock)
            channel.sync()
            yield channel
        except (OSError, TimeoutError) as exc:
            raise LabError(f"talking to node {node.index}'s guest agent at {path} failed: {exc}") from exc
        finally:
            sock.close()


def guest_ready(node: VmNode) -> bool:
    try:
        with _channel(node, timeout=3.0) as channel:
            channel.call("guest-ping")
        return True
    except LabError:
        return False


def run(node: VmNode, argv: Sequence[str], timeout: float = 120.0, stdin: bytes | None = None) -> ExecResult:
    """Run ``argv`` on ``node`` (looked up on the guest's PATH) and wait for it."""
    if not argv:
        raise LabError("lab exec: no command given (usage: lab exec N -- CMD [ARG...])")
    arguments: dict[str, Any] = {"path": "/usr/bin/env", "arg": list(argv), "capture-output": True}
    if stdin is not None:
        arguments["input-data"] = base64.b64encode(stdin).decode()
    deadline = time.monotonic() + timeout
    # The guest agent is held for one exchange at a time, not for the whole command: a long
    # command (a bench in the guest) must not keep every other caller on this node waiting.
    with _channel(node, timeout=min(timeout, 30.0)) as channel:
        pid = channel.call("guest-exec", arguments)["pid"]
    while True:
        with _channel(node, timeout=min(timeout, 30.0)) as channel:
            status = channel.call("guest-exec-status", {"pid": pid})
        if status.get("exited"):
            break
        if time.monotonic() > deadline:
            raise LabError(f"`{' '.join(argv)}` on node {node.index} still runs after {timeout:.0f}s")
        time.sleep(0.1)  # polling the guest; the loop's condition decides
    decode = base64.b64decode
    return ExecResult(
        returncode=int(status.get("exitcode", -status.get("signal", 1))),
        stdout=decode(status.get("out-data", "")).decode(errors="replace"),
        stderr=decode(status.get("err-data", "")).decode(errors="replace"),
    )


def check_output(node: VmNode, argv: Sequence[str], timeout: float = 120.0) -> str:
    """``argv``'s stdout on ``node``; LabError with its stderr if it fails."""
    result = run(node, argv, timeout)
    if result.returncode != 0:
        stderr = result.stderr.strip()[-800:]
        raise LabError(f"`{' '.join(argv)}` on node {node.index} exited {result.returncode}: {stderr}")
    return result.stdout
