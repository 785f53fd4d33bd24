"""API keys, roles and the FastAPI dependency (401/403 as JSON, like vigil.gateway.api)."""

from __future__ import annotations

import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI

from vigil.gateway.auth import (
    InMemoryKeyStore,
    Principal,
    generate_key,
    hash_key,
    install_key_store,
    load_key_store,
    require_role,
)

CLIENT_KEY = generate_key()
ANALYST_KEY = generate_key()
ADMIN_KEY = generate_key()


def test_generated_keys_are_long_random_and_prefixed() -> None:
    keys = {generate_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(k.startswith("vgl_") and len(k) == 47 for k in keys)


async def test_store_keeps_only_digests_and_authenticates() -> None:
    store = InMemoryKeyStore()
    store.add("shop", "client", CLIENT_KEY)
    assert await store.authenticate(CLIENT_KEY) == Principal("shop", "client")
    assert await store.authenticate(CLIENT_KEY + "x") is None
    assert await store.authenticate("") is None
    assert CLIENT_KEY not in repr(store._index)
    store.add("shop", "admin", CLIENT_KEY)  # re-adding a key replaces its principal
    assert len(store) == 1 and store.authenticate_sync(CLIENT_KEY) == Principal("shop", "admin")
    with pytest.raises(ValueError, match="unknown role"):
        store.add("x", "root", generate_key())  # type: ignore[arg-type]


def test_store_from_spec_accepts_plain_and_hashed_keys() -> None:
    spec = f" client:shop:{CLIENT_KEY}, analyst:ann:sha256={hash_key(ANALYST_KEY).upper()} ,"
    store = InMemoryKeyStore.from_spec(spec)
    assert store.authenticate_sync(CLIENT_KEY) == Principal("shop", "client")
    assert store.authenticate_sync(ANALYST_KEY) == Principal("ann", "analyst")
    assert len(store) == 2


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("client:shop", "must be role:name:key"),
        ("root:shop:" + "k" * 20, "unknown role"),
        ("client:shop:short", "shorter than 16"),
        ("client:shop:sha256=abc", "64 hex digits"),
        ("client::" + "k" * 20, "must be role:name:key"),
    ],
)
def test_store_from_spec_refuses_bad_entries_without_echoing_keys(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        InMemoryKeyStore.from_spec(spec)
    assert "k" * 20 not in str(info.value)


def test_load_key_store_from_env(tmp_path: Path) -> None:
    loaded = load_key_store(tmp_path, {"VIGIL_API_KEYS": f"admin:ops:{ADMIN_KEY}"})
    assert loaded.dev_key is None
    assert loaded.store.authenticate_sync(ADMIN_KEY) == Principal("ops", "admin")
    assert not (tmp_path / "dev-api-key").exists()


def test_dev_key_is_created_once_private_and_reused(tmp_path: Path) -> None:
    home = tmp_path / "var"
    first = load_key_store(home, {})
    assert first.dev_key and first.dev_key.startswith("vgl_")
    assert first.store.authenticate_sync(first.dev_key) == Principal("dev", "admin")
    path = home / "dev-api-key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_key_store(home, {"VIGIL_API_KEYS": "  "}).dev_key == first.dev_key


def test_require_role_needs_known_roles() -> None:
    with pytest.raises(ValueError):
        require_role()
    with pytest.raises(ValueError):
        require_role("root")  # type: ignore[arg-type]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    api = FastAPI()
    store = InMemoryKeyStore()
    store.add("shop", "client", CLIENT_KEY)
    store.add("ann", "analyst", ANALYST_KEY)
    store.add("ops", "admin", ADMIN_KEY)
    install_key_store(api, store)

    @api.get("/review")
    async def review(who: Annotated[Principal, Depends(require_role("analyst", "admin"))]) -> dict[str, str]:
        return {"name": who.name, "role": who.role}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test") as c:
        yield c


async def test_allowed_roles_pass_with_either_header(client: httpx.AsyncClient) -> None:
    r = await client.get("/review", headers={"Authorization": f"Bearer {ANALYST_KEY}"})
    assert r.status_code == 200 and r.json() == {"name": "ann", "role": "analyst"}
    r = await client.get("/review", headers={"X-API-Key": ADMIN_KEY})
    assert r.status_code == 200 and r.json()["role"] == "admin"


async def test_missing_key_is_401_with_challenge(client: httpx.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Basic dXNlcjpwdw=="}, {"Authorization": "Bearer  "}):
        r = await client.get("/review", headers=headers)
        assert r.status_code == 401
        assert r.json()["error"] == "unauthenticated" and "missing" in r.json()["detail"]
        assert r.headers["www-authenticate"].startswith("Bearer")


async def test_unknown_key_is_401(client: httpx.AsyncClient) -> None:
    r = await client.get("/review", headers={"X-API-Key": generate_key()})
    assert r.status_code == 401
    assert r.json() == {"error": "unauthenticated", "detail": "unknown API key"}
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


async def test_wrong_role_is_403(client: httpx.AsyncClient) -> None:
    r = await client.get("/review", headers={"X-API-Key": CLIENT_KEY})
    assert r.status_code == 403
    assert r.json()["error"] == "forbidden" and "client" in r.json()["detail"]
    assert "www-authenticate" not in r.headers
