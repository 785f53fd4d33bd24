"""Server-Sent Events of the alerts table, shared by the staff and the customer alert streams.

Alerts are committed with their decision, so a stream reads the table: every replica sees every
alert, and a client resumes after the last id it received (``after_id`` or ``Last-Event-ID``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import Request
from fastapi.responses import StreamingResponse

from vigil.service import VigilService

#: How often a stream looks for new alerts, in seconds.
ALERT_POLL_S = 1.0


def alert_stream(
    request: Request,
    service: VigilService,
    *,
    user_id: int | None,
    after_id: int,
    max_seconds: float,
    still_allowed: Callable[[], Awaitable[bool]] | None = None,
) -> StreamingResponse:
    """One ``alert`` event per row after ``after_id`` (``id:`` = the alert id), for ``user_id`` or
    every user when it is None, until ``max_seconds`` pass or the client leaves. ``still_allowed``
    is asked before each poll; when it says no, the stream sends ``session_ended`` and stops."""

    async def events() -> AsyncIterator[str]:
        last = after_id
        clock = asyncio.get_running_loop().time
        deadline = clock() + max_seconds
        yield ": connected\n\n"
        while clock() < deadline and not await request.is_disconnected():
            if still_allowed is not None and not await still_allowed():
                yield "event: session_ended\ndata: {}\n\n"
                return
            for alert in await service.alerts(user_id=user_id, after_id=last, limit=100):
                assert alert.id is not None and (user_id is None or alert.user_id == user_id)
                last = alert.id
                yield f"id: {alert.id}\nevent: alert\ndata: {alert.model_dump_json()}\n\n"
            await asyncio.sleep(max(0.0, min(ALERT_POLL_S, deadline - clock())))  # end on time

    return StreamingResponse(events(), media_type="text/event-stream")
