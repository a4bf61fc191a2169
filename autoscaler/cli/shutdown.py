"""One deadline for everything ``run`` does after SIGTERM.

Docker sends SIGKILL ``stop_grace_period`` (10 s by default) after SIGTERM. Each step of
the shutdown used to get its own grace (the pass, the failover monitor), and the closes
and the lease release none at all, so with Prometheus hanging the process lived 12.7 s
and was killed mid-way. Now the pass, the failover monitor, the lease release, the
listener and the clients share one deadline, ``loop.shutdown_grace`` after the signal
(5 s by default); a step still running at the deadline is abandoned, said in the log, and
makes the exit status 1. Threads stuck in a blocking client (the Prometheus client's
pool, in a hung request) are waited for until the same deadline, then left behind.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable

log = logging.getLogger("autoscaler.run")

# The part of the grace kept for the steps after the pass (release the lease, close the
# clients): the pass is cancelled this much before the deadline.
CLEANUP_RESERVE = 1.0


class Shutdown:
    """The deadline after a stop signal, and what was abandoned at it."""

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.deadline: float | None = None  # time.monotonic() by which everything must end
        self.abandoned: list[str] = []

    def begin(self) -> None:
        if self.deadline is None:
            self.deadline = time.monotonic() + self.grace

    def for_the_pass(self) -> float:
        """Seconds the in-flight pass may still take: the grace less the cleanup's reserve."""
        return max(0.0, self.remaining() - min(CLEANUP_RESERVE, self.grace / 2))

    def remaining(self) -> float:
        """Seconds left before the deadline (the whole grace while no stop was asked)."""
        if self.deadline is None:
            return self.grace
        return max(0.0, self.deadline - time.monotonic())

    def abandon(self, what: str) -> None:
        self.abandoned.append(what)
        log.warning(
            "%s did not finish within the %.1f s stop grace; abandoned",
            what,
            self.grace,
            extra={"event": "abandoned", "what": what},
        )

    async def bounded(self, what: str, step: Awaitable[object]) -> None:
        """Await ``step`` until the deadline; past it, cancel it and record ``what``."""
        try:
            async with asyncio.timeout(self.remaining()):
                await step
        except TimeoutError:
            self.abandon(what)

    def leave_stuck_threads(self, code: int) -> int:
        """``code``, after waiting for other threads until the deadline.

        Python joins every executor thread at exit, however long its blocking call takes;
        a thread still running at the deadline is in a request nobody answers, so the
        process ends here without it (``os._exit`` after flushing the logs).
        """
        others = [t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon]
        for thread in others:
            thread.join(self.remaining())
        stuck = [t.name for t in others if t.is_alive()]
        if not stuck:
            return code
        self.abandon(f"threads {', '.join(stuck)}")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 1)
