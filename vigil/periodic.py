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

    def start(self) -> None:
        """Run on the running event loop; called again while running it does nothing, and with no
        loop running (a constructor called before the server's loop) it waits for a later call."""
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._task = loop.create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while True:
            try:
                await self._tick()
            except Exception as exc:
                self._on_error(exc)
            await asyncio.sleep(self.every_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
