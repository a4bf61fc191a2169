"""Sample web service for the lab: every request burns WORK_MS of CPU, counted for Prometheus.

Stdlib only. GET / does the work; GET /metrics is Prometheus text; GET /healthz says ok.
The ``service`` label is not set here: Prometheus adds it from the Swarm service name.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORK_MS = float(os.environ.get("WORK_MS", "2"))
PORT = int(os.environ.get("PORT", "8000"))


class Counters:
    """Request counters shared by the handler threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = {}
        self.in_flight = 0
        self.busy_seconds = 0.0

    def begin(self) -> None:
        with self.lock:
            self.in_flight += 1

    def end(self, path: str, code: int, seconds: float) -> None:
        with self.lock:
            self.in_flight -= 1
            self.requests[(path, code)] = self.requests.get((path, code), 0) + 1
            self.busy_seconds += seconds

    def exposition(self) -> str:
        with self.lock:
            lines = [
                "# HELP http_requests_total Requests served, by path and status code.",
                "# TYPE http_requests_total counter",
            ]
            lines += [
                f'http_requests_total{{path="{path}",code="{code}"}} {count}'
                for (path, code), count in sorted(self.requests.items())
            ]
            lines += [
                "# HELP http_requests_in_flight Requests being served right now.",
                "# TYPE http_requests_in_flight gauge",
                f"http_requests_in_flight {self.in_flight}",
                "# HELP http_request_work_seconds_total Time spent serving work requests.",
                "# TYPE http_request_work_seconds_total counter",
                f"http_request_work_seconds_total {self.busy_seconds:.6f}",
            ]
        return "\n".join(lines) + "\n"


COUNTERS = Counters()


def burn_cpu(milliseconds: float) -> None:
    # Busy work, not sleep: the replica's capacity is bounded the way a real CPU-bound app is.
    end = time.perf_counter() + milliseconds / 1000.0
    n = 0
    while time.perf_counter() < end:
        n += 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "lab-web/1"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self.reply(200, COUNTERS.exposition(), "text/plain; version=0.0.4")
            return
        if path == "/healthz":
            self.reply(200, "ok\n")
            return
        started = time.perf_counter()
        COUNTERS.begin()
        code = 200
        try:
            burn_cpu(WORK_MS)
            self.reply(200, f"hello from {socket.gethostname()}\n")
        except OSError:
            code = 499  # client went away
        finally:
            COUNTERS.end("/", code, time.perf_counter() - started)

    def reply(self, code: int, body: str, content_type: str = "text/plain") -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request would drown the task log


def main() -> None:
    server = ThreadingHTTPServer(("0.0.0.0", PORT), Handler)
    server.daemon_threads = True
    print(f"lab web on :{PORT}, WORK_MS={WORK_MS}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
