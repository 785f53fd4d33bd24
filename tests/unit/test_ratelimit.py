"""Token bucket in memory: burst, refill, retry-after, clock steps, properties."""

from __future__ import annotations

from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.gateway.auth import InMemoryKeyStore, Principal, generate_key, install_key_store, require_role
from vigil.gateway.ratelimit import InMemoryRateLimiter, RateLimit, install_rate_limiter, rate_limited, take


def test_burst_then_refill_with_retry_after() -> None:
    limiter = InMemoryRateLimiter(RateLimit(capacity=3, rate=1.0))
    assert [limiter.allow_sync("k", now=100.0) for _ in range(3)] == [(True, 0.0)] * 3
    allowed, retry = limiter.allow_sync("k", now=100.0)
    assert not allowed and retry == pytest.approx(1.0)
    assert limiter.allow_sync("k", now=100.5) == (False, pytest.approx(0.5))  # refused takes nothing
    assert limiter.allow_sync("k", now=101.0)[0]
    assert limiter.allow_sync("other", now=101.0) == (True, 0.0)  # buckets are per key


def test_cost_and_capacity() -> None:
    limiter = InMemoryRateLimiter(RateLimit(capacity=10, rate=2.0))
    assert limiter.allow_sync("k", cost=10, now=0.0) == (True, 0.0)
    assert limiter.allow_sync("k", cost=4, now=1.0) == (False, pytest.approx(1.0))
    assert limiter.allow_sync("k", cost=4, now=2.0)[0]
    assert limiter.allow_sync("k", cost=1, now=10_000.0)[0]  # refill stops at capacity
    assert limiter.allow_sync("k", cost=10, now=10_000.0) == (False, pytest.approx(0.5))
    with pytest.raises(ValueError, match="exceeds the bucket capacity"):
        limiter.allow_sync("k", cost=11, now=0.0)
    with pytest.raises(ValueError, match="positive"):
        limiter.allow_sync("k", cost=0, now=0.0)


def test_clock_going_backwards_mints_nothing() -> None:
    limiter = InMemoryRateLimiter(RateLimit(capacity=1, rate=1.0))
    assert limiter.allow_sync("k", now=100.0)[0]
    assert not limiter.allow_sync("k", now=50.0)[0]
    assert not limiter.allow_sync("k", now=100.5)[0]  # still measured from 100
    assert limiter.allow_sync("k", now=101.0)[0]


def test_least_recently_used_buckets_are_forgotten() -> None:
    limiter = InMemoryRateLimiter(RateLimit(capacity=1, rate=0.001), max_keys=2)
    for key in ("a", "b", "c"):
        assert limiter.allow_sync(key, now=0.0)[0]
    assert limiter.allow_sync("a", now=0.0)[0]  # forgotten: a fresh, full bucket
    assert not limiter.allow_sync("c", now=0.0)[0]


async def test_async_interface_and_default_clock() -> None:
    limiter = InMemoryRateLimiter(RateLimit.per_minute(60, burst=2))
    assert limiter.limit == RateLimit(capacity=2, rate=1.0)
    assert (await limiter.allow("k"))[0] and (await limiter.allow("k"))[0]
    allowed, retry = await limiter.allow("k")
    assert not allowed and 0 < retry <= 1.0


@pytest.mark.parametrize(
    ("capacity", "rate"), [(0, 1), (1, 0), (-1, 1), (float("inf"), 1), (1, float("nan"))]
)
def test_bad_limits(capacity: float, rate: float) -> None:
    with pytest.raises(ValueError):
        RateLimit(capacity, rate)


@settings(max_examples=150, deadline=None)
@given(
    capacity=st.integers(1, 50),
    rate=st.floats(0.1, 100),
    steps=st.lists(st.tuples(st.floats(0, 10), st.integers(1, 5)), min_size=1, max_size=40),
)
def test_never_more_than_burst_plus_refill(
    capacity: int, rate: float, steps: list[tuple[float, int]]
) -> None:
    limit = RateLimit(capacity, rate)
    limiter = InMemoryRateLimiter(limit)
    now, spent = 0.0, 0
    for gap, cost in steps:
        now += gap
        if cost > capacity:
            continue
        allowed, retry = limiter.allow_sync("k", cost=cost, now=now)
        if allowed:
            spent += cost
            assert retry == 0.0
        else:
            assert retry > 0
            # Waiting exactly retry_after is enough (within float error).
            ok, _, _ = take(limit, *limiter._buckets["k"], now + retry + 1e-9, cost)
            assert ok
        assert spent <= capacity + now * rate + 1e-6


async def test_fastapi_dependency_answers_429_with_retry_after() -> None:
    key, other = generate_key(), generate_key()
    store = InMemoryKeyStore()
    store.add("shop", "client", key)
    store.add("bank", "client", other)
    api = FastAPI()
    install_key_store(api, store)
    install_rate_limiter(api, InMemoryRateLimiter(RateLimit(capacity=2, rate=0.01)))

    # Module-level names only in the annotation: FastAPI resolves it in this module's globals.
    @api.post("/v1/screen")
    async def screen(
        who: Annotated[Principal, Depends(rate_limited(require_role("client")))],
    ) -> dict[str, str]:
        return {"name": who.name}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test") as client:
        codes = [(await client.post("/v1/screen", headers={"X-API-Key": key})).status_code for _ in range(2)]
        assert codes == [200, 200]
        r = await client.post("/v1/screen", headers={"X-API-Key": key})
        assert r.status_code == 429 and r.json()["error"] == "rate_limited"
        assert 1 <= int(r.headers["retry-after"]) <= 100
        assert (await client.post("/v1/screen", headers={"X-API-Key": other})).status_code == 200  # per key
        assert (await client.post("/v1/screen")).status_code == 401  # authentication comes first
