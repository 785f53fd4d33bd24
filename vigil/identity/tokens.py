"""Customer tokens: short-lived signed access tokens and opaque, rotated refresh tokens.

Access token: a JWT signed with HS256 under the server's secret (``VIGIL_TOKEN_SECRET``, or the
one generated into ``<VIGIL_HOME>/token-secret``). Claims: ``sub`` (the user id, a string as
RFC 7519 wants), ``sid`` (the session: one signed-in device), ``typ`` = ``"access"``, ``iat``,
``exp``, ``jti`` (random), ``iss`` = ``"vigil"``, ``aud`` = ``"vigil-customer"``. The signature
and the claims are checked here; whether the session is still live is checked against the
database by :class:`vigil.identity.service.Identity`, so signing out or a reused refresh token
ends the session's access tokens at once, not when they expire. Only HS256 is accepted (no
``alg: none``, no algorithm chosen by the token).

Refresh token: ``vgr_`` + 256 random bits, stored only as its SHA-256 digest (a high-entropy
secret needs no slow hash: there is nothing to guess).

Time is a parameter: :meth:`TokenSigner.issue` and :meth:`TokenSigner.verify` take ``now``.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Final

import jwt

from vigil.errors import VigilError

ISSUER: Final = "vigil"
AUDIENCE: Final = "vigil-customer"
ALGORITHM: Final = "HS256"
ACCESS_TYPE: Final = "access"
REFRESH_PREFIX: Final = "vgr_"
SECRET_FILE: Final = "token-secret"
#: The shortest secret accepted: HS256 wants at least its 256-bit output size (RFC 7518 3.2).
MIN_SECRET_BYTES: Final = 32
_REQUIRED = ("sub", "sid", "typ", "iat", "exp", "jti", "iss", "aud")


class InvalidToken(VigilError):
    """401: a missing, malformed, tampered, expired, wrong-type or revoked access token."""

    status = 401
    code = "invalid_token"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"WWW-Authenticate": 'Bearer realm="vigil-customer", error="invalid_token"'}


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """What a verified access token says: whose it is and which session issued it."""

    user_id: int
    session_id: int
    token_id: str
    issued_at: datetime
    expires_at: datetime


class TokenSigner:
    """Issues and verifies access tokens with one secret."""

    def __init__(self, secret: str | bytes, *, access_ttl: timedelta = timedelta(minutes=15)) -> None:
        key = secret.encode("utf-8") if isinstance(secret, str) else secret
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(f"the token secret must be at least {MIN_SECRET_BYTES} bytes")
        self._key = key
        self.access_ttl = access_ttl

    def issue(self, *, user_id: int, session_id: int, now: datetime) -> tuple[str, datetime]:
        """A new access token and when it expires."""
        expires = now + self.access_ttl
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "sid": session_id,
            "typ": ACCESS_TYPE,
            "iat": int(now.timestamp()),
            "exp": int(expires.timestamp()),
            "jti": uuid.uuid4().hex,
            "iss": ISSUER,
            "aud": AUDIENCE,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM), expires

    def sign_claims(self, claims: dict[str, Any]) -> str:
        """Sign arbitrary claims with this secret (tests forge wrong-type tokens with it)."""
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)

    def verify(self, token: str, *, now: datetime) -> AccessClaims:
        """The claims of a valid access token at ``now``; :class:`InvalidToken` otherwise.

        The expiry is compared with ``now`` here (not PyJWT's wall clock), so tests can move time.
        """
        try:
            claims = jwt.decode(
                token,
                self._key,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": list(_REQUIRED), "verify_exp": False, "verify_iat": False},
            )
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"access token refused: {exc}") from None
        if claims.get("typ") != ACCESS_TYPE:
            raise InvalidToken("not an access token")
        try:
            user_id = int(claims["sub"])
            session_id = int(claims["sid"])
            expires = datetime.fromtimestamp(int(claims["exp"]), now.tzinfo)
            issued = datetime.fromtimestamp(int(claims["iat"]), now.tzinfo)
        except (TypeError, ValueError, OverflowError, OSError):
            raise InvalidToken("access token refused: malformed claims") from None
        if now >= expires:
            raise InvalidToken("access token expired: refresh it")
        return AccessClaims(user_id, session_id, str(claims["jti"]), issued, expires)


def new_refresh_token() -> tuple[str, str]:
    """A new refresh token and the digest it is stored by."""
    token = REFRESH_PREFIX + secrets.token_urlsafe(32)
    return token, refresh_digest(token)


def refresh_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def load_token_secret(home: Path, configured: str | None) -> str:
    """The secret in force: ``configured`` (``VIGIL_TOKEN_SECRET``), else the one in
    ``home/token-secret``, created (random, mode 0600) when absent. Never a built-in value:
    a secret in the source is a secret every reader has."""
    if configured:
        return configured
    path = home / SECRET_FILE
    try:
        secret = path.read_text(encoding="utf-8").strip()
        if len(secret) >= MIN_SECRET_BYTES:
            return secret
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    # O_EXCL: two replicas starting at once must not end up with two secrets; the loser reads
    # the winner's.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing = path.read_text(encoding="utf-8").strip()
        if len(existing) >= MIN_SECRET_BYTES:
            return existing
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")
    return secret
