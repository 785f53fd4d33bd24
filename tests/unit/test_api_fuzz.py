"""No input yields a 5xx: Hypothesis throws arbitrary JSON (and near-valid transactions) at every
write route of the real app (SQLite, in-process graph). Bad input must be a 4xx with a reason,
and nothing may be stored for it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vigil.db.migrate import upgrade_async
from vigil.decision.local_graph import LocalGraph
from vigil.decision.policy import DecisionPolicy
from vigil.gateway.api import create_api, install_service
from vigil.gateway.auth import InMemoryKeyStore, install_key_store
from vigil.gateway.ratelimit import InMemoryRateLimiter, RateLimit, install_rate_limiter
from vigil.service import VigilService

KEY = "fuzz-" + "k" * 32
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
FIELDS = ["idempotency_key", "user_id", "account_id", "merchant_id", "device_id", "ip", "amount", "currency",
          "channel", "country", "lat", "lon", "created_at"]  # fmt: skip
VALID: dict[str, Any] = {
    "idempotency_key": "fuzz-000001", "user_id": 1, "account_id": 1, "merchant_id": 1, "amount": "10.00",
    "currency": "EUR", "channel": "pos", "country": "GB",
}  # fmt: skip


class Client:
    """A synchronous face on an in-process ASGI client: Hypothesis's examples are sync, the app
    is async, and everything must run on one event loop (the portal's) for the engine's pool."""

    def __init__(self, portal: BlockingPortal, client: httpx.AsyncClient) -> None:
        self.portal, self.client = portal, client

    def post(self, route: str, **kwargs: Any) -> httpx.Response:
        return self.portal.call(lambda: self.client.post(route, **kwargs))


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Client]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('fuzz') / 'vigil.db'}"
    asyncio.run(upgrade_async(url))
    api = create_api()
    service = VigilService(url)
    service.attach_screening(LocalGraph(url, supervised=None, anomaly=None), DecisionPolicy())
    install_service(api, service)
    keys = InMemoryKeyStore()
    keys.add("fuzzer", "admin", KEY)
    install_key_store(api, keys)
    install_rate_limiter(api, InMemoryRateLimiter(RateLimit(capacity=10**9, rate=10**6)))
    transport = httpx.ASGITransport(app=api, raise_app_exceptions=False)
    with start_blocking_portal() as portal:
        async_client = httpx.AsyncClient(
            transport=transport, base_url="http://test", headers={"Authorization": f"Bearer {KEY}"}
        )
        c = Client(portal, async_client)
        user = c.post(
            "/v1/users", json={"full_name": "F", "country": "GB", "home_lat": 0, "home_lon": 0}
        ).json()
        c.post("/v1/accounts", json={"user_id": user["user_id"], "currency": "EUR"})
        c.post("/v1/merchants", json={"name": "M", "category": "x", "country": "GB", "lat": 0, "lon": 0})
        yield c
        portal.call(async_client.aclose)
        portal.call(service.close)


def _check(response: Any) -> None:
    assert response.status_code < 500, (response.status_code, response.text[:500])
    if response.status_code >= 400:
        body = response.json()
        assert body["error"] and body["detail"], body


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(["/v1/transactions", "/v1/users", "/v1/accounts", "/v1/merchants", "/v1/devices",
                              "/v1/blacklist", "/v1/review/1/resolve"]), body=json_values)  # fmt: skip
def test_arbitrary_json_never_yields_a_5xx(client: Client, route: str, body: Any) -> None:
    _check(client.post(route, json=body))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=json_values, key=st.text(min_size=8, max_size=40))
def test_near_valid_transactions_get_a_decision_or_a_4xx(
    client: Client, field: str, value: Any, key: str
) -> None:
    body = {**VALID, "idempotency_key": key, field: value}
    _check(client.post("/v1/transactions", json=body))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=300))
def test_garbage_bytes_are_a_4xx(client: Client, raw: bytes) -> None:
    _check(client.post("/v1/transactions", content=raw, headers={"content-type": "application/json"}))
