"""API keys and roles: who is calling, and may they call this route.

Keys are random 256-bit secrets (``vgl_`` + 43 url-safe characters) and are stored only as their
SHA-256 digest: a fast hash is enough for a high-entropy secret (there is nothing to brute-force),
unlike passwords, which would need a slow KDF. A presented key is hashed and looked up by digest,
then compared with :func:`hmac.compare_digest`; what timing can leak is a prefix of a digest, not
of the key.

Roles: ``client`` (partner backends and the app: submit transactions), ``analyst`` (review queue,
labels, blacklist reads), ``admin`` (blacklist writes, configuration) and ``operator`` (monitoring:
Alertmanager's webhook posts operator alerts with it, and nothing else). There is no implied
hierarchy: a route lists every role it accepts, e.g. ``require_role("analyst", "admin")``.

Configuration: ``VIGIL_API_KEYS`` is a comma-separated list of ``role:name:key`` or
``role:name:sha256=<64 hex>`` (the digest form keeps plaintext keys out of the environment; make it
with ``vigil.gateway.auth.hash_key``). With no keys configured, :func:`load_key_store` uses a development
key: generated once, kept in ``<VIGIL_HOME>/dev-api-key`` (mode 0600) so it survives restarts, with
role ``admin``; ``vigil up`` should print it, so a fresh checkout can call the API at once. Do not
run a shared deployment without ``VIGIL_API_KEYS``.

Requests carry the key as ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``. The FastAPI
dependency :func:`require_role` answers 401 (missing or unknown key, with ``WWW-Authenticate``) and
403 (known key, wrong role) as JSON ``{"error": code, "detail": reason}`` like :mod:`vigil.gateway.api`.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, Protocol, get_args

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from vigil.errors import VigilError

log = logging.getLogger("vigil.gateway.auth")

Role = Literal["client", "analyst", "admin", "operator"]
ROLES: Final[frozenset[str]] = frozenset(get_args(Role))
KEY_PREFIX: Final = "vgl_"
API_KEYS_ENV: Final = "VIGIL_API_KEYS"
DEV_KEY_FILE: Final = "dev-api-key"
_HEX64 = frozenset("0123456789abcdef")


def generate_key() -> str:
    """A new API key: ``vgl_`` + 256 random bits, url-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    """The SHA-256 hex digest a key is stored and looked up by."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: ``name`` identifies the key (logs, rate limits), never the secret."""

    name: str
    role: Role


class KeyStore(Protocol):
    """Where API keys are looked up; implementations must not keep plaintext keys."""

    async def authenticate(self, key: str) -> Principal | None:
        """The principal of ``key``, or None when unknown."""
        ...


class InMemoryKeyStore:
    """Keys held as digests in a dict: from settings/env, or built in tests.

    Entries are indexed by the first 16 hex digits of the digest and confirmed by comparing the
    whole digest with :func:`hmac.compare_digest`.
    """

    __slots__ = ("_index",)

    def __init__(self, entries: Iterable[tuple[Principal, str]] = ()) -> None:
        """``entries``: (principal, sha256 hex digest of its key)."""
        self._index: dict[str, list[tuple[str, Principal]]] = {}
        for principal, digest in entries:
            self._put(principal, digest)

    def _put(self, principal: Principal, digest: str) -> None:
        if principal.role not in ROLES:
            raise ValueError(f"unknown role {principal.role!r}: expected one of {sorted(ROLES)}")
        bucket = self._index.setdefault(digest[:16], [])
        bucket[:] = [(d, p) for d, p in bucket if d != digest]  # a re-added key replaces the old one
        bucket.append((digest, principal))

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._index.values())

    def add(self, name: str, role: Role, key: str) -> Principal:
        """Register a plaintext key (only its digest is kept)."""
        principal = Principal(name, role)
        self._put(principal, hash_key(key))
        return principal

    async def authenticate(self, key: str) -> Principal | None:
        return self.authenticate_sync(key)

    def authenticate_sync(self, key: str) -> Principal | None:
        if not key:
            return None
        digest = hash_key(key)
        found: Principal | None = None
        for stored, principal in self._index.get(digest[:16], ()):
            if hmac.compare_digest(stored, digest):
                found = principal
        return found

    @classmethod
    def from_spec(cls, spec: str) -> InMemoryKeyStore:
        """Parse ``role:name:key`` / ``role:name:sha256=<hex>`` entries separated by commas."""
        entries: list[tuple[Principal, str]] = []
        for i, raw in enumerate(part.strip() for part in spec.split(",")):
            if not raw:
                continue
            role, sep1, rest = raw.partition(":")
            name, sep2, secret = rest.partition(":")
            where = f"{API_KEYS_ENV} entry {i + 1} (role {role!r}, name {name!r})"
            if not (sep1 and sep2 and name and secret):
                raise ValueError(
                    f"{API_KEYS_ENV} entry {i + 1} must be role:name:key or role:name:sha256=<hex>"
                )
            if role not in ROLES:
                raise ValueError(f"{where}: unknown role, expected one of {sorted(ROLES)}")
            if secret.startswith("sha256="):
                digest = secret.removeprefix("sha256=").lower()
                if len(digest) != 64 or not set(digest) <= _HEX64:
                    raise ValueError(f"{where}: sha256= must be followed by 64 hex digits")
            else:
                if len(secret) < 16:
                    raise ValueError(
                        f"{where}: key shorter than 16 characters; use vigil.gateway.auth.generate_key()"
                    )
                digest = hash_key(secret)
            entries.append((Principal(name, role), digest))  # type: ignore[arg-type]  # role checked above
        return cls(entries)


def ensure_dev_key(home: Path) -> str:
    """The development key in ``home/dev-api-key``, created (mode 0600) when absent."""
    path = home / DEV_KEY_FILE
    try:
        key = path.read_text(encoding="utf-8").strip()
        if key:
            return key
    except FileNotFoundError:
        pass
    home.mkdir(parents=True, exist_ok=True)
    key = generate_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(key + "\n")
    return key


@dataclass(frozen=True, slots=True)
class LoadedKeys:
    """A key store and, when no keys were configured, the development key it accepts."""

    store: InMemoryKeyStore
    dev_key: str | None


def load_key_store(home: Path, env: Mapping[str, str] | None = None) -> LoadedKeys:
    """Keys from ``VIGIL_API_KEYS``, or the development key of ``home`` (role admin) when unset.

    ``vigil up`` prints ``dev_key`` when it is not None.
    """
    env = os.environ if env is None else env
    spec = env.get(API_KEYS_ENV, "").strip()
    if spec:
        return LoadedKeys(InMemoryKeyStore.from_spec(spec), None)
    key = ensure_dev_key(home)
    log.warning(
        "%s is not set: accepting only the development admin key in %s", API_KEYS_ENV, home / DEV_KEY_FILE
    )
    store = InMemoryKeyStore()
    store.add("dev", "admin", key)
    return LoadedKeys(store, key)


# --------------------------------------------------------------------------------------------
# FastAPI
# --------------------------------------------------------------------------------------------


class AuthError(VigilError):
    """401 or 403; ``headers`` go on the response (``WWW-Authenticate`` for 401)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}


_process_store: KeyStore | None = None


def install_key_store(api: FastAPI, store: KeyStore) -> None:
    """Make ``store`` the one :func:`require_role` uses, and answer :class:`AuthError` with headers.

    Like :func:`vigil.gateway.api.install_service`, the store is also kept per process: Ray Serve serves a
    copy of the FastAPI app.
    """
    global _process_store
    api.state.key_store = store
    _process_store = store
    api.add_exception_handler(AuthError, error_with_headers)


async def error_with_headers(request: Request, exc: Exception) -> JSONResponse:
    """:mod:`vigil.gateway.api`'s error JSON for a :class:`VigilError`, plus its ``headers``
    (``WWW-Authenticate``, ``Retry-After``): the API's own ``VigilError`` handler drops headers."""
    assert isinstance(exc, VigilError)
    return JSONResponse(
        {"error": exc.code, "detail": exc.message},
        status_code=exc.status,
        headers=getattr(exc, "headers", None),
    )


def current_key_store(request: Request) -> Any:
    """The installed store. A module-level function on purpose: Ray Serve pickles the app's
    route dependencies (closures) by value, globals and all, so a closure must not read this
    module's globals itself; a function it calls is pickled by reference and sees them live."""
    store: Any = getattr(request.app.state, "key_store", None) or _process_store
    if store is None:
        raise RuntimeError("no KeyStore installed: call install_key_store() when the server starts")
    return store


def presented_key(request: Request) -> str | None:
    """The key in ``Authorization: Bearer`` or ``X-API-Key``, if any."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    value = request.headers.get("x-api-key", "").strip()
    return value or None


_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="vigil"'}


def require_role(*roles: Role) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency admitting callers whose key has one of ``roles``.

    Use as ``principal: Annotated[Principal, Depends(require_role("analyst", "admin"))]``.
    """
    if not roles or not set(roles) <= ROLES:
        raise ValueError(f"require_role needs roles among {sorted(ROLES)}, got {roles}")
    allowed = frozenset(roles)

    async def dependency(request: Request) -> Principal:
        store = current_key_store(request)
        key = presented_key(request)
        if key is None:
            raise AuthError(
                401,
                "unauthenticated",
                "missing API key: send Authorization: Bearer <key> or X-API-Key",
                _CHALLENGE,
            )
        principal = await store.authenticate(key)
        if principal is None:
            raise AuthError(
                401,
                "unauthenticated",
                "unknown API key",
                {"WWW-Authenticate": _CHALLENGE["WWW-Authenticate"] + ', error="invalid_token"'},
            )
        if principal.role not in allowed:
            raise AuthError(
                403,
                "forbidden",
                f"role {principal.role!r} may not call this route (needs {' or '.join(sorted(allowed))})",
            )
        request.state.principal = principal
        return principal

    return dependency
