"""In-process micro-batching: many concurrent callers, one call per batch downstream.

Every hop of the scoring graph costs CPU per call, not per row (an IsolationForest call costs
about the same for 1 row or 32), so the ingress gathers concurrent requests into one batch and
calls each downstream stage once per batch. The uvicorn baseline uses the same class, so the
benchmark compares the graph with an equally batched single process.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class QueueFull(Exception):
    """Refused at the door: ``max_queue`` items are already waiting for a batch."""


class MicroBatcher(Generic[In, Out]):
    """Collect items for at most ``max_wait_s`` (or until ``max_batch``), then run ``handler`` once.

    ``handler`` gets the items in arrival order and returns one result per item; an exception
    in the result list is raised to that item's caller only, an exception raised by ``handler``
    to every caller of the batch. Batches run concurrently up to ``max_concurrency``.

    ``max_queue`` (0 = unbounded) is admission control: with that many items already waiting,
    :meth:`submit` raises :class:`QueueFull` at once. Under a load above capacity the queue
    would otherwise grow without bound and every caller would wait seconds; with it, what is
    admitted waits at most about ``max_queue / throughput`` and the rest is told to retry.

    ``overlap_at`` (0 = off) holds back every batch beyond the first in flight until that many
    items wait: a load the downstream keeps up with runs one batch at a time (small batches,
    no stage contention), and only a backlog of a whole batch gets a second one beside it.
    """

    def __init__(
        self,
        handler: Callable[[list[In]], Awaitable[Sequence[Out | BaseException]]],
        *,
        max_batch: int = 64,
        max_wait_s: float = 0.003,
        max_concurrency: int = 4,
        max_queue: int = 0,
        overlap_at: int = 0,
    ) -> None:
        self.handler = handler
        self._queue: asyncio.Queue[tuple[In, asyncio.Future[Out]]] | None = None
        self._backlog = asyncio.Event()  # set when overlap_at items wait
        self.configure(
            max_batch=max_batch,
            max_wait_s=max_wait_s,
            max_concurrency=max_concurrency,
            max_queue=max_queue,
            overlap_at=overlap_at,
        )
        self._worker: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.items = 0

    def configure(
        self, *, max_batch: int, max_wait_s: float, max_concurrency: int, max_queue: int, overlap_at: int = 0
    ) -> None:
        """Change the limits in place (a Serve ``reconfigure``); batches in flight finish as they are."""
        if max_batch < 1 or max_wait_s < 0 or max_concurrency < 1 or max_queue < 0 or overlap_at < 0:
            raise ValueError(
                "need max_batch >= 1, max_wait_s >= 0, max_concurrency >= 1, max_queue >= 0, overlap_at >= 0"
            )
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self.overlap_at = overlap_at
        self._backlog.set()  # a held-back batch looks again under the new limit
        if getattr(self, "max_concurrency", None) != max_concurrency:
            self.max_concurrency = max_concurrency
            self._slots = asyncio.Semaphore(max_concurrency)

    async def submit(self, item: In) -> Out:
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self.max_queue and self._queue.qsize() >= self.max_queue:
            raise QueueFull(f"{self._queue.qsize()} items already waiting (max_queue {self.max_queue})")
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run())
        future: asyncio.Future[Out] = loop.create_future()
        await self._queue.put((item, future))
        if self.overlap_at and self._queue.qsize() >= self.overlap_at:
            self._backlog.set()
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        queue = self._queue
        loop = asyncio.get_running_loop()
        while True:
            # A free slot first, then the batch: while every slot is busy, arrivals queue up
            # and the next batch takes all of them (batches grow with load).
            slots = self._slots  # released by the dispatch even if configure() swaps it meanwhile
            await slots.acquire()
            try:
                await self._hold_back(queue)
                batch = [await queue.get()]
            except BaseException:
                slots.release()
                raise
            deadline = loop.time() + self.max_wait_s
            while len(batch) < self.max_batch:
                # What is queued already is taken at once: one loop turn per item would let a
                # busy loop run past the deadline after one or two items.
                try:
                    batch.append(queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                timeout = deadline - loop.time()
                if timeout <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), timeout))
                except TimeoutError:
                    break
            task = loop.create_task(self._dispatch(batch, slots))
            self._inflight.add(task)  # the loop keeps only weak references to tasks
            task.add_done_callback(self._inflight.discard)

    async def _hold_back(self, queue: asyncio.Queue[tuple[In, asyncio.Future[Out]]]) -> None:
        """With ``overlap_at``, wait while a batch is in flight and fewer than that many wait."""
        while self.overlap_at and queue.qsize() < self.overlap_at:
            running = {task for task in self._inflight if not task.done()}
            if not running:
                return
            self._backlog.clear()
            backlog = asyncio.ensure_future(self._backlog.wait())
            try:
                await asyncio.wait({backlog, *running}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                backlog.cancel()

    async def _dispatch(self, batch: list[tuple[In, asyncio.Future[Out]]], slots: asyncio.Semaphore) -> None:
        try:
            self.batches += 1
            self.items += len(batch)
            try:
                results = await self.handler([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"handler returned {len(results)} results for {len(batch)} items")
            except BaseException as exc:  # every caller of the batch must hear about it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, BaseException):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            slots.release()
