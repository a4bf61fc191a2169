"""Time in tests: one clock a test moves by hand, and one poll with a deadline.

``wait_until`` (blocking callers) and ``eventually`` (coroutines) are the same poll: call the
condition until it returns something truthy and return that; after ``deadline`` seconds of real
time fail with an AssertionError naming ``what`` and the last value seen. The pause between
calls only paces the poll: the condition decides, never the sleep.
"""

from __future__ import annotations

import asyncio
import heapq
import inspect
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class FakeClock:
    """Time that moves only when a test sets ``now`` or calls ``advance``; ``sleep`` waits for that."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + delay, next(self._order), future))
        await future

    @property
    def sleepers(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def waiting_until(self, deadline: float) -> bool:
        """True when some sleeper wakes exactly at ``deadline`` (e.g. a debounce timer just set)."""
        return any(math.isclose(t, deadline) and not f.done() for t, _, f in self._sleepers)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while self._sleepers and self._sleepers[0][0] <= self.now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)


def _timed_out(deadline: float, what: str, last: object) -> AssertionError:
    return AssertionError(f"timed out after {deadline:g}s waiting for {what} (last: {last!r})")


def wait_until(condition: Callable[[], T | None], *, deadline: float, what: str, every: float = 0.2) -> T:
    """The first truthy value of ``condition()``, polled every ``every`` seconds."""
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise _timed_out(deadline, what, value)
        time.sleep(every)  # pacing the poll; the condition decides


async def eventually(
    condition: Callable[[], T | Awaitable[T | None] | None],
    *,
    deadline: float = 5.0,
    what: str = "condition",
    every: float = 0.0,
) -> T:
    """The first truthy value of ``condition()`` (awaited if it returns an awaitable).

    ``every=0`` only yields to the event loop between calls (fakes that move in-process).
    """
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value  # type: ignore[return-value]
        if loop.time() > end:
            raise _timed_out(deadline, what, value)
        await asyncio.sleep(every)  # pacing the poll; the condition decides
