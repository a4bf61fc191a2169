"""Open-loop load generator for the lab (stdlib only).

Sends RATE requests per second to http://<ip>:PORT/ for every IP of ``tasks.TARGET``
(re-resolved every second, so new replicas get traffic), round robin. Open loop: a
request is due at its scheduled time whether or not earlier ones finished; at most
MAX_IN_FLIGHT run at once and the excess is counted as dropped, so an overloaded
target shows up as errors/drops rather than as a silently lower offered rate. Stops
after DURATION seconds. Own counters at :8001/metrics.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread

RATE = float(os.environ.get("RATE", "0"))
TARGET = os.environ.get("TARGET", "web")
PORT = int(os.environ.get("PORT", "8000"))
DURATION = float(os.environ.get("DURATION", "3600"))
MAX_IN_FLIGHT = int(os.environ.get("MAX_IN_FLIGHT", "256"))
TIMEOUT = float(os.environ.get("TIMEOUT", "5"))
METRICS_PORT = int(os.environ.get("METRICS_PORT", "8001"))

OUTCOMES = {"ok": 0, "error": 0, "dropped": 0}
STATE = {"in_flight": 0, "targets": 0}


class MetricsHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        lines = ["# TYPE loadgen_requests_total counter"]
        lines += [f'loadgen_requests_total{{outcome="{k}"}} {v}' for k, v in OUTCOMES.items()]
        lines += [
            "# TYPE loadgen_offered_rate gauge",
            f"loadgen_offered_rate {RATE}",
            "# TYPE loadgen_in_flight gauge",
            f"loadgen_in_flight {STATE['in_flight']}",
            "# TYPE loadgen_targets gauge",
            f"loadgen_targets {STATE['targets']}",
        ]
        body = ("\n".join(lines) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


async def resolve_forever(addresses: list[str]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        try:
            infos = await loop.getaddrinfo(f"tasks.{TARGET}", PORT, type=socket.SOCK_STREAM)
            addresses[:] = sorted({str(info[4][0]) for info in infos})
        except OSError:
            # A DNS hiccup keeps the last known replicas; NXDOMAIN (no replica) is also
            # an OSError, and those addresses then fail fast and count as errors.
            pass
        STATE["targets"] = len(addresses)
        await asyncio.sleep(1.0)


async def one_request(address: str) -> None:
    STATE["in_flight"] += 1
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(address, PORT), TIMEOUT)
        try:
            writer.write(f"GET / HTTP/1.1\r\nHost: {TARGET}\r\nConnection: close\r\n\r\n".encode())
            status = await asyncio.wait_for(reader.readline(), TIMEOUT)
            await asyncio.wait_for(reader.read(), TIMEOUT)
        finally:
            writer.close()
        OUTCOMES["ok" if b" 200 " in status else "error"] += 1
    except (TimeoutError, OSError):
        OUTCOMES["error"] += 1
    finally:
        STATE["in_flight"] -= 1


async def generate() -> None:
    addresses: list[str] = []
    resolver = asyncio.create_task(resolve_forever(addresses))
    tasks: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    sent = 0
    rr = itertools.count()
    while RATE > 0 and time.monotonic() - started < DURATION:
        # Catch up on every request due by now: the schedule, not the replies, sets the pace.
        due = int((time.monotonic() - started) * RATE)
        while sent < due:
            sent += 1
            if not addresses or STATE["in_flight"] >= MAX_IN_FLIGHT:
                OUTCOMES["dropped"] += 1
                continue
            task = asyncio.create_task(one_request(addresses[next(rr) % len(addresses)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.sleep(min(0.01, 1.0 / RATE))
    if RATE <= 0:
        await asyncio.sleep(DURATION)
    resolver.cancel()


def main() -> None:
    server = ThreadingHTTPServer(("0.0.0.0", METRICS_PORT), MetricsHandler)
    Thread(target=server.serve_forever, daemon=True).start()
    print(f"loadgen: {RATE} req/s to tasks.{TARGET}:{PORT} for {DURATION}s", flush=True)
    asyncio.run(generate())
    print(f"loadgen done: {OUTCOMES}", flush=True)


if __name__ == "__main__":
    main()
