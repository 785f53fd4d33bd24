"""The event outbox: every committed decision's events reach the bus at least once.

A screened batch is stored with one :class:`~vigil.db.models.EventOutbox` row naming its
transactions, in the batch's own database transaction. Right after the commit the screener
publishes the batch's events in one round trip (:meth:`EventRelay.publish`); once they are
published the row is forgotten (the relay deletes such rows together, once per ``interval_s``).

If the bus is down, or the process dies between the commit and the publish, the row stays. Once
it is due (``grace_s`` after the commit) a relay claims it (an atomic conditional update, so two
replicas never republish the same row at once), rebuilds the events from the stored decisions,
publishes them and deletes the row. A failed try records the error and pushes the row's next try
back, doubling from ``grace_s`` up to ``max_backoff_s``; a relay that dies holding a claim leaves
the row due again ``lease_s`` later.

The answer waits for the bus at most ``publish_timeout_s``. Consumers therefore see every event
at least once, in rare cases twice (a process that dies after publishing and before forgetting
its row, or a publish that lands after its timeout); every event carries its transaction id.
The in-process bus of the embedded default keeps the same contract for its own process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Protocol

from sqlalchemy.orm import Session

from vigil import metrics
from vigil.db import repository as repo
from vigil.db.engine import BatchDb
from vigil.events.bus import STREAM_ALERTS, STREAM_DECISIONS, STREAM_REVIEW
from vigil.infra.periodic import Periodic
from vigil.schemas import ScreenResult

log = logging.getLogger("vigil.events.outbox")

#: Outcomes that raise an alert, and those that open a review case (and go to the review stream).
ALERT_OUTCOMES: Final = frozenset({"review", "block"})
REVIEW_OUTCOMES: Final = frozenset({"review"})


class EventPublisher(Protocol):
    async def publish_many(self, entries: Sequence[tuple[str, dict[str, Any]]]) -> list[str]: ...


def events_of(result: ScreenResult) -> list[tuple[str, dict[str, Any]]]:
    """The ``(stream, payload)`` events of one decision: every decision goes to the decision
    stream, review and block outcomes to the alert stream, review outcomes to the review stream."""
    payload = result.model_dump(mode="json")
    out = [(STREAM_DECISIONS, payload)]
    if result.outcome in ALERT_OUTCOMES:
        out.append((STREAM_ALERTS, payload))
    if result.outcome in REVIEW_OUTCOMES:
        out.append((STREAM_REVIEW, payload))
    return out


def _sweep(
    session: Session, *, forget: Sequence[int], now: datetime, lease_until: datetime, limit: int
) -> tuple[list[tuple[int, list[int], int]], list[tuple[str, Any]], int]:
    """One write: forget published rows, claim due ones and read their decisions, count the rest."""
    repo.outbox_delete(session, ids=forget)
    claimed = repo.outbox_claim(session, now=now, lease_until=lease_until, limit=limit)
    decisions = repo.decisions_by_ids(session, ids=[i for _, ids, _ in claimed for i in ids])
    return claimed, decisions, repo.outbox_size(session)


class EventRelay:
    """Publishes screened batches' events and republishes what the outbox still owes.

    One per screener. :meth:`start` runs the relay loop on the running event loop (called again
    it does nothing); :meth:`close` stops it and forgets what was published meanwhile.
    """

    def __init__(
        self,
        db: BatchDb,
        bus: EventPublisher,
        *,
        grace_s: float = 10.0,
        interval_s: float = 1.0,
        lease_s: float = 60.0,
        max_backoff_s: float = 300.0,
        claim_rows: int = 50,
        publish_timeout_s: float = 1.0,
    ) -> None:
        if not 0 < grace_s <= max_backoff_s:
            raise ValueError("need 0 < grace_s <= max_backoff_s")
        self.db = db
        self.bus = bus
        self.grace_s = grace_s
        self.interval_s = interval_s
        self.lease_s = lease_s
        self.max_backoff_s = max_backoff_s
        self.claim_rows = claim_rows
        #: How long an answer waits for the bus (a hung Redis must not hang screening); after it,
        #: the events are left to the relay (possibly a duplicate if the publish still lands).
        self.publish_timeout_s = publish_timeout_s
        self._published: list[int] = []
        self._periodic = Periodic("vigil-outbox-relay", self.sweep, interval_s, self._sweep_failed)

    def due_at(self, now: datetime | None = None) -> datetime:
        """When a relay may republish a row written now if its own publish never happened."""
        return (now or datetime.now(UTC)) + timedelta(seconds=self.grace_s)

    async def publish(self, results: Sequence[ScreenResult], outbox_ids: Sequence[int]) -> bool:
        """Publish the events of freshly committed decisions (one round trip, waiting at most
        ``publish_timeout_s``); on success their outbox rows are forgotten at the next sweep. A
        failure or timeout is counted and logged, not raised: the decisions are stored and the
        relay publishes their events later."""
        entries = [event for result in results for event in events_of(result)]
        exc = await self._send(entries, self.publish_timeout_s)
        if exc is not None:
            log.warning(
                "publishing %d events failed (%s: %s); the outbox relay retries them from %s on",
                len(entries),
                type(exc).__name__,
                exc,
                self.due_at().isoformat(timespec="seconds"),
            )
            return False
        self._published.extend(outbox_ids)
        return True

    async def _send(self, entries: list[tuple[str, dict[str, Any]]], timeout_s: float) -> Exception | None:
        """Publish ``entries`` within ``timeout_s``; the failure (counted), or None."""
        try:
            if entries:
                await asyncio.wait_for(self.bus.publish_many(entries), timeout_s)
        except Exception as exc:  # TimeoutError included
            metrics.EVENTS_FAILED.inc(len(entries))
            return exc
        return None

    def start(self) -> None:
        """Sweep every ``interval_s`` on the running event loop (no loop: later, at the next call)."""
        self._periodic.start()

    @staticmethod
    def _sweep_failed(exc: Exception) -> None:
        # database unreachable: the rows wait, the next sweep retries
        log.warning("outbox sweep failed", exc_info=exc)

    async def sweep(self, now: datetime | None = None) -> int:
        """Forget published rows, then republish every due row (``claim_rows`` at a time) until
        none is due or the bus fails; returns how many events were republished."""
        now = now or datetime.now(UTC)
        republished = 0
        while True:
            forget, self._published = self._published, []
            try:
                claimed, decisions, size = await self.db.write(
                    _sweep,
                    forget=forget,
                    now=now,
                    lease_until=now + timedelta(seconds=self.lease_s),
                    limit=self.claim_rows,
                )
            except BaseException:
                self._published[:0] = forget  # not deleted: try again next time
                raise
            metrics.OUTBOX_ROWS.set(size)
            if not claimed:
                return republished
            results = [ScreenResult.of(key, decision, replayed=False) for key, decision in decisions]
            entries = [event for result in results for event in events_of(result)]
            ids = [row_id for row_id, _, _ in claimed]
            exc = await self._send(entries, self.publish_timeout_s * 10)
            if exc is not None:
                attempts = max(a for _, _, a in claimed) + 1
                backoff = min(self.max_backoff_s, self.grace_s * 2 ** min(attempts, 20))
                await self.db.write(
                    repo.outbox_failed,
                    ids=ids,
                    error=f"{type(exc).__name__}: {exc}",
                    due_at=now + timedelta(seconds=backoff),
                )
                log.warning(
                    "republishing %d outbox rows failed (%s); next try in %.0f s", len(ids), exc, backoff
                )
                return republished
            metrics.EVENTS_REPUBLISHED.inc(len(entries))
            republished += len(entries)
            self._published.extend(ids)  # the next round forgets them, and claims what is left

    async def close(self) -> None:
        """Stop the loop; forget the rows already published (best effort: a row left behind is
        republished by the next relay, a duplicate rather than a loss)."""
        await self._periodic.stop()
        if self._published:
            try:
                await self.db.write(repo.outbox_delete, ids=self._published)
                self._published = []
            except Exception:
                log.warning("could not forget %d published outbox rows", len(self._published), exc_info=True)
