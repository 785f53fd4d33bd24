"""Customer identity and the customer routes over a real (SQLite) database, in-process.

Customers A and B sign up through the API; every ``/v1/me`` route is then called with A's token
and B's ids wherever an id can go, and must never show or touch anything of B's.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import sqlalchemy as sa
from sqlmodel import col

from vigil.db.migrate import upgrade_async
from vigil.db.models import CustomerCredential, SignInAttempt
from vigil.decision.local_graph import LocalGraph
from vigil.decision.policy import DecisionPolicy
from vigil.gateway.api import create_api, install_service
from vigil.gateway.auth import InMemoryKeyStore, install_key_store
from vigil.gateway.ratelimit import InMemoryRateLimiter, RateLimit, install_rate_limiter
from vigil.identity.passwords import HashParameters, PasswordHashing
from vigil.identity.service import Identity
from vigil.identity.throttle import SignInLimits
from vigil.identity.tokens import TokenSigner
from vigil.service import VigilService

ADMIN_KEY, CLIENT_KEY = "adm-" + "a" * 32, "cli-" + "c" * 32
SECRET = "test-secret-" + "x" * 40
#: Cheap argon2id for tests: the parameters are the production code's, only smaller.
CHEAP = HashParameters(time_cost=1, memory_cost_kib=64, parallelism=1)
LIMITS = SignInLimits(
    account_failures=3,
    account_window=timedelta(minutes=15),
    lockout=timedelta(minutes=15),
    ip_failures=6,
    ip_window=timedelta(minutes=15),
)
PASSWORD = "correct horse battery"


@dataclass
class Clock:
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@dataclass
class World:
    client: httpx.AsyncClient
    service: VigilService
    clock: Clock
    url: str

    def identity(self, hashing: PasswordHashing | None = None) -> Identity:
        return Identity(
            self.service.sessions,
            TokenSigner(SECRET),
            hashing=hashing or PasswordHashing(CHEAP),
            limits=LIMITS,
            clock=self.clock,
        )


@contextlib.asynccontextmanager
async def _world(tmp_path: Path, url: str | None = None) -> AsyncIterator[World]:
    url = url or f"sqlite+aiosqlite:///{tmp_path / 'vigil.db'}"
    await upgrade_async(url)
    api = create_api()
    service = VigilService(url)
    service.attach_screening(LocalGraph(url, supervised=None, anomaly=None), DecisionPolicy())
    clock = Clock()
    install_service(api, service)
    keys = InMemoryKeyStore()
    keys.add("ops", "admin", ADMIN_KEY)
    keys.add("shop-app", "client", CLIENT_KEY)
    install_key_store(api, keys)
    install_rate_limiter(api, InMemoryRateLimiter(RateLimit(capacity=1000, rate=100)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test") as c:
        world = World(c, service, clock, url)
        service.attach_identity(world.identity())
        yield world
    await service.close()


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    async with _world(tmp_path) as w:
        yield w


ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def signup(c: httpx.AsyncClient, email: str, *, device: str = "device-0001") -> dict[str, Any]:
    response = await c.post(
        "/v1/auth/signup",
        json={
            "email": email,
            "password": PASSWORD,
            "full_name": email.split("@")[0].title(),
            "country": "gb",
            "home_lat": 51.5,
            "home_lon": -0.12,
            "device_fingerprint": device,
            "device_name": "phone",
            "device_os": "android",
        },
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def signin(
    c: httpx.AsyncClient,
    email: str,
    password: str = PASSWORD,
    device: str = "device-0001",
    name: str = "phone",
) -> httpx.Response:
    return await c.post(
        "/v1/auth/signin",
        json={"email": email, "password": password, "device_fingerprint": device, "device_name": name},
    )


async def merchant(c: httpx.AsyncClient, name: str, category: str) -> int:
    response = await c.post(
        "/v1/merchants",
        json={"name": name, "category": category, "country": "GB", "lat": 51.5, "lon": 0},
        headers=ADMIN,
    )
    assert response.status_code == 201, response.text
    return int(response.json()["merchant_id"])


async def account(c: httpx.AsyncClient, user_id: int, currency: str = "EUR") -> int:
    response = await c.post("/v1/accounts", json={"user_id": user_id, "currency": currency}, headers=ADMIN)
    assert response.status_code == 201, response.text
    return int(response.json()["account_id"])


def payment(
    account_id: int, merchant_id: int, key: str, amount: str = "19.99", **extra: Any
) -> dict[str, Any]:
    return {
        "idempotency_key": key,
        "account_id": account_id,
        "merchant_id": merchant_id,
        "amount": amount,
        "currency": "EUR",
        "country": "GB",
        **extra,
    }


# ---------------------------------------------------------------------------------------------
# sign-up, sign-in, passwords
# ---------------------------------------------------------------------------------------------


async def test_signup_signs_in_and_the_token_reads_only_my_profile(world: World) -> None:
    c = world.client
    a = await signup(c, " Ada@Example.COM ")
    assert a["token_type"] == "bearer" and a["expires_in"] == 15 * 60 and a["new_device"] is True
    claims = jwt.decode(a["access_token"], SECRET, algorithms=["HS256"], audience="vigil-customer")
    assert claims["sub"] == str(a["user_id"]) and claims["typ"] == "access" and claims["exp"] > claims["iat"]
    assert {"jti", "sid", "iss"} <= set(claims)
    profile = (await c.get("/v1/me", headers=bearer(a["access_token"]))).json()
    assert profile["user_id"] == a["user_id"] and profile["email"] == "ada@example.com"
    assert profile["country"] == "GB" and profile["kyc_status"] == "none" and profile["latest_kyc"] is None
    devices = (await c.get("/v1/me/devices", headers=bearer(a["access_token"]))).json()
    assert [(d["device_id"], d["current"], d["os"]) for d in devices] == [(a["device_id"], True, "android")]
    again = await c.post(
        "/v1/auth/signup",
        json={
            "email": "ada@example.com",
            "password": "another long password",
            "full_name": "Eve",
            "country": "GB",
            "home_lat": 0,
            "home_lon": 0,
            "device_fingerprint": "device-9999",
            "device_name": "x",
        },
    )
    assert again.status_code == 409 and again.json()["error"] == "conflict"
    assert (await signin(c, "ADA@example.com")).status_code == 200


async def test_passwords_are_argon2id_and_rehashed_when_the_parameters_change(world: World) -> None:
    a = await signup(world.client, "ada@example.com")

    async def stored() -> str:
        async with world.service.sessions() as s:
            credential = await s.get(CustomerCredential, a["user_id"])
        assert credential is not None
        return credential.password_hash

    first = await stored()
    assert first.startswith("$argon2id$v=19$m=64,t=1,p=1$") and PASSWORD not in first
    stronger = PasswordHashing(HashParameters(time_cost=2, memory_cost_kib=128, parallelism=1))
    world.service.attach_identity(world.identity(stronger))
    assert (await signin(world.client, "ada@example.com", "wrong password")).status_code == 401
    assert await stored() == first  # a wrong password rehashes nothing
    assert (await signin(world.client, "ada@example.com")).status_code == 200
    assert (await stored()).startswith("$argon2id$v=19$m=128,t=2,p=1$")
    assert (await signin(world.client, "ada@example.com")).status_code == 200  # the new hash verifies


async def test_an_unknown_address_costs_a_password_check_like_a_known_one(world: World) -> None:
    await signup(world.client, "ada@example.com")
    hashing = world.service.identity.hashing
    checked: list[str | None] = []
    verify = hashing.verify

    def spy(stored: str | None, password: str) -> bool:
        checked.append(stored)
        return verify(stored, password)

    hashing.verify = spy  # type: ignore[method-assign]
    unknown = await signin(world.client, "nobody@example.com", PASSWORD)
    known = await signin(world.client, "ada@example.com", "wrong password")
    assert unknown.status_code == known.status_code == 401
    assert (
        unknown.json()
        == known.json()
        == {
            "error": "invalid_credentials",
            "detail": "e-mail address or password is wrong",
        }
    )
    assert len(checked) == 2 and checked[0] is None and checked[1] is not None  # None = the dummy hash


async def test_a_sign_in_from_a_new_device_registers_it_and_alerts_only_its_customer(world: World) -> None:
    c = world.client
    a = await signup(c, "ada@example.com")
    b = await signup(c, "bob@example.com", device="device-bob1")
    same = await signin(c, "ada@example.com")
    assert same.status_code == 200 and same.json()["new_device"] is False
    assert (await c.get("/v1/me/alerts", headers=bearer(a["access_token"]))).json() == []  # sign-up: no alert
    new = await signin(c, "ada@example.com", device="device-ada2", name="tablet")
    assert new.status_code == 200 and new.json()["new_device"] is True
    alerts = (await c.get("/v1/me/alerts", headers=bearer(a["access_token"]))).json()
    assert [(x["kind"], x["user_id"], x["transaction_id"]) for x in alerts] == [
        ("new_device", a["user_id"], None)
    ]
    assert "tablet" in alerts[0]["message"]
    assert (await c.get("/v1/me/alerts", headers=bearer(b["access_token"]))).json() == []
    again = await signin(c, "ada@example.com", device="device-ada2")
    assert again.json()["new_device"] is False
    assert len((await c.get("/v1/me/alerts", headers=bearer(a["access_token"]))).json()) == 1
    devices = (await c.get("/v1/me/devices", headers=bearer(new.json()["access_token"]))).json()
    assert [(d["name"], d["current"]) for d in devices] == [("phone", False), ("tablet", True)]
    # Bob signing in on Ada's tablet registers it to Bob (and alerts Bob), not to Ada.
    shared = await signin(c, "bob@example.com", device="device-ada2")
    assert shared.json()["new_device"] is True and shared.json()["device_id"] == new.json()["device_id"]
    assert len((await c.get("/v1/me/alerts", headers=bearer(a["access_token"]))).json()) == 1


# ---------------------------------------------------------------------------------------------
# tokens
# ---------------------------------------------------------------------------------------------


def _tamper(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = str(int(claims["sub"]) + 1)
    return f"{header}.{_b64(claims)}.{signature}"


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _unsigned(claims: dict[str, Any]) -> str:
    """A token with ``alg: none`` and no signature, which must never be accepted."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


async def test_expired_tampered_wrong_type_and_foreign_tokens_are_401(world: World) -> None:
    c = world.client
    a = await signup(c, "ada@example.com")
    b = await signup(c, "bob@example.com", device="device-bob1")
    token = a["access_token"]
    assert (await c.get("/v1/me", headers=bearer(token))).status_code == 200
    now = int(world.clock.now.timestamp())
    good_claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="vigil-customer")
    signer = TokenSigner(SECRET)
    bad_tokens = {
        "tampered sub": _tamper(token),
        "refresh token as access": a["refresh_token"],
        "typ refresh": signer.sign_claims({**good_claims, "typ": "refresh"}),
        "other secret": TokenSigner("z" * 48).sign_claims(good_claims),
        "alg none": _unsigned(good_claims),
        "bad signature": token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB"),
        "wrong audience": signer.sign_claims({**good_claims, "aud": "someone-else"}),
        "no session": signer.sign_claims({k: v for k, v in good_claims.items() if k != "sid"}),
        "someone else's session": signer.sign_claims({**good_claims, "sid": b["user_id"] + 100}),
        "B's session, A's sub": signer.sign_claims(
            {
                **good_claims,
                "sid": jwt.decode(b["access_token"], SECRET, algorithms=["HS256"], audience="vigil-customer")[
                    "sid"
                ],
            }
        ),
        "expired": signer.sign_claims({**good_claims, "iat": now - 3600, "exp": now - 1}),
        "a partner key": CLIENT_KEY,
        "an admin key": ADMIN_KEY,
        "garbage": "not-a-token",
    }
    for what, bad in bad_tokens.items():
        response = await c.get("/v1/me", headers=bearer(bad))
        assert response.status_code == 401, (what, response.text)
        assert response.json()["error"] == "invalid_token", what
        assert 'error="invalid_token"' in response.headers["www-authenticate"], what
    assert (await c.get("/v1/me")).status_code == 401
    # and the real token expires with time
    world.clock.advance(minutes=15)
    expired = await c.get("/v1/me", headers=bearer(token))
    assert expired.status_code == 401 and "expired" in expired.json()["detail"]
    # a customer token is no API key: the staff and partner routes refuse it
    fresh = (await signin(c, "ada@example.com")).json()["access_token"]
    staff = await c.get(f"/v1/users/{a['user_id']}/transactions", headers=bearer(fresh))
    assert staff.status_code == 401


async def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_session(world: World) -> None:
    c = world.client
    a = await signup(c, "ada@example.com")
    first = await c.post("/v1/auth/refresh", json={"refresh_token": a["refresh_token"]})
    assert first.status_code == 200, first.text
    pair = first.json()
    assert pair["refresh_token"] != a["refresh_token"] and pair["user_id"] == a["user_id"]
    assert (await c.get("/v1/me", headers=bearer(pair["access_token"]))).status_code == 200
    # the first refresh token again: someone holds a copy -> the whole session ends
    reused = await c.post("/v1/auth/refresh", json={"refresh_token": a["refresh_token"]})
    assert reused.status_code == 401 and "already used" in reused.json()["detail"]
    assert (
        await c.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    ).status_code == 401
    for token in (a["access_token"], pair["access_token"]):
        assert (await c.get("/v1/me", headers=bearer(token))).status_code == 401
    unknown = await c.post("/v1/auth/refresh", json={"refresh_token": "vgr_" + "x" * 43})
    assert unknown.status_code == 401
    # another session of the same customer is untouched
    other = (await signin(c, "ada@example.com")).json()
    assert (await c.get("/v1/me", headers=bearer(other["access_token"]))).status_code == 200
    # a session ends after its lifetime, refreshed or not
    world.clock.advance(days=31)
    late = await c.post("/v1/auth/refresh", json={"refresh_token": other["refresh_token"]})
    assert late.status_code == 401 and "expired" in late.json()["detail"]


async def test_sign_out_ends_this_session_or_all_of_them(world: World) -> None:
    c = world.client
    phone = await signup(c, "ada@example.com")
    tablet = (await signin(c, "ada@example.com", device="device-ada2")).json()
    bob = await signup(c, "bob@example.com", device="device-bob1")
    out = await c.post("/v1/auth/signout", headers=bearer(phone["access_token"]))
    assert out.status_code == 200 and out.json() == {"sessions_ended": 1}
    assert (await c.get("/v1/me", headers=bearer(phone["access_token"]))).status_code == 401
    assert (
        await c.post("/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]})
    ).status_code == 401
    assert (await c.get("/v1/me", headers=bearer(tablet["access_token"]))).status_code == 200
    phone2 = (await signin(c, "ada@example.com")).json()
    everywhere = await c.post(
        "/v1/auth/signout", headers=bearer(tablet["access_token"]), json={"all_devices": True}
    )
    assert everywhere.json() == {"sessions_ended": 2}
    for token in (tablet["access_token"], phone2["access_token"]):
        assert (await c.get("/v1/me", headers=bearer(token))).status_code == 401
    assert (await c.get("/v1/me", headers=bearer(bob["access_token"]))).status_code == 200
    assert (await c.post("/v1/auth/signout")).status_code == 401


# ---------------------------------------------------------------------------------------------
# throttling
# ---------------------------------------------------------------------------------------------


async def test_wrong_passwords_lock_the_account_and_the_lock_survives_a_restart(
    world: World, tmp_path: Path
) -> None:
    c = world.client
    await signup(c, "ada@example.com")
    for _ in range(LIMITS.account_failures):
        assert (await signin(c, "ada@example.com", "wrong password")).status_code == 401
    locked = await signin(c, "ada@example.com")  # even the right password
    assert locked.status_code == 423 and locked.json()["error"] == "account_locked"
    assert int(locked.headers["retry-after"]) == 15 * 60
    # a restart (a new service and app on the same database) remembers the failures
    async with _world(tmp_path, world.url) as restarted:
        restarted.clock.now = world.clock.now + timedelta(minutes=5)
        still = await signin(restarted.client, "ada@example.com")
        assert still.status_code == 423 and int(still.headers["retry-after"]) == 10 * 60
        restarted.clock.now = world.clock.now + timedelta(minutes=15, seconds=1)
        assert (await signin(restarted.client, "ada@example.com")).status_code == 200
    # unknown addresses lock the same way: the answer says nothing about whether one exists
    world.clock.advance(minutes=16)  # (past the per-IP window of the failures above)
    for _ in range(LIMITS.account_failures):
        assert (await signin(c, "nobody@example.com", "wrong password")).status_code == 401
    assert (await signin(c, "nobody@example.com", "wrong password")).status_code == 423


async def test_a_success_resets_the_account_count_and_old_failures_expire(world: World) -> None:
    c = world.client
    await signup(c, "ada@example.com")
    for _ in range(LIMITS.account_failures - 1):
        assert (await signin(c, "ada@example.com", "wrong password")).status_code == 401
    assert (await signin(c, "ada@example.com")).status_code == 200
    for _ in range(LIMITS.account_failures - 1):
        assert (await signin(c, "ada@example.com", "wrong password")).status_code == 401
    world.clock.advance(minutes=16)  # those fall out of the window
    assert (await signin(c, "ada@example.com", "wrong password")).status_code == 401
    assert (await signin(c, "ada@example.com")).status_code == 200


async def test_many_failures_from_one_address_are_throttled_across_accounts(world: World) -> None:
    c = world.client
    await signup(c, "ada@example.com")
    for i in range(LIMITS.ip_failures):
        world.clock.advance(seconds=10)
        assert (await signin(c, f"user{i}@example.com", "guess")).status_code == 401
    throttled = await signin(c, "ada@example.com")
    assert throttled.status_code == 429 and throttled.json()["error"] == "too_many_attempts"
    # the oldest counted failure leaves the window 15 min after it happened
    assert int(throttled.headers["retry-after"]) == 15 * 60 - 10 * (LIMITS.ip_failures - 1)
    async with world.service.sessions() as s:
        failures = (
            await s.execute(
                sa.select(sa.func.count())
                .select_from(SignInAttempt)
                .where(col(SignInAttempt.succeeded).is_(False))
            )
        ).scalar_one()
    assert failures == LIMITS.ip_failures  # the refused attempt was not even counted
    world.clock.advance(seconds=int(throttled.headers["retry-after"]))
    assert (await signin(c, "ada@example.com")).status_code == 200


# ---------------------------------------------------------------------------------------------
# the customer routes: only my data, whatever ids I send
# ---------------------------------------------------------------------------------------------


@dataclass
class Pair:
    a: dict[str, Any]
    b: dict[str, Any]
    a_account: int
    b_account: int
    shop: int
    jeweller: int


async def _two_customers(world: World) -> Pair:
    c = world.client
    a = await signup(c, "ada@example.com")
    b = await signup(c, "bob@example.com", device="device-bob1")
    pair = Pair(
        a,
        b,
        await account(c, a["user_id"]),
        await account(c, b["user_id"]),
        await merchant(c, "Corner Shop", "grocery"),
        await merchant(c, "Jeweller", "jewellery"),
    )
    for who, acct in ((a, pair.a_account), (b, pair.b_account)):
        sent = await c.post(
            "/v1/me/transactions",
            json=payment(acct, pair.shop, f"pay-{who['user_id']}-0001"),
            headers=bearer(who["access_token"]),
        )
        assert sent.status_code == 201, sent.text
    return pair


async def test_every_customer_route_refuses_a_request_without_a_token(world: World) -> None:
    spec = (await world.client.get("/openapi.json")).json()
    routes = [
        (method.upper(), path)
        for path, item in spec["paths"].items()
        if path == "/v1/me" or path.startswith("/v1/me/") or path == "/v1/auth/signout"
        for method in item
    ]
    assert len(routes) >= 11, routes
    for method, path in routes:
        url = path.replace("{account_id}", "1")
        for headers in ({}, ADMIN, {"Authorization": f"Bearer {CLIENT_KEY}"}, {"X-API-Key": ADMIN_KEY}):
            response = await world.client.request(method, url, headers=headers, json={})
            assert response.status_code == 401, (method, url, headers, response.text)


async def test_no_customer_route_takes_a_user_from_the_request(world: World) -> None:
    spec = (await world.client.get("/openapi.json")).json()
    schemas = spec["components"]["schemas"]

    def fields(schema: dict[str, Any]) -> set[str]:
        if "$ref" in schema:
            return fields(schemas[schema["$ref"].rsplit("/", 1)[-1]])
        return set(schema.get("properties", {}))

    for path, item in spec["paths"].items():
        if path != "/v1/me" and not path.startswith("/v1/me/"):
            continue
        for operation in item.values():
            names = {p["name"].lower() for p in operation.get("parameters", [])}
            for content in operation.get("requestBody", {}).get("content", {}).values():
                names |= fields(content["schema"])
            assert not names & {"user_id", "userid", "user", "device_id", "ip"}, (path, names)


async def test_customer_a_sees_and_touches_nothing_of_customer_b(world: World) -> None:
    c = world.client
    p = await _two_customers(world)
    a = bearer(p.a["access_token"])
    b_id = p.b["user_id"]
    # reads carry only A's rows, whatever is in the query
    noise = {"user_id": b_id, "account_id": p.b_account, "before_id": 0}
    assert (await c.get("/v1/me", headers=a, params=noise)).json()["user_id"] == p.a["user_id"]
    accounts = (await c.get("/v1/me/accounts", headers=a, params=noise)).json()
    assert [x["account_id"] for x in accounts] == [p.a_account]
    history = (await c.get("/v1/me/transactions", headers=a, params=noise)).json()
    assert len(history) == 1 and history[0]["account_id"] == p.a_account
    b_tx = (await c.get("/v1/me/transactions", headers=bearer(p.b["access_token"]))).json()[0][
        "transaction_id"
    ]
    paged = await c.get("/v1/me/transactions", headers=a, params={"before_id": b_tx + 1})
    assert all(t["transaction_id"] != b_tx for t in paged.json())
    spend = (await c.get("/v1/me/analytics/spend", headers=a, params={"user_id": b_id})).json()
    assert spend == [{"key": "grocery", "currency": "EUR", "total": "19.99", "count": 1}]
    devices = (await c.get("/v1/me/devices", headers=a, params=noise)).json()
    assert [d["device_id"] for d in devices] == [p.a["device_id"]]
    await signin(c, "bob@example.com", device="device-bob2")  # an alert for B
    assert (await c.get("/v1/me/alerts", headers=a, params={"user_id": b_id})).json() == []
    # B's account through every route that takes an account id: 404, as for no account at all
    for path in ("freeze", "unfreeze"):
        for account_id in (p.b_account, 10**6):
            response = await c.post(f"/v1/me/accounts/{account_id}/{path}", headers=a)
            assert response.status_code == 404, response.text
            assert response.json()["detail"] == f"account {account_id} not found"
    send = await c.post("/v1/me/transactions", json=payment(p.b_account, p.shop, "steal-0001"), headers=a)
    assert send.status_code == 404 and send.json()["detail"] == f"account {p.b_account} not found"
    # naming B in the body is refused outright
    for extra in ({"user_id": b_id}, {"device_id": p.b["device_id"]}, {"ip": "203.0.113.9"}):
        body = payment(p.a_account, p.shop, "extra-0001", **extra)
        response = await c.post("/v1/me/transactions", json=body, headers=a)
        assert response.status_code == 422 and response.json()["error"] == "validation_error"
    # B's idempotency key replays nothing of B's: keys are kept per customer
    same_key = await c.post(
        "/v1/me/transactions", json=payment(p.a_account, p.shop, f"pay-{b_id}-0001"), headers=a
    )
    assert same_key.status_code == 201 and same_key.json()["replayed"] is False
    assert same_key.json()["transaction_id"] != b_tx
    # and B's account is still active, B's history untouched
    b_accounts = (await c.get("/v1/me/accounts", headers=bearer(p.b["access_token"]))).json()
    assert [x["status"] for x in b_accounts] == ["active"]
    assert len((await c.get("/v1/me/transactions", headers=bearer(p.b["access_token"]))).json()) == 1


async def test_partner_keys_keep_their_reach_and_customers_cannot_use_it(world: World) -> None:
    c = world.client
    p = await _two_customers(world)
    partner = {"Authorization": f"Bearer {CLIENT_KEY}"}
    # a partner backend reads any user's history (server to server; stated in the README) ...
    reach = await c.get(f"/v1/users/{p.b['user_id']}/transactions", headers=partner, params={"hours": 1})
    assert reach.status_code == 200 and len(reach.json()) == 1
    # ... may not create entities, and is not a customer
    assert (await c.post("/v1/users", headers=partner, json={})).status_code == 403
    assert (await c.get("/v1/me", headers=partner)).status_code == 401


async def test_send_money_explains_approved_held_and_declined_in_plain_words(world: World) -> None:
    c = world.client
    p = await _two_customers(world)
    a = bearer(p.a["access_token"])
    approved = await c.post(
        "/v1/me/transactions", json=payment(p.a_account, p.shop, "pay-ok-0001"), headers=a
    )
    assert approved.status_code == 201
    body = approved.json()
    assert (body["status"], body["title"], body["idempotency_key"]) == (
        "approved",
        "Payment sent",
        "pay-ok-0001",
    )
    assert "fraud_score" not in body and "reason_codes" not in body
    retry = await c.post("/v1/me/transactions", json=payment(p.a_account, p.shop, "pay-ok-0001"), headers=a)
    assert retry.status_code == 200 and retry.json()["replayed"] is True
    assert retry.json()["transaction_id"] == body["transaction_id"]
    held = await c.post(
        "/v1/me/transactions", json=payment(p.a_account, p.jeweller, "pay-big-0001", "300.00"), headers=a
    )
    assert held.status_code == 201 and held.json()["status"] == "held"
    assert "has not left your account" in held.json()["message"] and held.json()["next_steps"]
    blacklisted = await c.post(
        "/v1/blacklist",
        json={"kind": "merchant", "value": str(p.jeweller), "reason": "test"},
        headers=ADMIN,
    )
    assert blacklisted.status_code == 201, blacklisted.text
    declined = await c.post(
        "/v1/me/transactions", json=payment(p.a_account, p.jeweller, "pay-bad-0001", "10.00"), headers=a
    )
    assert declined.status_code == 201 and declined.json()["status"] == "declined"
    assert declined.json()["title"] == "Payment declined"
    # the screened transaction is the customer's, on the session's device
    stored = await c.get(f"/v1/transactions/{body['transaction_id']}", headers=ADMIN)
    tx = stored.json()["transaction"]
    assert (tx["user_id"], tx["device_id"]) == (p.a["user_id"], p.a["device_id"])
    assert tx["idempotency_key"] == f"c{p.a['user_id']}:pay-ok-0001"
    # history filters and spending
    held_only = (await c.get("/v1/me/transactions", headers=a, params={"status": "held"})).json()
    assert [(t["merchant_name"], t["amount"], t["review"]) for t in held_only] == [
        ("Jeweller", "300.00", "open")
    ]
    newest = (await c.get("/v1/me/transactions", headers=a, params={"limit": 2})).json()
    assert [t["status"] for t in newest] == ["declined", "held"]
    older = (
        await c.get("/v1/me/transactions", headers=a, params={"before_id": newest[-1]["transaction_id"]})
    ).json()
    assert [t["status"] for t in older] == ["approved", "approved"]
    future = (world.clock.now + timedelta(days=1)).isoformat()
    assert (await c.get("/v1/me/transactions", headers=a, params={"since": future})).json() == []
    naive = await c.get("/v1/me/transactions", headers=a, params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422
    spend = (await c.get("/v1/me/analytics/spend", headers=a, params={"by": "category"})).json()
    assert spend == [{"key": "grocery", "currency": "EUR", "total": "39.98", "count": 2}]  # held/declined: no
    month = f"{datetime.now(UTC):%Y-%m}"
    by_month = (await c.get("/v1/me/analytics/spend", headers=a, params={"by": "month"})).json()
    assert by_month == [{"key": month, "currency": "EUR", "total": "39.98", "count": 2}]
    # an analyst releases the held payment: now it is spent
    case = (await c.get("/v1/review", headers=ADMIN)).json()[0]["case"]
    resolved = await c.post(f"/v1/review/{case['id']}/resolve", json={"resolution": "legit"}, headers=ADMIN)
    assert resolved.status_code == 200
    spend = (await c.get("/v1/me/analytics/spend", headers=a)).json()
    assert {row["key"]: row["total"] for row in spend} == {"grocery": "39.98", "jewellery": "300.00"}
    # held and declined payments raised alerts for A alone
    kinds = [x["kind"] for x in (await c.get("/v1/me/alerts", headers=a)).json()]
    assert kinds == ["review", "block"]


async def test_a_frozen_account_sends_nothing_until_unfrozen(world: World) -> None:
    c = world.client
    p = await _two_customers(world)
    a = bearer(p.a["access_token"])
    frozen = await c.post(f"/v1/me/accounts/{p.a_account}/freeze", headers=a)
    assert frozen.status_code == 200 and frozen.json()["status"] == "frozen"
    refused = await c.post(
        "/v1/me/transactions", json=payment(p.a_account, p.shop, "pay-frz-0001"), headers=a
    )
    assert refused.status_code == 409 and "frozen" in refused.json()["detail"]
    assert (await c.post(f"/v1/me/accounts/{p.a_account}/unfreeze", headers=a)).json()["status"] == "active"
    sent = await c.post("/v1/me/transactions", json=payment(p.a_account, p.shop, "pay-frz-0001"), headers=a)
    assert sent.status_code == 201


def _events(text: str) -> list[dict[str, Any]]:
    found = []
    for block in text.split("\n\n"):
        lines = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and not line.startswith(":")
        )
        if lines.get("event") == "alert":
            found.append(json.loads(lines["data"]))
    return found


async def test_the_alert_stream_carries_only_my_events_and_ends_with_my_session(world: World) -> None:
    c = world.client
    p = await _two_customers(world)
    for who, acct, key in ((p.b, p.b_account, "pay-b-big-01"), (p.a, p.a_account, "pay-a-big-01")):
        held = await c.post(
            "/v1/me/transactions",
            json=payment(acct, p.jeweller, key, "300.00"),
            headers=bearer(who["access_token"]),
        )
        assert held.json()["status"] == "held"
    await signin(c, "bob@example.com", device="device-bob2")  # B: a new-device alert too
    staff = (await c.get("/v1/alerts", headers=ADMIN)).json()
    assert {x["user_id"] for x in staff} == {p.a["user_id"], p.b["user_id"]} and len(staff) == 3
    a = bearer(p.a["access_token"])
    for params in ({"max_seconds": 0.3}, {"max_seconds": 0.3, "user_id": p.b["user_id"]}):
        stream = await c.get("/v1/me/alerts/stream", headers=a, params=params)
        assert stream.status_code == 200 and stream.headers["content-type"].startswith("text/event-stream")
        events = _events(stream.text)
        assert [(e["user_id"], e["kind"]) for e in events] == [(p.a["user_id"], "review")]
    resumed = await c.get(
        "/v1/me/alerts/stream",
        headers={**a, "Last-Event-ID": str(events[0]["id"])},
        params={"max_seconds": 0.3},
    )
    assert _events(resumed.text) == []
    await c.post("/v1/auth/signout", headers=a)
    assert (await c.get("/v1/me/alerts/stream", headers=a, params={"max_seconds": 0.3})).status_code == 401


async def test_a_stream_open_when_the_session_ends_stops(world: World) -> None:
    c = world.client
    a = await signup(c, "ada@example.com")
    principal = await world.service.identity.authenticate(a["access_token"])
    assert await world.service.identity.session_live(principal)
    await world.service.identity.sign_out(principal)
    assert not await world.service.identity.session_live(principal)
