"""As many answers at once as the engine has slots, the rest wait in arrival order, up to a bound.

`asyncio.Semaphore` wakes waiters first-in, first-out (Python 3.11.1 on); the bound turns a
burst into a clear "busy, retry after" instead of an ever-growing queue.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from appliance.errors import Busy, GembaError, NotReady


def _busy(waiting: int, retry_after_s: int, paused: bool) -> GembaError:
    if paused:  # not the load: the governor holds new answers until the box cools down
        error: GembaError = NotReady(
            f"the appliance is paused by its governor and {waiting} requests already wait",
            f"try again in about {retry_after_s} s; `gemba status` shows why it paused")
    else:
        error = Busy(f"the appliance is busy: {waiting} requests are already waiting",
                     f"try again in about {retry_after_s} s")
    error.retry_after_s = retry_after_s
    return error


class Scheduler:
    def __init__(self, max_queue: int, retry_after_s: int = 5, slots: int = 1) -> None:
        self.max_queue = max_queue
        self.retry_after_s = retry_after_s
        self.slots = slots
        self.waiting = 0
        self._slot = asyncio.Semaphore(slots)
        self._open = asyncio.Event()
        self._open.set()

    def hold(self) -> None:
        """New answers wait (the governor paused the box); those running continue."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    @property
    def holding(self) -> bool:
        return not self._open.is_set()

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if (self._slot.locked() or self.holding) and self.waiting >= self.max_queue:
            raise _busy(self.waiting, self.retry_after_s, self.holding)
        self.waiting += 1
        try:
            await self._open.wait()
            await self._slot.acquire()
        finally:
            self.waiting -= 1
        try:
            yield
        finally:
            self._slot.release()
