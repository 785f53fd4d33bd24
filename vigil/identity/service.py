"""Customer sign-up, sign-in, refresh, sign-out and access-token checks, over the database.

Sessions: every sign-in opens a :class:`~vigil.db.models.CustomerSession` for the device it came
from; its access tokens (:mod:`vigil.identity.tokens`) name it, and its refresh tokens rotate
within it. Signing out revokes the session; so does presenting a refresh token that was already
rotated (someone holds a copy: RFC 9700's refresh token reuse detection), and every token of the
session stops working at once. A session lasts ``session_ttl`` from sign-in, however often it is
refreshed; then the customer signs in again.

Device binding: the device's fingerprint (the app's, sent with each sign-in) names a
:class:`~vigil.db.models.Device`; the first sign-in on it registers it to the customer
(:class:`~vigil.db.models.CustomerDevice`). A sign-in that registers a device when the customer
already had one raises a ``new_device`` :class:`~vigil.db.models.Alert`, in the same database
transaction (the customer's alert stream carries it). A fingerprint is not a secret, so the
alert is a signal for the customer, not a barrier.

Failed sign-ins are counted in ``sign_in_attempts`` and throttled per address and per account
(:mod:`vigil.identity.throttle`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from vigil.db.engine import session_scope
from vigil.db.models import (
    Alert,
    CustomerCredential,
    CustomerDevice,
    CustomerSession,
    Device,
    RefreshToken,
    SignInAttempt,
    User,
)
from vigil.errors import Conflict, VigilError
from vigil.identity.passwords import PasswordHashing
from vigil.identity.schemas import SignIn, SignUp, TokenPair
from vigil.identity.throttle import (
    AccountLocked,
    SignInLimits,
    TooManyAttempts,
    account_locked_until,
    ip_throttled_until,
)
from vigil.identity.tokens import InvalidToken, TokenSigner, new_refresh_token, refresh_digest

log = logging.getLogger("vigil.identity")


class InvalidCredentials(VigilError):
    """401: the e-mail address and password do not match (which of them is wrong is not said)."""

    status = 401
    code = "invalid_credentials"

    def __init__(self) -> None:
        super().__init__("e-mail address or password is wrong")


@dataclass(frozen=True, slots=True)
class CustomerPrincipal:
    """A customer authenticated by an access token: every customer route reads its user from
    here and nowhere else."""

    user_id: int
    session_id: int
    device_id: int

    @property
    def name(self) -> str:
        """For logs and rate-limit buckets (like an API key's principal name)."""
        return f"customer:{self.user_id}"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class Identity:
    """Customer identity over ``sessions``. ``clock`` gives the current UTC time (tests move it)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        signer: TokenSigner,
        *,
        hashing: PasswordHashing | None = None,
        limits: SignInLimits | None = None,
        session_ttl: timedelta = timedelta(days=30),
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.sessions = sessions
        self.signer = signer
        self.hashing = hashing or PasswordHashing()
        self.limits = limits or SignInLimits()
        self.session_ttl = session_ttl
        self.clock = clock

    # ------------------------------------------------------------------------------------------
    # sign-up, sign-in
    # ------------------------------------------------------------------------------------------

    async def sign_up(self, data: SignUp, *, ip: str) -> TokenPair:
        """Create the customer (a :class:`User` and its credentials) and sign them in on the
        device they signed up with. An address already taken is a 409 and counts as a failure
        of ``ip`` (the per-IP throttle applies to sign-ups too)."""
        now = self.clock()
        await self._check_ip(ip, now)
        password_hash = await self.hashing.hash_async(data.password)
        try:
            async with session_scope(self.sessions) as s:
                taken = await self._credential(s, data.email)
                if taken is None:
                    fields = data.model_dump(
                        include={"full_name", "birth_date", "country", "home_lat", "home_lon"}
                    )
                    user = User(**fields, created_at=now)  # the id comes from the database
                    s.add(user)
                    await s.flush()
                    s.add(
                        CustomerCredential(
                            user_id=user.user_id,
                            email=data.email,
                            password_hash=password_hash,
                            created_at=now,
                            password_changed_at=now,
                        )
                    )
                    await s.flush()
                    device_id, new = await self._bind_device(
                        s, user.user_id, data.device_fingerprint, data.device_name, data.device_os, now
                    )
                    return await self._open_session(s, user.user_id, device_id, now, new_device=new)
        except IntegrityError:  # the same address signed up at the same moment
            pass
        await self._record(data.email, ip, succeeded=False, now=now)
        raise Conflict("an account with this e-mail address exists: sign in instead")

    async def sign_in(self, data: SignIn, *, ip: str) -> TokenPair:
        """Check the password (throttled; see :mod:`vigil.identity.throttle`), bind the device,
        open a session. Raises :class:`InvalidCredentials` (401), :class:`AccountLocked` (423) or
        :class:`TooManyAttempts` (429)."""
        now = self.clock()
        await self._check_ip(ip, now)
        await self._check_account(data.email, now)
        async with self.sessions() as s:
            credential = await self._credential(s, data.email)
        stored = credential.password_hash if credential is not None else None
        # The same work whether or not the account exists (a dummy hash stands in).
        if not await self.hashing.verify_async(stored, data.password) or credential is None:
            await self._record(data.email, ip, succeeded=False, now=now)
            raise InvalidCredentials()
        assert stored is not None
        rehashed = await self.hashing.hash_async(data.password) if self.hashing.needs_rehash(stored) else None
        async with session_scope(self.sessions) as s:
            s.add(SignInAttempt(email=data.email, ip=ip, succeeded=True, created_at=now))
            if rehashed is not None:
                await s.execute(
                    sa.update(CustomerCredential)
                    .where(col(CustomerCredential.user_id) == credential.user_id)
                    .values(password_hash=rehashed)
                )
            device_id, new = await self._bind_device(
                s, credential.user_id, data.device_fingerprint, data.device_name, data.device_os, now
            )
            return await self._open_session(s, credential.user_id, device_id, now, new_device=new)

    # ------------------------------------------------------------------------------------------
    # refresh, sign-out, access tokens
    # ------------------------------------------------------------------------------------------

    async def refresh(self, token: str) -> TokenPair:
        """Trade a refresh token for a new pair; the old token stops working. A token that was
        already traded revokes its whole session (both holders are signed out). 401 otherwise."""
        now = self.clock()
        digest = refresh_digest(token)
        refused: str
        async with session_scope(self.sessions) as s:
            found = (
                await s.execute(
                    select(RefreshToken, CustomerSession)
                    .join(CustomerSession, col(CustomerSession.id) == col(RefreshToken.session_id))
                    .where(col(RefreshToken.token_hash) == digest)
                )
            ).first()
            if found is None:
                refused = "unknown refresh token"
            else:
                row, session = found
                assert session.id is not None
                if session.revoked_at is not None:
                    refused = "this session has ended: sign in again"
                elif row.rotated_at is not None:
                    await self._revoke(s, [session.id], "refresh_reuse", now)
                    log.warning("user %s: a rotated refresh token was reused", session.user_id)
                    refused = "refresh token already used: the session is revoked, sign in again"
                elif row.expires_at <= now or session.expires_at <= now:
                    refused = "this session has expired: sign in again"
                else:
                    taken = cast(
                        CursorResult[Any],
                        await s.execute(
                            sa.update(RefreshToken)
                            .where(col(RefreshToken.id) == row.id, col(RefreshToken.rotated_at).is_(None))
                            .values(rotated_at=now)
                        ),
                    )
                    if taken.rowcount == 1:
                        return await self._issue(s, session, now, new_device=False)
                    # a concurrent refresh with the same token won: that is a reuse too
                    await self._revoke(s, [session.id], "refresh_reuse", now)
                    refused = "refresh token already used: the session is revoked, sign in again"
        raise InvalidToken(refused)

    async def sign_out(self, principal: CustomerPrincipal, *, all_devices: bool = False) -> int:
        """Revoke the caller's session (or every session of theirs); returns how many ended."""
        now = self.clock()
        async with session_scope(self.sessions) as s:
            if all_devices:
                ids = list(
                    (
                        await s.execute(
                            select(col(CustomerSession.id)).where(
                                col(CustomerSession.user_id) == principal.user_id,
                                col(CustomerSession.revoked_at).is_(None),
                            )
                        )
                    )
                    .scalars()
                    .all()
                )
                return await self._revoke(s, [i for i in ids if i is not None], "signout_all", now)
            return await self._revoke(s, [principal.session_id], "signout", now)

    async def authenticate(self, token: str) -> CustomerPrincipal:
        """The customer of a valid access token whose session is live; :class:`InvalidToken`
        (401) otherwise."""
        now = self.clock()
        claims = self.signer.verify(token, now=now)
        async with self.sessions() as s:
            session = await s.get(CustomerSession, claims.session_id)
        if session is None or session.user_id != claims.user_id:
            raise InvalidToken("access token refused: unknown session")
        if session.revoked_at is not None:
            raise InvalidToken("this session has ended: sign in again")
        if session.expires_at <= now:
            raise InvalidToken("this session has expired: sign in again")
        return CustomerPrincipal(claims.user_id, claims.session_id, session.device_id)

    async def session_live(self, principal: CustomerPrincipal) -> bool:
        """Whether the principal's session is still live now (long-lived streams ask again)."""
        async with self.sessions() as s:
            session = await s.get(CustomerSession, principal.session_id)
        return session is not None and session.revoked_at is None and session.expires_at > self.clock()

    # ------------------------------------------------------------------------------------------
    # internals
    # ------------------------------------------------------------------------------------------

    async def _credential(self, s: AsyncSession, email: str) -> CustomerCredential | None:
        query = select(CustomerCredential).where(col(CustomerCredential.email) == email)
        return (await s.execute(query)).scalar_one_or_none()

    async def _record(self, email: str, ip: str, *, succeeded: bool, now: datetime) -> None:
        async with session_scope(self.sessions) as s:
            s.add(SignInAttempt(email=email, ip=ip, succeeded=succeeded, created_at=now))

    async def _check_ip(self, ip: str, now: datetime) -> None:
        limits = self.limits
        query = (
            select(col(SignInAttempt.created_at))
            .where(
                col(SignInAttempt.ip) == ip,
                col(SignInAttempt.succeeded).is_(False),
                col(SignInAttempt.created_at) > now - limits.ip_window,
            )
            .order_by(col(SignInAttempt.created_at).desc())
            .limit(limits.ip_failures)
        )
        async with self.sessions() as s:
            failures = list((await s.execute(query)).scalars().all())
        until = ip_throttled_until(failures, limits, now)
        if until is not None:
            raise TooManyAttempts(until, now)

    async def _check_account(self, email: str, now: datetime) -> None:
        limits = self.limits
        # Older failures can no longer be part of a lock that lasts until now.
        horizon = now - limits.lockout - limits.account_window
        async with self.sessions() as s:
            last_success = (
                await s.execute(
                    select(sa.func.max(col(SignInAttempt.created_at))).where(
                        col(SignInAttempt.email) == email,
                        col(SignInAttempt.succeeded).is_(True),
                        col(SignInAttempt.created_at) > horizon,
                    )
                )
            ).scalar_one_or_none()
            since = max(horizon, last_success) if last_success is not None else horizon
            failures = list(
                (
                    await s.execute(
                        select(col(SignInAttempt.created_at))
                        .where(
                            col(SignInAttempt.email) == email,
                            col(SignInAttempt.succeeded).is_(False),
                            col(SignInAttempt.created_at) > since,
                        )
                        .order_by(col(SignInAttempt.created_at).desc())
                        .limit(limits.account_failures)
                    )
                )
                .scalars()
                .all()
            )
        until = account_locked_until(failures, limits, now)
        if until is not None:
            raise AccountLocked(until, now)

    async def _bind_device(
        self, s: AsyncSession, user_id: int, fingerprint: str, name: str, os: str, now: datetime
    ) -> tuple[int, bool]:
        """The device's id, and whether this sign-in registered it to the customer (raising the
        ``new_device`` alert when they had another one)."""
        device = (
            await s.execute(select(Device).where(col(Device.fingerprint) == fingerprint))
        ).scalar_one_or_none()
        if device is None:
            try:
                async with s.begin_nested():
                    fields: dict[str, Any] = {"fingerprint": fingerprint, "os": os, "first_seen_at": now}
                    device = Device(**fields)  # the id comes from the database
                    s.add(device)
            except IntegrityError:  # registered concurrently (another customer, same device)
                device = (
                    await s.execute(select(Device).where(col(Device.fingerprint) == fingerprint))
                ).scalar_one()
        device_id = device.device_id
        link = (
            await s.execute(
                select(CustomerDevice).where(
                    col(CustomerDevice.user_id) == user_id, col(CustomerDevice.device_id) == device_id
                )
            )
        ).scalar_one_or_none()
        if link is not None:
            link.last_seen_at = now
            return device_id, False
        had_devices = (
            await s.execute(
                select(col(CustomerDevice.id)).where(col(CustomerDevice.user_id) == user_id).limit(1)
            )
        ).first() is not None
        s.add(
            CustomerDevice(
                user_id=user_id, device_id=device_id, name=name, first_seen_at=now, last_seen_at=now
            )
        )
        if had_devices:
            s.add(
                Alert(
                    user_id=user_id,
                    kind="new_device",
                    severity="medium",
                    message=(
                        f"New sign-in on a device you had not used before: {name} ({os}). If this "
                        "was not you, sign out of all devices and change your password."
                    ),
                    created_at=now,
                )
            )
        await s.flush()
        return device_id, True

    async def _open_session(
        self, s: AsyncSession, user_id: int, device_id: int, now: datetime, *, new_device: bool
    ) -> TokenPair:
        session = CustomerSession(
            user_id=user_id, device_id=device_id, created_at=now, expires_at=now + self.session_ttl
        )
        s.add(session)
        await s.flush()
        return await self._issue(s, session, now, new_device=new_device)

    async def _issue(
        self, s: AsyncSession, session: CustomerSession, now: datetime, *, new_device: bool
    ) -> TokenPair:
        assert session.id is not None
        refresh, digest = new_refresh_token()
        s.add(
            RefreshToken(
                session_id=session.id, token_hash=digest, created_at=now, expires_at=session.expires_at
            )
        )
        await s.flush()
        access, expires = self.signer.issue(user_id=session.user_id, session_id=session.id, now=now)
        return TokenPair(
            access_token=access,
            expires_in=int((expires - now).total_seconds()),
            expires_at=expires,
            refresh_token=refresh,
            refresh_expires_at=session.expires_at,
            user_id=session.user_id,
            device_id=session.device_id,
            new_device=new_device,
        )

    async def _revoke(self, s: AsyncSession, session_ids: list[int], reason: str, now: datetime) -> int:
        if not session_ids:
            return 0
        done = cast(
            CursorResult[Any],
            await s.execute(
                sa.update(CustomerSession)
                .where(col(CustomerSession.id).in_(session_ids), col(CustomerSession.revoked_at).is_(None))
                .values(revoked_at=now, revoked_reason=reason)
            ),
        )
        return int(done.rowcount)
