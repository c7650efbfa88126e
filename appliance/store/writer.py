"""Writes off the event loop: one thread, with its own connection, does every write in turn.

A backup or another program holding the database makes a write wait up to the busy timeout.
On the daemon's event loop that wait would freeze every stream, the health checks and the
governor; here only the write waits. Reads stay on the caller's connection (WAL lets them run
beside a writer).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils

from appliance.store.db import connect

T = TypeVar("T")


class StoreWriter:
    def __init__(self, path: Path) -> None:
        self.db = sqlite_utils.Database(connect(path))
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gemba-store")

    async def run(self, write: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`write(db, *args, **kwargs)` on the writer thread; its result or its exception."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, partial(write, self.db, *args, **kwargs))

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self.db.conn.close()
