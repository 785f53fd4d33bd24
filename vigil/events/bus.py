"""Event streams: decisions, alerts and the review queue, on Redis Streams or in-process.

One interface, :class:`EventBus`, with two implementations:

- :class:`RedisStreamBus` (``REDIS_URL`` set): Redis Streams. ``publish`` is ``XADD`` with
  approximate ``MAXLEN`` trimming; consumers read through consumer groups (``XGROUP CREATE
  MKSTREAM`` on first use, ``XREADGROUP``) so each event is delivered to one consumer of a group,
  and ``XACK`` it once handled. A consumer that crashes leaves its messages pending; another one
  takes them over with :meth:`~EventBus.reclaim` (``XAUTOCLAIM``) after ``min_idle_ms``.
- :class:`InMemoryEventBus` (no Redis: the embedded default, and unit tests): the same semantics
  (groups, pending entries, reclaim, trimming) in one process with asyncio.

Delivery is at least once: a consumer must make its handling idempotent (the transaction id is in
every Vigil event). A new group starts at the beginning of the (trimmed) stream, so a consumer
deployed after events were published still sees them.

Events are dicts serialised to JSON (datetimes as ISO 8601, Decimals as strings, pydantic models
and dataclasses as their fields); both buses encode on publish, so a payload that would not survive
Redis fails the same way in a unit test.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, Final, Protocol, runtime_checkable
from uuid import UUID

log = logging.getLogger("vigil.events.bus")

STREAM_DECISIONS: Final = "vigil:decisions"
STREAM_ALERTS: Final = "vigil:alerts"
STREAM_REVIEW: Final = "vigil:review"
STREAMS: Final = (STREAM_DECISIONS, STREAM_ALERTS, STREAM_REVIEW)

#: Entries a stream keeps (approximately, on Redis); consumers must keep up within this many.
DEFAULT_MAXLEN: Final = 100_000
#: The field of a stream entry that holds the JSON payload.
PAYLOAD_FIELD: Final = "data"


# --------------------------------------------------------------------------------------------
# Payloads
# --------------------------------------------------------------------------------------------


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    if isinstance(obj, Decimal | UUID):
        return str(obj)
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    model_dump = getattr(obj, "model_dump", None)
    if callable(model_dump):  # pydantic / SQLModel
        return model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        as_dict = getattr(obj, "as_dict", None)
        return as_dict() if callable(as_dict) else dataclasses.asdict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable in an event")


def encode_event(event: dict[str, Any]) -> str:
    """JSON text of ``event``; raises ``TypeError`` for a value with no JSON form, ``ValueError`` for NaN."""
    if not isinstance(event, dict):
        raise TypeError(f"an event is a dict, got {type(event).__name__}")
    return json.dumps(event, default=_default, separators=(",", ":"), allow_nan=False)


def decode_event(raw: str | bytes) -> dict[str, Any]:
    """The dict of an encoded event; an undecodable payload comes back as ``{"_undecodable": text}``.

    A foreign entry in a stream must not wedge a consumer: it gets something it can log and ack.
    """
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    try:
        value = json.loads(text)
    except ValueError:
        log.warning("undecodable event payload: %.200r", text)
        return {"_undecodable": text}
    return value if isinstance(value, dict) else {"_undecodable": text}


@dataclass(frozen=True, slots=True)
class Message:
    """One delivered event: ``id`` is what :meth:`EventBus.ack` takes."""

    stream: str
    id: str
    event: dict[str, Any]


# --------------------------------------------------------------------------------------------
# The interface
# --------------------------------------------------------------------------------------------


@runtime_checkable
class EventBus(Protocol):
    """Append-only streams with consumer groups (at-least-once delivery)."""

    async def publish(self, stream: str, event: dict[str, Any]) -> str:
        """Append ``event`` (JSON-serialisable dict) to ``stream``; return its id."""
        ...

    async def publish_many(self, entries: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
        """Append each ``(stream, event)`` in order, in one round trip where the bus has them;
        return their ids. Every payload is encoded before any is sent, so a payload that cannot
        be encoded publishes nothing; a failure in transit may leave a prefix published."""
        ...

    async def read(
        self, stream: str, group: str, consumer: str, count: int = 10, block_ms: int | None = None
    ) -> list[Message]:
        """Up to ``count`` events never delivered to ``group``, now owned by ``consumer``.

        ``block_ms`` waits that long for the first event when none is ready; None or 0 returns at
        once (never "block forever": a consumer loop should wake up to notice shutdown).
        The group is created on first use, starting at the beginning of the stream.
        """
        ...

    async def ack(self, stream: str, group: str, *ids: str) -> int:
        """Mark events handled; return how many were pending."""
        ...

    async def reclaim(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int = 10
    ) -> list[Message]:
        """Take over up to ``count`` events pending for ``min_idle_ms`` or more in another consumer
        (which crashed or hung), now owned by ``consumer``; trimmed-away events are dropped."""
        ...

    async def close(self) -> None: ...


# --------------------------------------------------------------------------------------------
# In process
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Pending:
    consumer: str
    delivered_at: float
    deliveries: int


@dataclass(slots=True)
class _Group:
    last_seq: int = 0
    pending: OrderedDict[int, _Pending] = dataclasses.field(default_factory=OrderedDict)


@dataclass(slots=True)
class _Stream:
    entries: OrderedDict[int, str] = dataclasses.field(default_factory=OrderedDict)
    groups: dict[str, _Group] = dataclasses.field(default_factory=dict)
    changed: asyncio.Condition | None = None


def _seq(message_id: str) -> int | None:
    head, _, tail = message_id.partition("-")
    if not head.isdigit() or tail != "0":
        return None
    return int(head)


class InMemoryEventBus:
    """:class:`EventBus` in one process: the embedded default and the unit tests' bus.

    Ids are ``"<n>-0"`` with ``n`` increasing per stream. ``clock`` (seconds, monotonic) decides
    how long a message has been pending; tests pass a fake one. Streams keep at most ``maxlen``
    entries (exactly, unlike Redis' approximate trimming).
    """

    def __init__(self, *, maxlen: int = DEFAULT_MAXLEN, clock: Callable[[], float] = time.monotonic) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be at least 1")
        self._maxlen = maxlen
        self._clock = clock
        self._streams: dict[str, _Stream] = {}
        self._next: dict[str, int] = {}

    def _stream(self, name: str) -> _Stream:
        stream = self._streams.get(name)
        if stream is None:
            stream = self._streams[name] = _Stream(changed=asyncio.Condition())
        return stream

    async def publish(self, stream: str, event: dict[str, Any]) -> str:
        return (await self.publish_many([(stream, event)]))[0]

    async def publish_many(self, entries: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
        encoded = [(stream, encode_event(event)) for stream, event in entries]
        return [await self._append(stream, payload) for stream, payload in encoded]

    async def _append(self, stream: str, payload: str) -> str:
        s = self._stream(stream)
        seq = self._next.get(stream, 0) + 1
        self._next[stream] = seq
        s.entries[seq] = payload
        while len(s.entries) > self._maxlen:
            s.entries.popitem(last=False)
        assert s.changed is not None
        async with s.changed:
            s.changed.notify_all()
        return f"{seq}-0"

    def _deliver(self, s: _Stream, group: _Group, consumer: str, count: int, stream: str) -> list[Message]:
        out: list[Message] = []
        now = self._clock()
        for seq, payload in s.entries.items():
            if len(out) >= count:
                break
            if seq <= group.last_seq:
                continue
            group.last_seq = seq
            group.pending[seq] = _Pending(consumer, now, 1)
            out.append(Message(stream, f"{seq}-0", decode_event(payload)))
        return out

    async def read(
        self, stream: str, group: str, consumer: str, count: int = 10, block_ms: int | None = None
    ) -> list[Message]:
        if count < 1:
            raise ValueError("count must be at least 1")
        s = self._stream(stream)
        g = s.groups.setdefault(group, _Group())
        out = self._deliver(s, g, consumer, count, stream)
        if out or not block_ms or block_ms <= 0:
            return out
        assert s.changed is not None
        deadline = asyncio.get_running_loop().time() + block_ms / 1000
        async with s.changed:
            while not out:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(s.changed.wait(), remaining)
                except TimeoutError:
                    break
                out = self._deliver(s, g, consumer, count, stream)
        return out

    async def ack(self, stream: str, group: str, *ids: str) -> int:
        g = self._stream(stream).groups.get(group)
        if g is None:
            return 0
        acked = 0
        for message_id in ids:
            seq = _seq(message_id)
            if seq is not None and g.pending.pop(seq, None) is not None:
                acked += 1
        return acked

    async def reclaim(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int = 10
    ) -> list[Message]:
        s = self._stream(stream)
        g = s.groups.get(group)
        if g is None:
            return []
        now = self._clock()
        out: list[Message] = []
        for seq in list(g.pending):
            if len(out) >= count:
                break
            entry = g.pending[seq]
            if (now - entry.delivered_at) * 1000 < min_idle_ms:
                continue
            payload = s.entries.get(seq)
            if payload is None:  # trimmed away: Redis' XAUTOCLAIM drops it from the PEL too
                del g.pending[seq]
                continue
            g.pending[seq] = _Pending(consumer, now, entry.deliveries + 1)
            out.append(Message(stream, f"{seq}-0", decode_event(payload)))
        return out

    def pending_count(self, stream: str, group: str) -> int:
        """How many events of ``group`` are delivered but not acknowledged (for tests and metrics)."""
        g = self._stream(stream).groups.get(group)
        return 0 if g is None else len(g.pending)

    async def close(self) -> None:
        return None


# --------------------------------------------------------------------------------------------
# Redis Streams
# --------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStreamBus:
    """:class:`EventBus` on Redis Streams (Redis >= 6.2 for ``XAUTOCLAIM``).

    Give it a ``redis.asyncio.Redis`` client or build one with :meth:`from_url`; the connection is
    opened lazily, so constructing the bus does no I/O (safe in a Serve replica's ``__init__``).
    """

    def __init__(self, client: Any, *, maxlen: int = DEFAULT_MAXLEN, owns_client: bool = False) -> None:
        self._redis = client
        self._maxlen = maxlen
        self._owns_client = owns_client
        self._groups: set[tuple[str, str]] = set()

    @classmethod
    def from_url(cls, url: str, *, maxlen: int = DEFAULT_MAXLEN) -> RedisStreamBus:
        import redis.asyncio as redis_asyncio

        return cls(redis_asyncio.Redis.from_url(url), maxlen=maxlen, owns_client=True)

    async def publish(self, stream: str, event: dict[str, Any]) -> str:
        payload = encode_event(event)
        message_id = await self._redis.xadd(
            stream, {PAYLOAD_FIELD: payload}, maxlen=self._maxlen, approximate=True
        )
        return _text(message_id)

    async def publish_many(self, entries: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
        encoded = [(stream, encode_event(event)) for stream, event in entries]
        if not encoded:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for stream, payload in encoded:
            pipe.xadd(stream, {PAYLOAD_FIELD: payload}, maxlen=self._maxlen, approximate=True)
        return [_text(message_id) for message_id in await pipe.execute()]

    async def ensure_group(self, stream: str, group: str) -> None:
        """Create ``group`` on ``stream`` (and the stream) unless it exists; cached per bus."""
        if (stream, group) in self._groups:
            return
        from redis.exceptions import ResponseError

        try:
            await self._redis.xgroup_create(stream, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._groups.add((stream, group))

    def _messages(self, stream: str, entries: Any) -> list[Message]:
        out = []
        for message_id, fields in entries or ():
            if fields is None:  # Redis 6.2 XAUTOCLAIM: an entry trimmed away while pending
                continue
            raw = fields.get(PAYLOAD_FIELD.encode(), fields.get(PAYLOAD_FIELD))
            event = decode_event(raw) if raw is not None else {"_undecodable": repr(fields)}
            out.append(Message(stream, _text(message_id), event))
        return out

    async def read(
        self, stream: str, group: str, consumer: str, count: int = 10, block_ms: int | None = None
    ) -> list[Message]:
        from redis.exceptions import ResponseError

        if count < 1:
            raise ValueError("count must be at least 1")
        await self.ensure_group(stream, group)
        block = block_ms if block_ms and block_ms > 0 else None
        try:
            reply = await self._redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block)
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # The stream was deleted (or the group destroyed) since we cached it: recreate once.
            self._groups.discard((stream, group))
            await self.ensure_group(stream, group)
            reply = await self._redis.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block)
        out: list[Message] = []
        for _name, entries in reply or ():
            out.extend(self._messages(stream, entries))
        return out

    async def ack(self, stream: str, group: str, *ids: str) -> int:
        if not ids:
            return 0
        return int(await self._redis.xack(stream, group, *ids))

    async def reclaim(
        self, stream: str, group: str, consumer: str, min_idle_ms: int, count: int = 10
    ) -> list[Message]:
        await self.ensure_group(stream, group)
        reply = await self._redis.xautoclaim(stream, group, consumer, min_idle_ms, "0-0", count=count)
        # [next_start, entries] on 6.2, [next_start, entries, deleted_ids] on 7+.
        return self._messages(stream, reply[1] if len(reply) > 1 else [])

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()


def create_event_bus(redis_url: str | None, *, maxlen: int = DEFAULT_MAXLEN) -> EventBus:
    """The bus for this configuration: Redis Streams when ``redis_url`` is set, else in-process."""
    if redis_url:
        return RedisStreamBus.from_url(redis_url, maxlen=maxlen)
    return InMemoryEventBus(maxlen=maxlen)
