"""A coroutine run every few seconds on the event loop of the process that serves (the outbox
relay, the blacklist watch)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable


class Periodic:
    """Awaits ``tick()`` every ``every_s`` seconds between :meth:`start` and :meth:`stop`.

    A tick that raises goes to ``on_error`` and the next tick comes anyway (a database or bus
    that is down now may be back at the next one).
    """

    def __init__(
        self,
        name: str,
        tick: Callable[[], Awaitable[object]],
        every_s: float,
        on_error: Callable[[Exception], None],
    ) -> None:
        if every_s <= 0:
            raise ValueError(f"every_s must be positive, not {every_s}")
        self.name = name
        self.every_s = every_s
        self._tick = tick
        self._on_error = on_error
        self._task: asyncio.Task[None] | None = None
        self._ticking = False
        self._stopping = False

    def start(self) -> None:
        """Run on the running event loop; called again while running it does nothing, and with no
        loop running (a constructor called before the server's loop) it waits for a later call."""
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._stopping = False
        self._task = loop.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while not self._stopping:
            self._ticking = True
            try:
                await self._tick()
            except Exception as exc:
                self._on_error(exc)
            finally:
                self._ticking = False
            if not self._stopping:
                await asyncio.sleep(self.every_s)

    async def stop(self, *, grace_s: float = 5.0) -> None:
        """Stop ticking. A tick under way may finish first (for up to ``grace_s``): one cancelled
        in the middle of a query leaves the database driver's worker thread (aiosqlite's) calling
        back into an event loop that may be closed by then."""
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True
        try:
            if self._ticking:
                with contextlib.suppress(Exception):  # TimeoutError included: then it is cancelled
                    await asyncio.wait_for(asyncio.shield(task), grace_s)
        finally:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
