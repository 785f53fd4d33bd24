"""ScorerCircuit: a scorer call with a deadline, skipped while a missed call is in flight."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vigil.decision.circuit import ScorerCircuit


class FakeScorer:
    """Calls that answer at once, fail at once, or wait until released (``hold``)."""

    def __init__(self) -> None:
        self.calls = 0
        self.mode = "answer"
        self.held: list[asyncio.Future[str]] = []

    async def __call__(self) -> str:
        self.calls += 1
        if self.mode == "fail":
            raise RuntimeError("replica died")
        if self.mode == "hold":
            future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
            self.held.append(future)
            return await future
        return f"scores-{self.calls}"

    def release(self) -> None:
        for future in self.held:
            future.set_result("late")
        self.held.clear()


async def _call(circuit: ScorerCircuit, scorer: FakeScorer) -> Any:
    return await circuit.result(circuit.send(scorer))


def test_an_answer_within_the_deadline_is_returned() -> None:
    async def run() -> None:
        circuit, scorer = ScorerCircuit("anomaly", 1.0), FakeScorer()
        assert await _call(circuit, scorer) == "scores-1"
        assert not circuit.down

    asyncio.run(run())


def test_a_missed_deadline_skips_the_scorer_until_its_probe_returns() -> None:
    async def run() -> None:
        circuit, scorer = ScorerCircuit("anomaly", 0.05), FakeScorer()
        scorer.mode = "hold"
        assert await _call(circuit, scorer) is None  # the deadline passed
        assert circuit.down and scorer.calls == 1
        # while the probe is in flight, later batches do not call the scorer (and do not wait)
        for _ in range(3):
            assert circuit.send(scorer) is None
            assert await circuit.result(None) is None
        assert scorer.calls == 1
        scorer.release()  # the successor answers the probe
        await asyncio.sleep(0)
        scorer.mode = "answer"
        assert await _call(circuit, scorer) == "scores-2"
        assert not circuit.down

    asyncio.run(run())


def test_a_failed_call_is_decided_without_and_the_next_batch_tries_again() -> None:
    async def run() -> None:
        circuit, scorer = ScorerCircuit("supervised", 1.0), FakeScorer()
        scorer.mode = "fail"
        assert await _call(circuit, scorer) is None
        assert circuit.down
        assert await _call(circuit, scorer) is None  # the probe had finished: called again
        assert scorer.calls == 2
        scorer.mode = "answer"
        assert await _call(circuit, scorer) == "scores-3"
        assert not circuit.down

    asyncio.run(run())


def test_a_probe_that_keeps_failing_late_leaves_no_unretrieved_exception(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def run() -> None:
        circuit = ScorerCircuit("anomaly", 0.01)

        async def late_failure() -> str:
            await asyncio.sleep(0.05)
            raise RuntimeError("still no replica")

        assert await circuit.result(circuit.send(late_failure)) is None
        await asyncio.sleep(0.1)  # the probe fails after its batch was decided without it

    asyncio.run(run())
    assert "exception was never retrieved" not in caplog.text


def test_cancelling_the_batch_cancels_the_call() -> None:
    async def run() -> None:
        circuit, scorer = ScorerCircuit("anomaly", 10.0), FakeScorer()
        scorer.mode = "hold"
        sent = circuit.send(scorer)
        assert sent is not None
        waiting = asyncio.ensure_future(circuit.result(sent))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert sent.cancelled()
        assert not circuit.down  # a cancelled batch says nothing about the scorer

    asyncio.run(run())
