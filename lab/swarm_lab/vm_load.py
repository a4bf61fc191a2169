"""The VM lab's load generator: a host process aimed at a node's published port.

``--connections N`` keeps N TCP connections open (reopened when the server closes one), which
is what IPVS counts as ActiveConn; ``--rps R`` adds R short HTTP requests per second. It
stops by itself after ``--duration`` seconds. Run by ``lab load --backend vm``; traffic goes
only to the lab bridge's VM nodes.
"""

from __future__ import annotations

import argparse
import contextlib
import selectors
import socket
import time


def _open(host: str, port: int) -> socket.socket | None:
    try:
        sock = socket.create_connection((host, port), timeout=5)
    except OSError:
        return None
    sock.setblocking(False)
    return sock


def _request(host: str, port: int) -> None:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(f"GET / HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        while sock.recv(65536):
            pass


def run(host: str, port: int, connections: int, rps: float, duration: float) -> None:
    selector = selectors.DefaultSelector()
    held: set[socket.socket] = set()
    deadline = time.monotonic() + duration
    next_request = time.monotonic()
    while time.monotonic() < deadline:
        while len(held) < connections:
            sock = _open(host, port)
            if sock is None:
                break
            held.add(sock)
            selector.register(sock, selectors.EVENT_READ)
        if rps > 0 and time.monotonic() >= next_request:
            _request(host, port)
            next_request += 1.0 / rps
        timeout = max(0.0, next_request - time.monotonic()) if rps > 0 else 0.5
        for key, _ in selector.select(timeout=min(timeout, 0.5)):
            ready = key.fileobj
            if not isinstance(ready, socket.socket):
                continue
            try:
                data = ready.recv(65536)
            except OSError:
                data = b""
            if not data:  # the server closed it: reopen on the next turn
                selector.unregister(ready)
                ready.close()
                held.discard(ready)
    for sock in held:
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, default=0)
    parser.add_argument("--rps", type=float, default=0.0)
    parser.add_argument("--duration", type=float, default=600.0)
    args = parser.parse_args()
    run(args.host, args.port, args.connections, args.rps, args.duration)


if __name__ == "__main__":
    main()
