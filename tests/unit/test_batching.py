from __future__ import annotations

import asyncio

import pytest

from vigil.infra.batching import MicroBatcher


async def test_concurrent_callers_share_batches_and_get_their_own_results() -> None:
    seen: list[list[int]] = []

    async def double(items: list[int]) -> list[int]:
        seen.append(items)
        await asyncio.sleep(0.001)
        return [2 * i for i in items]

    batcher = MicroBatcher(double, max_batch=8, max_wait_s=0.01)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(20)))
    assert results == [2 * i for i in range(20)]
    assert sorted(i for batch in seen for i in batch) == list(range(20))
    assert max(len(b) for b in seen) == 8 and len(seen) < 20


async def test_an_error_for_one_item_reaches_only_its_caller() -> None:
    async def handler(items: list[int]) -> list[int | BaseException]:
        return [ValueError(f"bad {i}") if i % 2 else i for i in items]

    batcher = MicroBatcher(handler, max_batch=4, max_wait_s=0.01)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(4)), return_exceptions=True)
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad 1"


async def test_a_failing_handler_fails_every_caller_of_the_batch_and_the_batcher_survives() -> None:
    calls = 0

    async def handler(items: list[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("downstream died")
        return items

    batcher = MicroBatcher(handler, max_batch=4, max_wait_s=0.01)
    first = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in first)
    assert await batcher.submit(7) == 7


def test_bad_settings_are_refused() -> None:
    async def handler(items: list[int]) -> list[int]:
        return items

    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(handler, max_batch=0)


async def test_configure_changes_limits_in_place_and_keeps_serving() -> None:
    seen: list[int] = []

    async def handler(items: list[int]) -> list[int]:
        seen.append(len(items))
        return items

    batcher = MicroBatcher(handler, max_batch=8, max_wait_s=0.01, max_concurrency=2)
    assert await asyncio.gather(*(batcher.submit(i) for i in range(8))) == list(range(8))
    batcher.configure(max_batch=2, max_wait_s=0.01, max_concurrency=1, max_queue=0)
    seen.clear()
    assert await asyncio.gather(*(batcher.submit(i) for i in range(6))) == list(range(6))
    assert max(seen) <= 2
    with pytest.raises(ValueError, match="max_batch"):
        batcher.configure(max_batch=0, max_wait_s=0.01, max_concurrency=1, max_queue=0)


async def test_batches_grow_with_load_on_a_busy_loop() -> None:
    """Items that queue while every slot is busy go out together in the next batch, even when
    the loop is so busy that waiting one loop turn per item would overrun ``max_wait_s``."""
    import time

    seen: list[list[int]] = []

    async def busy(items: list[int]) -> list[int]:
        seen.append(items)
        time.sleep(0.01)  # noqa: ASYNC251 - CPU work on the loop, as scoring does
        await asyncio.sleep(0.005)
        return items

    batcher = MicroBatcher(busy, max_batch=64, max_wait_s=0.001, max_concurrency=1)
    first = asyncio.ensure_future(batcher.submit(0))
    await asyncio.sleep(0.002)  # the first batch (just item 0) is in flight now
    rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 41)]
    assert await asyncio.gather(first, *rest) == list(range(41))
    assert seen[0] == [0]
    assert seen[1] == list(range(1, 41))  # all queued items in one batch, in arrival order


async def test_a_full_queue_refuses_at_once_and_admits_again_when_it_drains() -> None:
    from vigil.infra.batching import QueueFull

    release = asyncio.Event()

    async def slow(items: list[int]) -> list[int]:
        await release.wait()
        return items

    batcher = MicroBatcher(slow, max_batch=1, max_wait_s=0, max_concurrency=1, max_queue=2)
    waiting = [asyncio.ensure_future(batcher.submit(0))]
    await asyncio.sleep(0.01)  # item 0 is in flight, holding the one slot
    waiting += [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0.01)  # 1 and 2 wait in the queue
    with pytest.raises(QueueFull):
        await batcher.submit(99)
    release.set()
    assert await asyncio.gather(*waiting) == [0, 1, 2]
    assert await batcher.submit(3) == 3
    with pytest.raises(ValueError, match="max_queue"):
        batcher.configure(max_batch=1, max_wait_s=0, max_concurrency=1, max_queue=-1)


@pytest.mark.parametrize("overlap_at", [0, 4])
async def test_overlap_at_holds_a_second_batch_back_until_a_whole_batch_waits(overlap_at: int) -> None:
    release = asyncio.Event()
    seen: list[list[int]] = []

    async def gated(items: list[int]) -> list[int]:
        seen.append(items)
        await release.wait()
        return items

    batcher = MicroBatcher(gated, max_batch=4, max_wait_s=0, max_concurrency=2, overlap_at=overlap_at)
    calls = [asyncio.ensure_future(batcher.submit(0))]
    await asyncio.sleep(0.01)  # batch [0] is in flight
    calls += [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2, 3)]
    await asyncio.sleep(0.01)
    if overlap_at:
        assert seen == [[0]]  # three waiting, fewer than overlap_at: held back
        calls.append(asyncio.ensure_future(batcher.submit(4)))
        await asyncio.sleep(0.01)
        assert seen == [[0], [1, 2, 3, 4]]  # a whole batch waits: it goes out beside the first
    else:
        assert seen[0] == [0] and len(seen) == 2  # a free slot takes what waits at once
        calls.append(asyncio.ensure_future(batcher.submit(4)))
    release.set()
    assert await asyncio.gather(*calls) == [0, 1, 2, 3, 4]


async def test_a_held_back_batch_goes_out_when_the_one_in_flight_finishes() -> None:
    release = asyncio.Event()
    seen: list[list[int]] = []

    async def gated(items: list[int]) -> list[int]:
        seen.append(items)
        if len(seen) == 1:
            await release.wait()
        return items

    batcher = MicroBatcher(gated, max_batch=8, max_wait_s=0, max_concurrency=2, overlap_at=8)
    calls = [asyncio.ensure_future(batcher.submit(0))]
    await asyncio.sleep(0.01)
    calls += [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2)]
    await asyncio.sleep(0.01)
    assert seen == [[0]]
    release.set()
    assert await asyncio.gather(*calls) == [0, 1, 2]
    assert seen == [[0], [1, 2]]
    with pytest.raises(ValueError, match="overlap_at"):
        batcher.configure(max_batch=8, max_wait_s=0, max_concurrency=2, max_queue=0, overlap_at=-1)
