"""The HTTP API over a real (SQLite) database, served in-process: no Ray, no network."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from vigil.db.migrate import head_revision, upgrade_async
from vigil.decision.local_graph import LocalGraph
from vigil.decision.policy import DecisionPolicy
from vigil.gateway.api import create_api, install_service
from vigil.gateway.auth import InMemoryKeyStore, install_key_store
from vigil.gateway.ratelimit import InMemoryRateLimiter, RateLimit, install_rate_limiter
from vigil.service import VigilService

ADMIN_KEY, CLIENT_KEY, ANALYST_KEY = "adm-" + "a" * 32, "cli-" + "c" * 32, "ana-" + "n" * 32


@pytest.fixture(params=[True, False], ids=["fast-path", "fastapi-only"])
async def client(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[httpx.AsyncClient]:
    """Every test runs with and without :class:`vigil.gateway.api.ScreenFastPath`: same answers."""
    async with _client(tmp_path, fast_path=request.param) as c:
        yield c


@contextlib.asynccontextmanager
async def _client(tmp_path: Path, *, fast_path: bool) -> AsyncIterator[httpx.AsyncClient]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'vigil.db'}"
    await upgrade_async(url)
    api = create_api(screen_fast_path=fast_path)
    service = VigilService(url)
    # No models: the degraded mode (rules only, large amounts to review); the model path is
    # exercised with real models in tests/integration.
    service.attach_screening(LocalGraph(url, supervised=None, anomaly=None), DecisionPolicy())
    install_service(api, service)
    keys = InMemoryKeyStore()
    keys.add("ops", "admin", ADMIN_KEY)
    keys.add("shop-app", "client", CLIENT_KEY)
    keys.add("ana", "analyst", ANALYST_KEY)
    install_key_store(api, keys)
    install_rate_limiter(api, InMemoryRateLimiter(RateLimit(capacity=20, rate=0.001)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api),
        base_url="http://test",
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    ) as c:
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
    assert ready.status_code == 200 and ready.json()["schema_revision"] == head_revision()
    assert (await client.get("/docs")).status_code == 200
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/transactions" in spec["paths"]
    assert "x-request-id" in health.headers


async def test_every_request_gets_an_id_and_one_json_access_line(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    ids = await _world(client)
    with caplog.at_level(logging.INFO, logger="vigil.access"):
        ok = await client.post("/v1/transactions", json=_tx(ids), headers={"x-request-id": "req-42"})
        huge = await client.post(
            "/v1/transactions", content=b"x" * 200_000, headers={"content-type": "application/json"}
        )
    assert ok.status_code == 201 and ok.headers["x-request-id"] == "req-42"
    assert huge.status_code == 413 and len(huge.headers["x-request-id"]) == 32  # a new one
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "vigil.access"]
    assert [(line["request_id"], line["status"]) for line in lines] == [
        ("req-42", 201),
        (huge.headers["x-request-id"], 413),
    ]
    assert lines[0]["method"] == "POST" and lines[0]["path"] == "/v1/transactions"
    assert lines[0]["client"] and lines[1]["client"] is None  # the 413 never reached auth
    assert all(line["ms"] >= 0 for line in lines)


async def test_over_capacity_is_a_fast_503_that_stores_nothing_and_a_retry_succeeds(
    client: httpx.AsyncClient,
) -> None:
    import asyncio

    ids = await _world(client)
    service = client._transport.app.state.service  # type: ignore[attr-defined]
    service.configure_screening(DecisionPolicy(), max_concurrency=1, max_queue=2)
    bodies = [_tx(ids, idempotency_key=f"burst-{i:04d}") for i in range(10)]
    answers = await asyncio.gather(*(client.post("/v1/transactions", json=b) for b in bodies))
    refused = [b for b, a in zip(bodies, answers, strict=True) if a.status_code == 503]
    assert refused and all(a.status_code in (201, 503) for a in answers), [a.status_code for a in answers]
    for answer in answers:
        if answer.status_code == 503:
            assert answer.headers["retry-after"] == "1" and answer.json()["error"] == "unavailable"
    stored = await client.get(f"/v1/users/{ids['user_id']}/transactions", params={"hours": 24 * 366})
    assert len(stored.json()) == 10 - len(refused)  # a refusal stored nothing
    service.configure_screening(DecisionPolicy(), max_queue=0)
    retried = [await client.post("/v1/transactions", json=b) for b in refused]
    assert all(r.status_code == 201 for r in retried)


async def test_readyz_is_503_on_an_unmigrated_database(tmp_path: Path) -> None:
    api = create_api()
    service = VigilService(f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}")
    install_service(api, service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test") as c:
        response = await c.get("/readyz")
    await service.close()
    assert response.status_code == 503
    assert "vigil db upgrade" in response.json()["detail"]


async def test_readyz_is_503_on_a_database_behind_the_code(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    await upgrade_async(url, "0001")
    api = create_api()
    service = VigilService(url)
    install_service(api, service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test") as c:
        response = await c.get("/readyz")
    await service.close()
    assert response.status_code == 503
    assert response.json()["detail"] == (
        f"database schema is at 0001, this code needs {head_revision()}: run `vigil db upgrade`"
    )
    assert head_revision() != "0001"


async def test_transaction_is_screened_stored_and_read_back(client: httpx.AsyncClient) -> None:
    ids = await _world(client)
    created = await client.post("/v1/transactions", json=_tx(ids))
    assert created.status_code == 201, created.text
    decision = created.json()
    assert decision["outcome"] == "approve" and decision["replayed"] is False
    assert decision["rules_version"] and decision["fraud_score"] is None
    fetched = await client.get(f"/v1/transactions/{decision['transaction_id']}")
    assert fetched.status_code == 200
    stored = fetched.json()["transaction"]
    assert stored["amount"] == "19.99" and stored["created_at"].startswith("2026-03-01T12:00:00")
    assert fetched.json()["decision"]["outcome"] == "approve"
    history = await client.get(f"/v1/users/{ids['user_id']}/transactions", params={"hours": 24 * 366})
    assert [t["transaction_id"] for t in history.json()] == [decision["transaction_id"]]


async def test_without_a_model_large_amounts_go_to_review(client: httpx.AsyncClient) -> None:
    ids = await _world(client)
    response = await client.post("/v1/transactions", json=_tx(ids, amount="5000.00"))
    assert response.status_code == 201, response.text
    assert response.json()["outcome"] == "review"
    assert "FRAUD_SCORE_UNAVAILABLE" in response.json()["reason_codes"]


async def test_a_retry_returns_the_stored_decision(client: httpx.AsyncClient) -> None:
    ids = await _world(client)
    first = await client.post("/v1/transactions", json=_tx(ids))
    again = await client.post("/v1/transactions", json=_tx(ids))
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert {k: v for k, v in again.json().items() if k != "replayed"} == {
        k: v for k, v in first.json().items() if k != "replayed"
    }


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
    assert again.status_code == 409, again.text
    assert again.json()["error"] == "duplicate_idempotency_key"
    stored = await client.get(f"/v1/transactions/{first.json()['transaction_id']}")
    assert stored.json()["transaction"]["amount"] == "19.99"


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


BEYOND_BIGINT = 2**63  # one past the largest id a BIGINT column (and SQLite's INTEGER) holds
_KYC_FILES = [("document", ("doc.jpg", b"not an image")), ("selfie", ("me.jpg", b"not an image"))]


@pytest.mark.parametrize(
    ("method", "url", "kwargs", "field"),
    [
        ("GET", f"/v1/transactions/{BEYOND_BIGINT}", {}, "path.transaction_id"),
        ("GET", f"/v1/users/{BEYOND_BIGINT}/transactions", {}, "path.user_id"),
        ("GET", "/v1/alerts", {"params": {"user_id": BEYOND_BIGINT}}, "query.user_id"),
        ("GET", "/v1/alerts", {"params": {"after_id": BEYOND_BIGINT}}, "query.after_id"),
        ("GET", "/v1/alerts/stream", {"params": {"user_id": BEYOND_BIGINT}}, "query.user_id"),
        (
            "GET",
            "/v1/alerts/stream",
            {"headers": {"Last-Event-ID": str(BEYOND_BIGINT)}},
            "header.last-event-id",
        ),
        ("GET", "/v1/review", {"params": {"after_id": BEYOND_BIGINT}}, "query.after_id"),
        ("GET", "/v1/blacklist", {"params": {"after_id": BEYOND_BIGINT}}, "query.after_id"),
        ("DELETE", f"/v1/blacklist/{BEYOND_BIGINT}", {}, "path.entry_id"),
        ("POST", f"/v1/review/{BEYOND_BIGINT}/claim", {}, "path.case_id"),
        ("POST", f"/v1/review/{BEYOND_BIGINT}/resolve", {"json": {"resolution": "fraud"}}, "path.case_id"),
        ("GET", f"/v1/kyc/submissions/{BEYOND_BIGINT}", {}, "path.submission_id"),
        (
            "POST",
            "/v1/kyc/submissions",
            {"data": {"user_id": str(BEYOND_BIGINT)}, "files": _KYC_FILES},
            "body.user_id",
        ),
        ("POST", "/v1/accounts", {"json": {"user_id": BEYOND_BIGINT, "currency": "EUR"}}, "body.user_id"),
        (
            "POST",
            "/v1/transactions",
            {"json": _tx({"user_id": 1, "account_id": 1, "merchant_id": BEYOND_BIGINT})},
            "body.merchant_id",
        ),
    ],
)
async def test_an_id_beyond_the_bigint_range_is_a_422_naming_the_field(
    client: httpx.AsyncClient, method: str, url: str, kwargs: dict[str, object], field: str
) -> None:
    """Was a 500 (the driver's overflow) on 8 routes, found by Schemathesis (issue 32)."""
    response = await client.request(method, url, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert f"{field}: Input should be less than or equal to {BEYOND_BIGINT - 1}" in response.json()["detail"]


async def test_the_largest_id_reaches_the_database_and_is_simply_not_found(client: httpx.AsyncClient) -> None:
    largest = BEYOND_BIGINT - 1
    missing = await client.get(f"/v1/transactions/{largest}")
    assert missing.status_code == 404 and str(largest) in missing.json()["detail"]
    assert (await client.get("/v1/alerts", params={"user_id": largest, "after_id": largest})).json() == []
    unknown = await client.post("/v1/accounts", json={"user_id": largest, "currency": "EUR"})
    assert unknown.status_code == 422 and unknown.json()["error"] == "unknown_reference", unknown.text


async def test_every_id_in_the_openapi_document_states_its_bounds(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    transaction = spec["paths"]["/v1/transactions/{transaction_id}"]["get"]["parameters"][0]["schema"]
    assert (transaction["minimum"], transaction["maximum"]) == (1, BEYOND_BIGINT - 1)
    after_id = next(p for p in spec["paths"]["/v1/review"]["get"]["parameters"] if p["name"] == "after_id")
    assert (after_id["schema"]["minimum"], after_id["schema"]["maximum"]) == (0, BEYOND_BIGINT - 1)
    # FastAPI writes the bounds of body fields as doubles: 2**63 - 1 comes out as 2**63
    user_id = spec["components"]["schemas"]["AccountCreate"]["properties"]["user_id"]
    assert float(user_id["maximum"]) == float(BEYOND_BIGINT - 1)


async def test_unstorable_text_and_a_malformed_last_event_id_are_422s(client: httpx.AsyncClient) -> None:
    """PostgreSQL refuses NUL in text (a 500 there, found by Schemathesis); the stream's
    Last-Event-ID was read with int() (a 500 on anything but digits)."""
    nul = await client.post("/v1/devices", json={"fingerprint": "ab\u0000cd", "os": "android"})
    assert nul.status_code == 422 and "body.fingerprint: Value error, text must not contain NUL" in nul.text
    resume = await client.get("/v1/alerts/stream", headers={"Last-Event-ID": "latest"})
    assert resume.status_code == 422 and "header.last-event-id" in resume.json()["detail"]


async def test_a_timestamp_outside_1970_to_2200_is_a_422_naming_the_field(client: httpx.AsyncClient) -> None:
    """Year 0 in UTC was a 500 (an OverflowError converting it); a year-1 or year-9999 event time
    or user creation time made the scoring graph fail, a 503 that a retry could never cure."""
    ids = await _world(client)
    reason = "timestamp must be from 1970-01-01 to before 2200-01-01"
    year_zero = {
        "kind": "ip",
        "value": "203.0.113.9",
        "reason": "r",
        "expires_at": "0001-01-01T00:43:51+15:10",
    }
    for response, field in [
        (await client.post("/v1/blacklist", json=year_zero), "body.expires_at"),
        (
            await client.post("/v1/transactions", json=_tx(ids, created_at="9999-12-31T23:59:59Z")),
            "body.created_at",
        ),
        (
            await client.post("/v1/transactions", json=_tx(ids, created_at="0001-01-01T00:00:00Z")),
            "body.created_at",
        ),
        (
            await client.post(
                "/v1/users",
                json={
                    "full_name": "B",
                    "country": "GB",
                    "home_lat": 0,
                    "home_lon": 0,
                    "created_at": "0001-01-01T00:00:00Z",
                },
            ),
            "body.created_at",
        ),
    ]:
        assert response.status_code == 422, response.text
        assert f"{field}: Value error, {reason}" in response.json()["detail"]
    edge = await client.post("/v1/transactions", json=_tx(ids, created_at="1970-01-01T00:00:00Z"))
    assert edge.status_code == 201, edge.text


async def test_an_alert_stream_ends_after_max_seconds_not_after_a_whole_poll(
    client: httpx.AsyncClient,
) -> None:
    import time

    from vigil.gateway.sse import ALERT_POLL_S

    started = time.perf_counter()
    response = await client.get("/v1/alerts/stream", params={"max_seconds": 0.05})
    assert response.status_code == 200 and response.text.startswith(": connected")
    assert time.perf_counter() - started < ALERT_POLL_S  # was ALERT_POLL_S at least: it slept a full poll


async def test_authentication_roles_and_rate_limits(client: httpx.AsyncClient) -> None:
    ids = await _world(client)
    anonymous = await client.post("/v1/transactions", json=_tx(ids), headers={"Authorization": ""})
    assert anonymous.status_code == 401 and "WWW-Authenticate" in anonymous.headers
    wrong = await client.post(
        "/v1/transactions", json=_tx(ids), headers={"Authorization": "Bearer nope-" + "x" * 30}
    )
    assert wrong.status_code == 401
    analyst = await client.post(
        "/v1/transactions", json=_tx(ids), headers={"Authorization": f"Bearer {ANALYST_KEY}"}
    )
    assert analyst.status_code == 403 and analyst.json()["error"] == "forbidden"
    as_client = {"X-API-Key": CLIENT_KEY, "Authorization": ""}
    statuses = [
        (
            await client.post(
                "/v1/transactions", json=_tx(ids, idempotency_key=f"order-{i:05d}"), headers=as_client
            )
        ).status_code
        for i in range(25)
    ]
    assert statuses[:20] == [201] * 20
    assert statuses[20:] == [429] * 5
    limited = await client.post(
        "/v1/transactions", json=_tx(ids, idempotency_key="order-99999"), headers=as_client
    )
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    cannot_create = await client.post("/v1/users", json={}, headers=as_client)
    assert cannot_create.status_code == 403


async def test_blacklist_routes_add_end_and_list_with_clear_errors(client: httpx.AsyncClient) -> None:
    as_analyst = {"Authorization": f"Bearer {ANALYST_KEY}"}
    body = {"kind": "ip", "value": "203.0.113.5", "reason": "card testing"}
    added = await client.post("/v1/blacklist", json=body, headers=as_analyst)
    assert added.status_code == 201 and added.json()["added_by"] == "ana", added.text
    entry_id = added.json()["id"]
    twice = await client.post("/v1/blacklist", json=body, headers=as_analyst)
    assert twice.status_code == 409 and f"entry {entry_id}" in twice.json()["detail"]
    for bad in ({**body, "kind": "planet"}, {**body, "expires_at": "2020-01-01T00:00:00Z"}, {"kind": "ip"}):
        refused = await client.post("/v1/blacklist", json=bad, headers=as_analyst)
        assert refused.status_code == 422, (bad, refused.text)
    not_admin = await client.delete(f"/v1/blacklist/{entry_id}", headers=as_analyst)
    assert not_admin.status_code == 403
    ended = await client.delete(f"/v1/blacklist/{entry_id}")  # the admin
    assert ended.status_code == 200 and ended.json()["removed_by"] == "ops"
    assert ended.json()["expires_at"] is not None
    assert (await client.delete(f"/v1/blacklist/{entry_id}")).json() == ended.json()
    assert (await client.delete("/v1/blacklist/999999")).status_code == 404
    readded = await client.post("/v1/blacklist", json=body, headers=as_analyst)
    assert readded.status_code == 201 and readded.json()["id"] != entry_id
    listed = (await client.get("/v1/blacklist", headers=as_analyst)).json()
    assert [(e["id"], e["expires_at"] is None) for e in listed] == [
        (entry_id, False),
        (readded.json()["id"], True),
    ]
    current = (await client.get("/v1/blacklist", params={"active": "true"}, headers=as_analyst)).json()
    assert [e["id"] for e in current] == [readded.json()["id"]]
    ended_only = (await client.get("/v1/blacklist", params={"active": "false"}, headers=as_analyst)).json()
    assert [e["id"] for e in ended_only] == [entry_id]
    page = (
        await client.get("/v1/blacklist", params={"limit": 1, "after_id": entry_id}, headers=as_analyst)
    ).json()
    assert [e["id"] for e in page] == [readded.json()["id"]]
    too_many = await client.get("/v1/blacklist", params={"limit": 501}, headers=as_analyst)
    assert too_many.status_code == 422


async def test_review_queue_claim_and_resolve_writes_a_label(client: httpx.AsyncClient) -> None:
    ids = await _world(client)
    decided = (await client.post("/v1/transactions", json=_tx(ids, amount="5000.00"))).json()
    assert decided["outcome"] == "review"
    as_analyst = {"Authorization": f"Bearer {ANALYST_KEY}"}
    queue = (await client.get("/v1/review", headers=as_analyst)).json()
    assert [item["transaction"]["transaction_id"] for item in queue] == [decided["transaction_id"]]
    case_id = queue[0]["case"]["id"]
    claimed = await client.post(f"/v1/review/{case_id}/claim", headers=as_analyst)
    assert claimed.status_code == 200 and claimed.json()["assignee"] == "ana"
    other = await client.post(f"/v1/review/{case_id}/resolve", json={"resolution": "fraud"})  # the admin
    assert other.status_code == 409 and "claimed by ana" in other.json()["detail"]
    bad = await client.post(f"/v1/review/{case_id}/resolve", json={"resolution": "maybe"}, headers=as_analyst)
    assert bad.status_code == 422
    resolved = await client.post(
        f"/v1/review/{case_id}/resolve",
        json={"resolution": "fraud", "notes": "customer confirmed"},
        headers=as_analyst,
    )
    assert resolved.status_code == 200 and resolved.json()["status"] == "resolved"
    assert (await client.get("/v1/review", headers=as_analyst)).json() == []
    again = await client.post(
        f"/v1/review/{case_id}/resolve", json={"resolution": "legit"}, headers=as_analyst
    )
    assert again.status_code == 409
    alerts = (await client.get("/v1/alerts", params={"user_id": ids["user_id"]})).json()
    assert [a["transaction_id"] for a in alerts] == [decided["transaction_id"]]


async def test_alert_stream_sends_server_sent_events(client: httpx.AsyncClient) -> None:
    ids = await _world(client)
    decided = (await client.post("/v1/transactions", json=_tx(ids, amount="5000.00"))).json()
    response = await client.get("/v1/alerts/stream", params={"user_id": ids["user_id"], "max_seconds": 0.5})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    assert f'"transaction_id":{decided["transaction_id"]}' in response.text
    assert "event: alert" in response.text


async def test_metrics_count_outcomes(client: httpx.AsyncClient) -> None:
    ids = await _world(client)
    await client.post("/v1/transactions", json=_tx(ids))
    text = (await client.get("/metrics")).text
    assert 'vigil_decisions_total{outcome="approve"}' in text
    assert "vigil_stage_seconds_bucket" in text
    # request latency by route template (not the raw path with its ids) and status class
    await client.get("/v1/transactions/987654")
    text = (await client.get("/metrics")).text
    assert 'vigil_http_request_seconds_count{method="POST",route="/v1/transactions",status="2xx"}' in text
    assert 'route="/v1/transactions/{transaction_id}",status="4xx"' in text
    # no label carries the raw id (a float's digits may: a latency sum once read 0.0027248377999876)
    assert not [label for label in re.findall(r'="([^"]*)"', text) if "987654" in label]


async def test_the_fast_path_answers_exactly_as_the_fastapi_route(tmp_path: Path) -> None:
    """The same requests to an app with :class:`vigil.gateway.api.ScreenFastPath` and one without:
    same status, JSON body (but for timings) and headers, good and bad requests alike."""
    (tmp_path / "fast").mkdir()
    (tmp_path / "plain").mkdir()
    ok = {"content-type": "application/json"}
    as_client = ok | {"X-API-Key": CLIENT_KEY, "Authorization": ""}
    async with (
        _client(tmp_path / "fast", fast_path=True) as fast,
        _client(tmp_path / "plain", fast_path=False) as plain,
    ):
        ids = await _world(fast)
        assert await _world(plain) == ids

        def body(**overrides: object) -> bytes:
            return json.dumps(_tx(ids, **overrides)).encode()

        requests: list[tuple[bytes, dict[str, str]]] = [
            (body(), ok),  # screened: 201
            (body(), ok),  # a retry: 200, replayed
            (body(amount="500.00"), ok),  # same key, other request: 409
            (body(idempotency_key="order-0002", amount="5000.00"), ok | {"x-request-id": "r-1"}),
            (body(idempotency_key="order-0003", user_id=424242), ok),  # unknown user: 422
            (body(idempotency_key="order-0004", amount="-1"), ok),
            (body(idempotency_key="order-0005", unexpected=1), ok),
            (b"{not json", ok),
            (b"", ok),
            (b"[1, 2]", ok),
            ("ü".encode("latin-1"), ok),
            (body(idempotency_key="order-0006"), {"content-type": "text/plain"}),
            (body(idempotency_key="order-0007"), {}),
            (body(idempotency_key="order-0008"), {"content-type": "application/json; charset=utf-8"}),
            (body(idempotency_key="order-0009"), {"content-type": "application/vnd.vigil+json"}),
            (body(idempotency_key="order-0010"), ok | {"Authorization": ""}),
            (body(idempotency_key="order-0011"), ok | {"Authorization": f"Bearer {ANALYST_KEY}"}),
            (body(idempotency_key="order-0012"), ok | {"Authorization": "Bearer nope-" + "x" * 30}),
            *((body(idempotency_key=f"burst-{i:04d}"), as_client) for i in range(22)),  # 429s
            (b"[" * 100_000, ok),
        ]
        before = _fast_answers(await fast.get("/metrics"))
        for content, headers in requests:
            a = await fast.post("/v1/transactions", content=content, headers=headers)
            b = await plain.post("/v1/transactions", content=content, headers=headers)
            assert a.status_code == b.status_code, (content[:80], a.text, b.text)
            assert _comparable(a) == _comparable(b), (content[:80], a.text, b.text)
            for name in ("content-type", "retry-after", "www-authenticate"):
                if name == "retry-after" and a.status_code == 429:  # counts down between the two
                    assert (name in a.headers) == (name in b.headers)
                    continue
                assert a.headers.get(name) == b.headers.get(name), (name, content[:80])
            if "x-request-id" in headers:
                assert a.headers["x-request-id"] == b.headers["x-request-id"] == headers["x-request-id"]
        exposition = await fast.get("/metrics")
        # the well-formed ones took the fast path: 201, 200, 409, 201, 422 (unknown user), the
        # charset one, and 20 of the burst (the 2 over the limit went to the route)
        assert _fast_answers(exposition) - before == 26
        # a fast answer is timed under the route's template, like the route's own answers
        label = 'vigil_http_request_seconds_count{method="POST",route="/v1/transactions",status="2xx"}'
        timed = _sample(exposition, label)
        assert (await fast.post("/v1/transactions", content=body(), headers=ok)).status_code == 200
        assert _sample(await fast.get("/metrics"), label) == timed + 1


def _fast_answers(exposition: httpx.Response) -> float:
    return _sample(exposition, 'vigil_screen_requests_total{answered_by="fast_path"}')


def _sample(exposition: httpx.Response, name: str) -> float:
    lines = [x for x in exposition.text.splitlines() if x.startswith(name + " ")]
    return float(lines[0][len(name) + 1 :]) if lines else 0.0


def _comparable(response: httpx.Response) -> object:
    try:
        data = response.json()
    except ValueError:
        return response.text
    if isinstance(data, dict):
        timing = {"latency_ms", "decided_at"} | ({"detail"} if data.get("error") == "rate_limited" else set())
        return {k: v for k, v in data.items() if k not in timing}
    return data
