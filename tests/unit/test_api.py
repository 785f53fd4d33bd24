"""The HTTP API over a real (SQLite) database, served in-process: no Ray, no network."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from vigil.api import create_api, install_service
from vigil.db.migrate import upgrade_async
from vigil.service import VigilService


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'vigil.db'}"
    await upgrade_async(url)
    api = create_api()
    service = VigilService(url)
    install_service(api, service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test") as c:
        yield c
    await service.close()


async def _world(client: httpx.AsyncClient) -> dict[str, int]:
    user = await client.post(
        "/v1/users", json={"full_name": "Ada", "country": "gb", "home_lat": 51.5, "home_lon": -0.12}
    )
    assert user.status_code == 201, user.text
    assert user.json()["country"] == "GB"
    user_id = user.json()["user_id"]
    account = await client.post("/v1/accounts", json={"user_id": user_id, "currency": "eur"})
    assert account.status_code == 201, account.text
    merchant = await client.post(
        "/v1/merchants", json={"name": "Shop", "category": "grocery", "country": "GB", "lat": 51.5, "lon": 0}
    )
    assert merchant.status_code == 201, merchant.text
    return {
        "user_id": user_id,
        "account_id": account.json()["account_id"],
        "merchant_id": merchant.json()["merchant_id"],
    }


def _tx(ids: dict[str, int], **overrides: object) -> dict[str, object]:
    return {
        "idempotency_key": "order-0001",
        "amount": "19.99",
        "currency": "EUR",
        "channel": "ecommerce",
        "country": "GB",
        "created_at": "2026-03-01T12:00:00Z",
        **ids,
        **overrides,
    }


async def test_health_and_docs(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["schema_revision"] == "0001"
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/transactions" in spec["paths"]
    assert "x-request-id" in health.headers


async def test_readyz_is_503_on_an_unmigrated_database(tmp_path: Path) -> None:
    api = create_api()
    service = VigilService(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    install_service(api, service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test") as c:
        response = await c.get("/readyz")
    await service.close()
    assert response.status_code == 503
    assert "vigil db upgrade" in response.json()["detail"]


async def test_transaction_is_recorded_and_read_back(client: httpx.AsyncClient) -> None:
    ids = await _world(client)
    created = await client.post("/v1/transactions", json=_tx(ids))
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["amount"] == "19.99" and body["created_at"].startswith("2026-03-01T12:00:00")
    fetched = await client.get(f"/v1/transactions/{body['transaction_id']}")
    assert fetched.status_code == 200 and fetched.json() == body
    history = await client.get(f"/v1/users/{ids['user_id']}/transactions", params={"hours": 24 * 366})
    assert [t["transaction_id"] for t in history.json()] == [body["transaction_id"]]


@pytest.mark.parametrize(
    ("overrides", "status", "reason"),
    [
        ({"amount": "-5.00"}, 422, "greater than 0"),
        ({"currency": "XXX"}, 422, "unknown currency"),
        ({"user_id": 424242}, 422, "user 424242 does not exist"),
        ({"account_id": 424242}, 422, "account 424242 does not exist"),
        ({"amount": "NaN"}, 422, "amount"),
        ({"created_at": "yesterday"}, 422, "created_at"),
        ({"unexpected": 1}, 422, "Extra inputs are not permitted"),
    ],
)
async def test_bad_transactions_get_a_4xx_with_a_reason_and_change_nothing(
    client: httpx.AsyncClient, overrides: dict[str, object], status: int, reason: str
) -> None:
    ids = await _world(client)
    response = await client.post("/v1/transactions", json=_tx(ids, **overrides))
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]
    history = await client.get(f"/v1/users/{ids['user_id']}/transactions", params={"hours": 24 * 366})
    assert history.json() == []


async def test_duplicate_idempotency_key_is_a_409_and_the_first_row_stays(client: httpx.AsyncClient) -> None:
    ids = await _world(client)
    first = await client.post("/v1/transactions", json=_tx(ids))
    again = await client.post("/v1/transactions", json=_tx(ids, amount="500.00"))
    assert again.status_code == 409
    assert again.json()["error"] == "duplicate_idempotency_key"
    stored = await client.get(f"/v1/transactions/{first.json()['transaction_id']}")
    assert stored.json()["amount"] == "19.99"


async def test_malformed_and_oversized_bodies(client: httpx.AsyncClient) -> None:
    garbage = await client.post(
        "/v1/transactions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert garbage.status_code == 422
    huge = await client.post(
        "/v1/transactions", content=b"x" * 200_000, headers={"content-type": "application/json"}
    )
    assert huge.status_code == 413 and huge.json()["error"] == "payload_too_large"
    missing = await client.get("/v1/transactions/99999")
    assert missing.status_code == 404 and "99999" in missing.json()["detail"]
