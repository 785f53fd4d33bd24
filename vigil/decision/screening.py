"""Screening a batch of transactions: idempotency, references, the scoring graph, the decision
policy, the durable record, then events. No Ray and no HTTP here.

The *graph* (features → rules ∥ supervised ∥ anomaly) is behind the :class:`ScoringGraph`
protocol: on Ray it is Serve deployments and velocity actors (``deployments/graph.py``); in the
uvicorn baseline and the unit tests it runs in-process (:class:`vigil.decision.local_graph.LocalGraph`).
Everything around it is this module, shared by both, so the benchmark compares like with like.

Order of effects for each transaction (an acknowledged decision is never lost):
1. a stored decision for the idempotency key is returned as it is (``replayed: true``);
2. features are read and velocity state updated (keyed by the idempotency key: a retry is
   never counted twice);
3. the transaction, its decision, its review case and alert, and the outbox row of its events
   are committed in one database transaction;
4. only then are the events published (:mod:`vigil.events.outbox`: retried from the outbox if that
   fails) and the answer sent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy.exc import IntegrityError

from vigil import metrics
from vigil.db import repository as repo
from vigil.db.engine import BatchDb
from vigil.db.models import Decision, Transaction
from vigil.decision.policy import DecisionPolicy
from vigil.decision.rules import RuleHit, RuleOutcome
from vigil.errors import ServiceUnavailable, UnknownReference, VigilError
from vigil.events.outbox import EventPublisher, EventRelay
from vigil.features.events import TransactionEvent
from vigil.schemas import ScreenResult, TransactionCreate
from vigil.state.blacklists import Revision

log = logging.getLogger("vigil.decision.screening")

Row = dict[str, float]


def acted_on(hits: list[RuleHit]) -> list[RuleHit]:
    """The hits the policy and the metrics read: rules that fired (review or block, shadow ones
    included) or failed. A rule that found nothing is left out of :class:`Scored`."""
    return [hit for hit in hits if hit.fired or hit.outcome == "error"]


@dataclass(slots=True)
class Scored:
    """What the graph computed for one transaction (``None`` score: that scorer was unavailable).

    Only what the decision needs: on Ray it travels from RuleScreen to the Ingress once per
    transaction (the feature row and the hits of rules that found nothing used to travel too,
    many times the bytes, read by nobody)."""

    rule_hits: list[RuleHit] = field(default_factory=list)  # acted_on(): fired or failed
    fraud_score: float | None = None
    contributions: list[tuple[str, float]] | None = None
    anomaly_score: float | None = None
    model_version: str | None = None
    rules_version: str | None = None
    # The supervised model's own (review, block) cut-offs, recorded with its version.
    fraud_thresholds: tuple[float, float] | None = None

    def wire(self) -> ScoredWire:
        """Plain values for the answer to another process (see :meth:`TransactionEvent.wire`)."""
        return (
            [(h.rule_id, h.outcome, h.reason, h.code, h.value, h.shadow) for h in self.rule_hits],
            self.fraud_score,
            self.contributions,
            self.anomaly_score,
            self.model_version,
            self.rules_version,
            self.fraud_thresholds,
        )

    @classmethod
    def from_wire(cls, wire: ScoredWire) -> Scored:
        hits, fraud, contributions, anomaly, model_version, rules_version, thresholds = wire
        return cls(
            [RuleHit(*h) for h in hits],
            fraud,
            contributions,
            anomaly,
            model_version,
            rules_version,
            thresholds,
        )


ScoredWire = tuple[
    list[tuple[str, RuleOutcome, str, str | None, float | None, bool]],
    float | None,
    list[tuple[str, float]] | None,
    float | None,
    str | None,
    str | None,
    tuple[float, float] | None,
]


class ScoringGraph(Protocol):
    """Features, rules and both scorers for a batch; one result per event, in order."""

    async def score(
        self, keys: list[str], events: list[TransactionEvent], txs: list[TransactionCreate]
    ) -> list[Scored]: ...

    async def set_kyc_risk(self, user_id: int, risk_level: str) -> None:
        """The user's KYC risk level changed (already committed): features use it from now on."""
        ...

    def blacklist_changed(self, revision: Revision) -> None:
        """The stored blacklist is at ``revision`` (a change was committed, or the watch read it):
        batches sent from now on are screened at it or later (:mod:`vigil.state.blacklists`)."""
        ...


def to_event(data: TransactionCreate, received_at: datetime) -> TransactionEvent:
    # Not yet stored, so no database id: 0 (see actors/velocity.py on ordering ties).
    return TransactionEvent(
        transaction_id=0,
        user_id=data.user_id,
        created_at=data.created_at or received_at,
        amount=float(data.amount),
        merchant_id=data.merchant_id,
        device_id=data.device_id,
        ip=data.ip,
        channel=data.channel,
        country=data.country,
        lat=data.lat,
        lon=data.lon,
    )


def _observe(s: Scored, decision: Decision) -> None:
    metrics.DECISIONS.labels(decision.outcome).inc()
    if decision.outcome == "review":
        metrics.REVIEW_CREATED.inc()
    if s.fraud_score is not None:
        metrics.FRAUD_SCORE.observe(s.fraud_score)
    if s.anomaly_score is not None:
        metrics.ANOMALY_SCORE.observe(s.anomaly_score)
    for hit in s.rule_hits:
        if hit.fired or hit.outcome == "error":
            metrics.RULE_HITS.labels(hit.rule_id, hit.outcome, "shadow" if hit.shadow else "enforce").inc()


def _same_request(stored: Transaction, data: TransactionCreate) -> bool:
    return (
        stored.user_id == data.user_id
        and stored.account_id == data.account_id
        and stored.merchant_id == data.merchant_id
        and stored.amount == data.amount
        and stored.currency == data.currency
    )


class Screener:
    """Screens batches; one per ingress replica (or per baseline process)."""

    def __init__(
        self,
        db: BatchDb,
        graph: ScoringGraph,
        policy: DecisionPolicy,
        events: EventPublisher | None = None,
    ) -> None:
        self.db = db
        self.graph = graph
        self.policy = policy
        # One batch in the graph at a time. With the batcher's max_concurrency above 1, batches
        # overlap by stage (one's lookup or write beside another's graph call), never inside
        # the graph, whose deployments would otherwise split their CPU between two batches.
        self._graph_turn = asyncio.Lock()
        #: Publishes each batch's events after its commit; None: no bus, no events, no outbox.
        self.relay = EventRelay(db, events) if events is not None else None

    async def screen(
        self, batch: Sequence[tuple[TransactionCreate, datetime]]
    ) -> list[ScreenResult | VigilError]:
        started = time.perf_counter()
        metrics.BATCH_SIZE.observe(len(batch))
        results: list[ScreenResult | VigilError | None] = [None] * len(batch)
        first_of_key: dict[str, int] = {}
        for index, (data, _) in enumerate(batch):
            first_of_key.setdefault(data.idempotency_key, index)
        stored, missing = await self.db.read(
            repo.screening_lookup, keys=list(first_of_key), items=[data for data, _ in batch]
        )
        todo: list[int] = []
        for index, (data, _) in enumerate(batch):
            key = data.idempotency_key
            if key in stored:
                tx, decision = stored[key]
                results[index] = self._replayed(tx, decision, data)
            elif index in missing:
                results[index] = UnknownReference(missing[index])
            elif first_of_key[key] == index:
                todo.append(index)
        metrics.STAGE_SECONDS.labels("lookup").observe(time.perf_counter() - started)
        if todo:
            await self._decide(batch, todo, results, started)
        # a key repeated inside the batch gets the first occurrence's answer
        for index, (data, _) in enumerate(batch):
            if results[index] is None:
                first = results[first_of_key[data.idempotency_key]]
                results[index] = (
                    first.model_copy(update={"replayed": True}) if isinstance(first, ScreenResult) else first
                )
        for result in results:
            if isinstance(result, VigilError):
                metrics.REJECTED.labels(result.code).inc()
            elif isinstance(result, ScreenResult) and result.replayed:
                metrics.REPLAYS.inc()
        metrics.STAGE_SECONDS.labels("total").observe(time.perf_counter() - started)
        return [r for r in results if r is not None]

    def _replayed(
        self, tx: Transaction, decision: Decision | None, data: TransactionCreate
    ) -> ScreenResult | VigilError:
        if not _same_request(tx, data):
            from vigil.errors import DuplicateIdempotencyKey

            assert tx.transaction_id is not None
            return DuplicateIdempotencyKey(data.idempotency_key, tx.transaction_id)
        if decision is None:  # stored through the plain record route, never screened
            from vigil.errors import Conflict

            return Conflict(f"transaction {tx.transaction_id} was recorded without screening")
        return ScreenResult.of(tx.idempotency_key, decision, replayed=True)

    async def _decide(
        self,
        batch: Sequence[tuple[TransactionCreate, datetime]],
        todo: list[int],
        results: list[ScreenResult | VigilError | None],
        started: float,
    ) -> None:
        items = [batch[i] for i in todo]
        events = [to_event(data, received) for data, received in items]
        keys = [data.idempotency_key for data, _ in items]
        try:
            async with self._graph_turn:
                graph_started = time.perf_counter()
                scored = await self.graph.score(keys, events, [data for data, _ in items])
        except Exception as exc:
            # A replica or actor died mid-call. Nothing was stored; velocity state is keyed by the
            # idempotency key, so the client's retry is answered without counting twice.
            log.warning("scoring graph failed for a batch of %d: %s", len(items), exc)
            metrics.GRAPH_FAILED.inc()
            error = ServiceUnavailable("scoring is briefly unavailable: retry with the same idempotency key")
            error.headers = {"Retry-After": "1"}
            for index in todo:
                results[index] = error
            return
        metrics.STAGE_SECONDS.labels("graph").observe(time.perf_counter() - graph_started)
        if any(s.fraud_score is None for s in scored):
            metrics.SCORER_UNAVAILABLE.labels("supervised").inc()
        if any(s.anomaly_score is None for s in scored):
            metrics.SCORER_UNAVAILABLE.labels("anomaly").inc()
        now = datetime.now(UTC)
        latency_ms = (time.perf_counter() - started) * 1000.0
        decided: list[tuple[TransactionCreate, datetime, Decision]] = []
        for (data, received), s in zip(items, scored, strict=True):
            verdict = self.policy.decide(
                s.rule_hits,
                s.fraud_score,
                s.anomaly_score,
                s.contributions,
                amount=float(data.amount),
                model_thresholds=s.fraud_thresholds,
            )
            decided.append(
                (
                    data,
                    received,
                    Decision(
                        transaction_id=0,
                        outcome=verdict.outcome,
                        fraud_score=s.fraud_score,
                        anomaly_score=s.anomaly_score,
                        rule_hits=[hit.as_dict() for hit in (*verdict.rule_hits, *verdict.shadow_hits)],
                        reason_codes=verdict.reason_codes,
                        model_version=s.model_version,
                        rules_version=s.rules_version,
                        latency_ms=round(latency_ms, 3),
                        decided_at=now,
                    ),
                )
            )
        for s, (_, _, decision) in zip(scored, decided, strict=True):
            _observe(s, decision)
        persist_started = time.perf_counter()
        outbox_ids: list[int] = []
        try:
            outbox_ids += await self._store(decided)
            for index, (data, _, decision) in zip(todo, decided, strict=True):
                results[index] = ScreenResult.of(data.idempotency_key, decision, replayed=False)
        except IntegrityError:
            # Another replica stored one of these keys between our check and insert: store
            # one by one, answering the losers from what the winner stored.
            for index, item in zip(todo, decided, strict=True):
                results[index] = await self._store_one(item, outbox_ids)
        metrics.STAGE_SECONDS.labels("persist").observe(time.perf_counter() - persist_started)
        if self.relay is not None:
            publish_started = time.perf_counter()
            fresh = [r for i in todo if isinstance(r := results[i], ScreenResult) and not r.replayed]
            await self.relay.publish(fresh, outbox_ids)
            metrics.STAGE_SECONDS.labels("publish").observe(time.perf_counter() - publish_started)

    async def _store(self, items: list[tuple[TransactionCreate, datetime, Decision]]) -> list[int]:
        """Commit the decisions (with the outbox row of their events when there is a bus)."""
        if self.relay is None:
            await self.db.write(repo.record_decided, items=items)
            return []
        _, outbox_id = await self.db.write(
            repo.record_decided_with_outbox, items=items, due_at=self.relay.due_at()
        )
        return [outbox_id]

    async def _store_one(
        self, item: tuple[TransactionCreate, datetime, Decision], outbox_ids: list[int]
    ) -> ScreenResult | VigilError:
        data = item[0]
        try:
            outbox_ids += await self._store([item])
            return ScreenResult.of(data.idempotency_key, item[2], replayed=False)
        except IntegrityError:
            stored = await self.db.read(repo.decisions_by_keys, keys=[data.idempotency_key])
            if data.idempotency_key not in stored:
                raise
            stored_tx, stored_decision = stored[data.idempotency_key]
            return self._replayed(stored_tx, stored_decision, data)
