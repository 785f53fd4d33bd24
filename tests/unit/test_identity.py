"""The pure parts of customer identity: throttle arithmetic, tokens, the token secret, hashing."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from vigil.identity.passwords import DEFAULT_PARAMETERS, HashParameters, PasswordHashing
from vigil.identity.throttle import SignInLimits, account_locked_until, ip_throttled_until
from vigil.identity.tokens import (
    InvalidToken,
    TokenSigner,
    load_token_secret,
    new_refresh_token,
    refresh_digest,
)
from vigil.service import VigilService

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LIMITS = SignInLimits(account_failures=3, ip_failures=4)


def _ago(*minutes: float) -> list[datetime]:
    return [T0 - timedelta(minutes=m) for m in minutes]


def test_an_account_locks_after_n_failures_within_the_window_for_the_lockout() -> None:
    assert account_locked_until(_ago(1, 2), LIMITS, T0) is None  # two of three
    assert account_locked_until(_ago(1, 2, 3), LIMITS, T0) == T0 - timedelta(minutes=1) + LIMITS.lockout
    assert account_locked_until(_ago(1, 2, 17), LIMITS, T0) is None  # spread over more than the window
    assert account_locked_until(_ago(16, 17, 18), LIMITS, T0) is None  # the lock has run out
    assert account_locked_until(_ago(14, 15, 16), LIMITS, T0) == T0 + timedelta(minutes=1)


def test_an_address_is_throttled_until_its_oldest_counted_failure_leaves_the_window() -> None:
    assert ip_throttled_until(_ago(1, 2, 3), LIMITS, T0) is None
    assert ip_throttled_until(_ago(1, 2, 3, 10), LIMITS, T0) == T0 + timedelta(minutes=5)
    assert ip_throttled_until(_ago(1, 2, 3, 15), LIMITS, T0) is None  # that one is out already


def test_limits_refuse_nonsense() -> None:
    with pytest.raises(ValueError):
        SignInLimits(account_failures=0)
    with pytest.raises(ValueError):
        SignInLimits(lockout=timedelta(0))


def test_access_tokens_round_trip_and_expire_on_the_given_clock() -> None:
    signer = TokenSigner("s" * 32)
    token, expires = signer.issue(user_id=7, session_id=3, now=T0)
    claims = signer.verify(token, now=T0 + timedelta(minutes=14))
    assert (claims.user_id, claims.session_id, claims.expires_at) == (7, 3, expires)
    assert expires == T0 + timedelta(minutes=15)
    with pytest.raises(InvalidToken, match="expired"):
        signer.verify(token, now=expires)
    with pytest.raises(InvalidToken):
        TokenSigner("t" * 32).verify(token, now=T0)
    with pytest.raises(ValueError, match="at least 32"):
        TokenSigner("short")


def test_refresh_tokens_are_random_and_stored_as_digests() -> None:
    token, digest = new_refresh_token()
    other, _ = new_refresh_token()
    assert token.startswith("vgr_") and token != other and len(token) >= 40
    assert digest == refresh_digest(token) and token not in digest and len(digest) == 64


def test_the_token_secret_is_generated_once_private_and_never_built_in(tmp_path: Path) -> None:
    assert load_token_secret(tmp_path, "c" * 40) == "c" * 40
    assert not (tmp_path / "token-secret").exists()
    first = load_token_secret(tmp_path, None)
    assert len(first) >= 32 and load_token_secret(tmp_path, None) == first
    assert stat.S_IMODE((tmp_path / "token-secret").stat().st_mode) == 0o600
    assert load_token_secret(tmp_path / "other", None) != first


async def test_the_service_signs_with_the_configured_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path))
    monkeypatch.setenv("VIGIL_TOKEN_SECRET", "k" * 40)
    service = VigilService(f"sqlite+aiosqlite:///{tmp_path / 'v.db'}")
    try:
        token, _ = service.identity.signer.issue(user_id=1, session_id=1, now=datetime.now(UTC))
        assert TokenSigner("k" * 40).verify(token, now=datetime.now(UTC)).user_id == 1
        assert service.identity.hashing.parameters == DEFAULT_PARAMETERS
    finally:
        await service.close()
    assert not (tmp_path / "token-secret").exists()


def test_default_hash_parameters_are_rfc_9106s_second_recommendation() -> None:
    assert (
        DEFAULT_PARAMETERS.time_cost,
        DEFAULT_PARAMETERS.memory_cost_kib,
        DEFAULT_PARAMETERS.parallelism,
    ) == (
        3,
        64 * 1024,
        4,
    )
    hashing = PasswordHashing(HashParameters(time_cost=1, memory_cost_kib=64, parallelism=1))
    stored = hashing.hash("pässword 🙂")
    assert hashing.verify(stored, "pässword 🙂") and not hashing.verify(stored, "password")
    assert not hashing.verify("not a hash", "x") and hashing.needs_rehash("not a hash")
    assert not hashing.verify(None, "x")
