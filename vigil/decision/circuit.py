"""A scorer call with a deadline; while the scorer is down, one probe call at a time.

RuleScreen calls both scorers once per micro-batch. When a scorer's replica dies, Serve holds
the calls until a new replica has started and loaded its model; without a deadline the whole
graph waited for it: no answers for as long as a replica takes to start, the clients' requests
meanwhile refused with 503 and retried; with the deadline the outage is about one deadline
(docs/serving.md). The policy already knows how to decide without a score (:mod:`vigil.decision.policy`: rules
and the other scorer decide; without a fraud score, amounts from ``unavailable_review_amount``
go to review), so a batch whose scorer has not answered within the deadline is decided without
it, and the decision records no score for it.

After a miss (a timeout or an error) the scorer counts as down: the call that missed stays in
flight as the probe (Serve delivers it to the new replica), later batches do not call the
scorer at all and are decided without it, and once the probe has finished the next batch calls
the scorer again with the full deadline. A scorer that answers slowly but surely is never
skipped for more than one probe's time.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

log = logging.getLogger("vigil.decision.circuit")

T = TypeVar("T")


class ScorerCircuit:
    """Calls one scorer with a deadline and skips it while a missed call is still in flight."""

    def __init__(self, name: str, deadline_s: float) -> None:
        self.name = name
        self.deadline_s = deadline_s
        self._probe: asyncio.Future[Any] | None = None

    @property
    def down(self) -> bool:
        """A call missed its deadline or failed, and no call has succeeded since."""
        return self._probe is not None

    def send(self, call: Callable[[], Awaitable[T]]) -> asyncio.Future[T] | None:
        """Start ``call()`` now, or return None (the scorer is down and its probe in flight)."""
        if self._probe is not None and not self._probe.done():
            return None
        return asyncio.ensure_future(call())

    async def result(self, sent: asyncio.Future[T] | None) -> T | None:
        """The call's result, or None when it was not sent, missed the deadline or failed."""
        if sent is None:
            return None
        try:
            value = await asyncio.wait_for(asyncio.shield(sent), self.deadline_s)
        except asyncio.CancelledError:
            sent.cancel()
            raise
        except Exception as exc:  # TimeoutError included
            self._miss(sent, exc)
            return None
        if self._probe is not None:
            log.warning("%s scorer answers again: scoring with it", self.name)
            self._probe = None
        return value

    def _miss(self, sent: asyncio.Future[Any], exc: BaseException) -> None:
        if self._probe is None:
            reason = f"no answer within {self.deadline_s:g} s" if isinstance(exc, TimeoutError) else repr(exc)
            log.warning("%s scorer down (%s): deciding without it until it answers", self.name, reason)
        sent.add_done_callback(_retrieve)  # the probe's late outcome is read by nobody else
        self._probe = sent


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
