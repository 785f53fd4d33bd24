"""The application service behind the HTTP routes: storage and (later) screening, no HTTP and no Ray.

The Serve ingress builds one :class:`VigilService` per replica in ``__init__``; the plain-uvicorn
baseline and the unit tests build one the same way. Every method opens its own database
transaction, so a failure rolls back everything that method wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from vigil import metrics
from vigil.db import repository as repo
from vigil.db.engine import BatchDb, create_engine, session_factory, session_scope
from vigil.db.models import (
    Account,
    Alert,
    BlacklistEntry,
    Decision,
    Device,
    FraudLabel,
    KycSubmission,
    Merchant,
    ReviewCase,
    Transaction,
    User,
)
from vigil.decision.policy import DecisionPolicy
from vigil.decision.screening import ScoringGraph, Screener
from vigil.errors import NotFound, ServiceUnavailable, UnknownReference, VigilError
from vigil.events.outbox import EventPublisher
from vigil.identity.service import Identity
from vigil.identity.tokens import TokenSigner, load_token_secret
from vigil.infra.batching import MicroBatcher, QueueFull
from vigil.schemas import (
    AccountCreate,
    BlacklistCreate,
    DeviceCreate,
    MerchantCreate,
    ScreenResult,
    TransactionCreate,
    UserCreate,
)
from vigil.state.blacklists import POLL_S, Revision, RevisionWatch, stored_revision

log = logging.getLogger(__name__)

#: ``verify(selfie_frames, document, today) -> result dict`` (a KYC deployment or a local engine).
KycVerify = Callable[[list[bytes], bytes, date], Awaitable[dict[str, Any]]]
#: The KYC pipeline's verdict -> users.kyc_status.
KYC_STATUS = {"approved": "verified", "review": "review", "rejected": "rejected"}


class VigilService:
    """Owns one async engine; :meth:`close` disposes of it.

    Screening is attached with :meth:`attach_screening` (the ingress does it with the Ray graph,
    the baseline with the in-process one); concurrent :meth:`screen` calls are micro-batched.
    """

    def __init__(self, database_url: str, *, engine: AsyncEngine | None = None) -> None:
        self.database_url = database_url
        self.engine = engine or create_engine(database_url)
        self.sessions = session_factory(self.engine)
        self.screener: Screener | None = None
        #: Called after an analyst's label is committed (the graph subscribes).
        self.label_listeners: list[Callable[[FraudLabel, Transaction], Awaitable[None]]] = []
        self._kyc: KycVerify | None = None
        self._batcher: MicroBatcher[tuple[TransactionCreate, datetime], ScreenResult | VigilError] | None = (
            None
        )
        self._blacklist_watch: RevisionWatch | None = None
        #: Components that cannot work, with the reason: ``/readyz`` reports them (503).
        self.unready: dict[str, str] = {}
        self._identity: Identity | None = None

    def attach_identity(self, identity: Identity) -> None:
        """Use ``identity`` for customer sign-in and tokens (tests attach one with cheap hashing)."""
        self._identity = identity

    @property
    def identity(self) -> Identity:
        """Customer identity: the attached one, else one built on first use from the settings
        (the token secret of ``VIGIL_TOKEN_SECRET``, or the one kept in ``<VIGIL_HOME>/token-secret``)."""
        if self._identity is None:
            from vigil.settings import get_settings

            settings = get_settings()
            configured = settings.token_secret.get_secret_value() if settings.token_secret else None
            self._identity = Identity(
                self.sessions, TokenSigner(load_token_secret(settings.home, configured))
            )
        return self._identity

    def attach_screening(
        self,
        graph: ScoringGraph,
        policy: DecisionPolicy,
        events: EventPublisher | None = None,
        *,
        max_batch: int = 64,
        max_wait_s: float = 0.003,
        max_concurrency: int = 4,
        max_queue: int = 0,
        overlap_at: int = 0,
        blacklist_poll_s: float = POLL_S,
    ) -> None:
        self.screener = Screener(BatchDb(self.database_url, self.engine), graph, policy, events)
        # changes committed by other processes (another Ingress replica, a script)
        self._blacklist_watch = RevisionWatch(self.sessions, graph.blacklist_changed, blacklist_poll_s)
        metrics.track_gc_pauses()
        self._batcher = MicroBatcher(
            self.screener.screen,
            max_batch=max_batch,
            max_wait_s=max_wait_s,
            max_concurrency=max_concurrency,
            max_queue=max_queue,
            overlap_at=overlap_at,
        )
        self.start_background()

    def start_background(self) -> None:
        """Start the event outbox relay and the blacklist watch on the running event loop;
        without one (a constructor called before the server's loop runs) the first screening call
        starts them."""
        if self.screener is not None and self.screener.relay is not None:
            self.screener.relay.start()
        if self._blacklist_watch is not None:
            self._blacklist_watch.start()

    def configure_screening(
        self,
        policy: DecisionPolicy,
        *,
        max_batch: int | None = None,
        max_wait_s: float | None = None,
        max_concurrency: int | None = None,
        max_queue: int | None = None,
        overlap_at: int | None = None,
    ) -> None:
        """Swap the policy and any given batch limit of the attached screening, in place."""
        if self.screener is None or self._batcher is None:
            raise RuntimeError("attach_screening() first")
        batcher = self._batcher
        self.screener.policy = policy
        batcher.configure(
            max_batch=batcher.max_batch if max_batch is None else max_batch,
            max_wait_s=batcher.max_wait_s if max_wait_s is None else max_wait_s,
            max_concurrency=batcher.max_concurrency if max_concurrency is None else max_concurrency,
            max_queue=batcher.max_queue if max_queue is None else max_queue,
            overlap_at=batcher.overlap_at if overlap_at is None else overlap_at,
        )

    async def screen(self, data: TransactionCreate, *, received_at: datetime) -> ScreenResult:
        """Screen one transaction (batched with concurrent callers); raises the item's VigilError."""
        if self._batcher is None:
            raise ServiceUnavailable("transaction screening is not running on this server")
        self.start_background()
        try:
            result = await self._batcher.submit((data, received_at))
        except QueueFull:
            # Nothing was stored or counted: the client's retry (same idempotency key) is safe.
            metrics.REJECTED.labels("overloaded").inc()
            error = ServiceUnavailable(
                "screening is at capacity: retry shortly with the same idempotency key"
            )
            error.headers = {"Retry-After": "1"}
            raise error from None
        if isinstance(result, VigilError):
            raise result
        return result

    async def close(self) -> None:
        if self._blacklist_watch is not None:
            await self._blacklist_watch.close()
        if self.screener is not None and self.screener.relay is not None:
            await self.screener.relay.close()
        close = getattr(self.screener.graph, "close", None) if self.screener else None
        if close is not None:
            await close()
        if self.screener is not None:
            self.screener.db.close()
        await self.engine.dispose()

    async def ping_database(self) -> str | None:
        """Return the schema revision (None if the schema was never migrated)."""
        async with self.engine.connect() as conn:
            has_table = await conn.run_sync(lambda c: sa.inspect(c).has_table("alembic_version"))
            if not has_table:
                return None
            return (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalar()

    async def create_user(self, data: UserCreate) -> User:
        async with session_scope(self.sessions) as session:
            return await repo.create_user(session, data=data)

    async def create_account(self, data: AccountCreate) -> Account:
        async with session_scope(self.sessions) as session:
            return await repo.create_account(session, data=data)

    async def create_merchant(self, data: MerchantCreate) -> Merchant:
        async with session_scope(self.sessions) as session:
            return await repo.create_merchant(session, data=data)

    async def create_device(self, data: DeviceCreate) -> Device:
        async with session_scope(self.sessions) as session:
            return await repo.create_device(session, data=data)

    async def get_transaction(self, transaction_id: int) -> Transaction:
        async with self.sessions() as session:
            return await repo.get_transaction(session, transaction_id=transaction_id)

    async def user_transactions(self, user_id: int, *, since: datetime, limit: int) -> Sequence[Transaction]:
        async with self.sessions() as session:
            return await repo.user_transactions(session, user_id=user_id, since=since, limit=limit)

    async def add_blacklist_entry(self, data: BlacklistCreate, *, added_by: str) -> BlacklistEntry:
        """Store the entry; the graph's rules and features match it from the next batch on."""
        async with session_scope(self.sessions) as session:
            entry = await repo.add_blacklist_entry(session, data=data, added_by=added_by)
            revision = await stored_revision(session)
        self._blacklist_changed(revision)
        return entry

    async def blacklist(
        self, *, active: bool | None = None, after_id: int = 0, limit: int | None = None
    ) -> Sequence[BlacklistEntry]:
        async with self.sessions() as session:
            return await repo.blacklist_entries(session, active=active, after_id=after_id, limit=limit)

    async def remove_blacklist_entry(self, entry_id: int, *, removed_by: str) -> BlacklistEntry:
        """End an entry now; the graph stops matching it from the next batch on (a transaction
        dated before the end still matches: the blacklist is read at event time)."""
        async with session_scope(self.sessions) as session:
            entry = await repo.remove_blacklist_entry(session, entry_id=entry_id, removed_by=removed_by)
            revision = await stored_revision(session)
        self._blacklist_changed(revision)
        return entry

    def _blacklist_changed(self, revision: Revision) -> None:
        """After a committed change: batches screened from now on carry its revision, and every
        copy behind it reloads (:mod:`vigil.state.blacklists`)."""
        if self.screener is not None:
            self.screener.graph.blacklist_changed(revision)

    async def transaction_with_decision(self, transaction_id: int) -> tuple[Transaction, Decision | None]:
        async with self.sessions() as session:
            tx = await repo.get_transaction(session, transaction_id=transaction_id)
            return tx, await session.get(Decision, transaction_id)

    async def review_cases(self, *, status: str | None, limit: int, after_id: int) -> Sequence[Any]:
        async with self.sessions() as session:
            return await repo.review_cases(session, status=status, limit=limit, after_id=after_id)

    async def claim_case(self, case_id: int, *, analyst: str) -> ReviewCase:
        async with session_scope(self.sessions) as session:
            return await repo.claim_case(session, case_id=case_id, analyst=analyst, now=datetime.now(UTC))

    async def resolve_case(
        self, case_id: int, *, analyst: str, resolution: str, notes: str | None
    ) -> ReviewCase:
        async with session_scope(self.sessions) as session:
            case, label = await repo.resolve_case(
                session,
                case_id=case_id,
                analyst=analyst,
                resolution=resolution,
                notes=notes,
                now=datetime.now(UTC),
            )
            tx = await session.get(Transaction, case.transaction_id)
        assert tx is not None
        metrics.REVIEW_RESOLVED.labels(resolution).inc()
        for listener in self.label_listeners:
            await listener(label, tx)
        return case

    def attach_kyc(self, verify: KycVerify) -> None:
        """``verify(selfie_frames, document, today)`` returns the KYC result as a dict (see
        ``kyc.pipeline.KycResult``) and raises :class:`InvalidRequest` for an unusable image."""
        self._kyc = verify

    async def submit_kyc(self, user_id: int, *, selfie_frames: list[bytes], document: bytes) -> KycSubmission:
        """Verify, then store the submission and the user's new KYC status and risk level at once."""
        if self._kyc is None:
            raise ServiceUnavailable("KYC verification is not running on this server")
        if "kyc" in self.unready:
            raise ServiceUnavailable(f"KYC verification cannot run: {self.unready['kyc']}")
        async with self.sessions() as session:
            if await session.get(User, user_id) is None:
                raise UnknownReference(f"user {user_id} does not exist")
        result = await self._kyc(selfie_frames, document, datetime.now(UTC).date())
        now = datetime.now(UTC)
        fields = result.get("document_fields") or {}
        submission = KycSubmission(
            user_id=user_id,
            status=str(result["status"]),
            risk_level=str(result["risk_level"]),
            document_type=result.get("document_type"),
            document_number=(fields.get("document_number") or None),
            face_match_score=result.get("face_match_score"),
            liveness_score=result.get("liveness_score"),
            reason_codes=list(result.get("reason_codes") or []),
            details={k: v for k, v in result.items() if k not in {"status", "risk_level", "reason_codes"}},
            created_at=now,
            decided_at=now,
        )
        async with session_scope(self.sessions) as session:
            session.add(submission)
            user = await session.get(User, user_id)
            if user is None:
                raise UnknownReference(f"user {user_id} does not exist")
            user.kyc_status = KYC_STATUS.get(submission.status, "review")
            user.kyc_risk_level = submission.risk_level
            await session.flush()
        if self.screener is not None:
            try:
                await self.screener.graph.set_kyc_risk(user_id, submission.risk_level)
            except Exception:  # committed already; the velocity shard re-reads it when rebuilt
                log.warning("user %s: new KYC risk not pushed to velocity state", user_id, exc_info=True)
        return submission

    async def kyc_submission(self, submission_id: int) -> KycSubmission:
        async with self.sessions() as session:
            found = await session.get(KycSubmission, submission_id)
        if found is None:
            raise NotFound(f"KYC submission {submission_id} does not exist")
        return found

    async def alerts(self, *, user_id: int | None, after_id: int, limit: int) -> Sequence[Alert]:
        async with self.sessions() as session:
            return await repo.alerts_for(session, user_id=user_id, after_id=after_id, limit=limit)
