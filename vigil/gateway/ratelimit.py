"""Token-bucket rate limiting per client key, in memory or on Redis.

A bucket holds up to ``capacity`` tokens (the burst) and refills at ``rate`` tokens per second; a
request costing ``cost`` tokens is allowed when the bucket holds that many, and they are taken.
A refused request takes nothing and learns ``retry_after_s``: the seconds until enough tokens
will be there (what a 429's ``Retry-After`` header should carry, rounded up).

Key buckets by the caller's :class:`~vigil.gateway.auth.Principal` name, never by the raw API key: the
key is a secret and must not end up in Redis or in logs.

Time is a parameter: ``now`` is seconds on any clock that does not jump (monotonic in one process).
With several replicas sharing Redis their clocks differ, so :class:`RedisRateLimiter` uses the
Redis server's clock when ``now`` is None; tests pass ``now``. A clock that goes backwards
refills nothing (elapsed time is clamped at zero).
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from fastapi import Depends, FastAPI, Request

from vigil.errors import VigilError
from vigil.gateway.auth import Principal, error_with_headers


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``capacity`` tokens (burst), refilled at ``rate`` tokens per second."""

    capacity: float
    rate: float

    def __post_init__(self) -> None:
        if not (self.capacity > 0 and math.isfinite(self.capacity)):
            raise ValueError(f"capacity must be a positive number, got {self.capacity}")
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(f"rate must be a positive number of tokens per second, got {self.rate}")

    @classmethod
    def per_minute(cls, requests: float, *, burst: float | None = None) -> RateLimit:
        return cls(capacity=burst if burst is not None else requests, rate=requests / 60.0)

    def check_cost(self, cost: float) -> None:
        if not cost > 0:
            raise ValueError(f"cost must be positive, got {cost}")
        if cost > self.capacity:
            raise ValueError(f"cost {cost} exceeds the bucket capacity {self.capacity}: it could never pass")


def take(limit: RateLimit, tokens: float, last: float, now: float, cost: float) -> tuple[bool, float, float]:
    """One token-bucket step: ``(allowed, retry_after_s, tokens_left)`` at ``now``.

    The pure arithmetic both limiters share (the Lua script mirrors it).
    """
    elapsed = max(0.0, now - last)
    tokens = min(limit.capacity, tokens + elapsed * limit.rate)
    if tokens >= cost:
        return True, 0.0, tokens - cost
    return False, (cost - tokens) / limit.rate, tokens


class RateLimiter(Protocol):
    async def allow(self, key: str, cost: float = 1, now: float | None = None) -> tuple[bool, float]:
        """``(allowed, retry_after_s)`` for ``key``; ``retry_after_s`` is 0 when allowed."""
        ...


class InMemoryRateLimiter:
    """Buckets in a dict, for one process (the embedded default and tests).

    At most ``max_keys`` buckets are kept; the least recently used go first. Forgetting a bucket
    only makes its next request see a full bucket, which is what an idle bucket would be anyway
    once ``capacity / rate`` seconds have passed.
    """

    def __init__(self, limit: RateLimit, *, max_keys: int = 100_000) -> None:
        self.limit = limit
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow_sync(self, key: str, cost: float = 1, now: float | None = None) -> tuple[bool, float]:
        self.limit.check_cost(cost)
        now = time.monotonic() if now is None else now
        tokens, last = self._buckets.pop(key, (self.limit.capacity, now))
        allowed, retry_after, left = take(self.limit, tokens, last, now, cost)
        # Keep the later of the two times so a clock step backwards cannot mint tokens later.
        self._buckets[key] = (left, max(last, now))
        while len(self._buckets) > self._max_keys:
            self._buckets.popitem(last=False)
        return allowed, retry_after

    async def allow(self, key: str, cost: float = 1, now: float | None = None) -> tuple[bool, float]:
        return self.allow_sync(key, cost, now)


# KEYS[1] bucket hash; ARGV: capacity, rate, cost, now (seconds, "" = the server's clock).
# The whole read-refill-take-write runs atomically in Redis, so concurrent replicas cannot both
# spend the same tokens. Numbers cross the Lua boundary as strings: Lua->Redis integer reply
# conversion would truncate fractions.
_LUA: Final = """
local capacity = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = tonumber(ARGV[4])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local last = tonumber(state[2])
if tokens == nil or last == nil then
  tokens = capacity
  last = now
end
local elapsed = now - last
if elapsed < 0 then elapsed = 0 end
tokens = math.min(capacity, tokens + elapsed * rate)
local allowed = 0
local retry_after = 0
if tokens >= cost then
  tokens = tokens - cost
  allowed = 1
else
  retry_after = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(math.max(last, now)))
-- An idle bucket is full again after capacity / rate seconds: then it is safe to forget.
redis.call('PEXPIRE', KEYS[1], math.ceil((capacity / rate) * 1000) + 1000)
return {allowed, tostring(retry_after)}
"""


class RedisRateLimiter:
    """Buckets in Redis hashes ``<prefix><key>``, updated by one atomic Lua script.

    Shared by every replica; a bucket expires once it would be full again.
    """

    def __init__(self, client: Any, limit: RateLimit, *, prefix: str = "vigil:ratelimit:") -> None:
        self.limit = limit
        self._redis = client
        self._prefix = prefix
        self._script = client.register_script(_LUA)

    async def allow(self, key: str, cost: float = 1, now: float | None = None) -> tuple[bool, float]:
        self.limit.check_cost(cost)
        allowed, retry_after = await self._script(
            keys=[self._prefix + key],
            args=[
                repr(self.limit.capacity),
                repr(self.limit.rate),
                repr(float(cost)),
                "" if now is None else repr(now),
            ],
        )
        retry = float(retry_after.decode() if isinstance(retry_after, bytes) else retry_after)
        return bool(int(allowed)), retry


# --------------------------------------------------------------------------------------------
# FastAPI
# --------------------------------------------------------------------------------------------


class RateLimited(VigilError):
    """429 with ``Retry-After`` (whole seconds, rounded up, at least 1)."""

    status = 429
    code = "rate_limited"

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"rate limit exceeded: retry in {retry_after_s:.1f} s")
        self.retry_after_s = retry_after_s
        self.headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}


_process_limiter: RateLimiter | None = None


def install_rate_limiter(api: FastAPI, limiter: RateLimiter) -> None:
    """Make ``limiter`` the one :func:`rate_limited` uses (also kept per process, as in Serve
    the replica serves a copy of the app), and answer :class:`RateLimited` with its header."""
    global _process_limiter
    api.state.rate_limiter = limiter
    _process_limiter = limiter
    api.add_exception_handler(RateLimited, error_with_headers)


def current_rate_limiter(request: Request) -> Any:
    """The installed limiter (module-level for the reason given in :func:`vigil.gateway.auth.current_key_store`)."""
    limiter: Any = getattr(request.app.state, "rate_limiter", None) or _process_limiter
    if limiter is None:
        raise RuntimeError("no RateLimiter installed: call install_rate_limiter() when the server starts")
    return limiter


def rate_limited(
    authenticate: Callable[..., Awaitable[Principal]], *, cost: float = 1
) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: authenticate with ``authenticate`` (e.g. ``require_role("client")``),
    then spend ``cost`` tokens of the caller's bucket or answer 429.

    Use as ``principal: Annotated[Principal, Depends(rate_limited(require_role("client")))]``.
    Authentication runs first, so an unknown key is a 401 and never spends anyone's tokens.
    """

    async def dependency(request: Request, principal: Principal = Depends(authenticate)) -> Principal:
        limiter = current_rate_limiter(request)
        allowed, retry_after = await limiter.allow(principal.name, cost)
        if not allowed:
            raise RateLimited(retry_after)
        return principal

    return dependency
