"""Alertmanager notifications as operator alerts in the analysts' alerts feed.

Each firing alert becomes one row of the ``alerts`` table (kind ``operator``); its resolution
turns that row's kind into ``operator_resolved`` and appends a resolution notice (the feed and its
stream read rows in id order, so a client past the firing row still sees the resolution).
Notifications repeat (Alertmanager re-sends firing alerts and retries failed deliveries), so an
incident is identified by its fingerprint and start time and each change is stored once.

The ``alerts`` table was made for transaction alerts and the schema is not changed here, so:
- ``user_id`` is required: operator alerts belong to one system user, created on first use
  (:data:`OPERATOR_SEGMENT` segment);
- there is no column for the incident: the message ends with the tag ``[am:<fingerprint>@<start
  epoch s>]`` and rows are found by it; ``severity`` maps Alertmanager's ``severity`` label
  (critical -> high, warning -> medium, anything else -> low).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from vigil.db.models import Alert, User
from vigil.schemas import AlertmanagerAlert, AlertmanagerWebhook, OperatorAlertsResult

FIRING, RESOLVED = "operator", "operator_resolved"
OPERATOR_SEGMENT = "operator"
OPERATOR_NAME = "Vigil operations (Alertmanager)"
SEVERITY = {"critical": "high", "page": "high", "warning": "medium", "ticket": "medium"}
_LOCK_KEY = 0x5647_4C5F_4F50  # "VGL_OP": one advisory lock for every operator-alert write
MESSAGE_LEN = 500


def incident_tag(alert: AlertmanagerAlert) -> str:
    return f"[am:{alert.fingerprint}@{int(alert.startsAt.timestamp())}]"


def _message(prefix: str, alert: AlertmanagerAlert) -> str:
    labels, notes = alert.labels, alert.annotations
    scope = ", ".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in {"alertname", "severity"})
    text = f"{prefix} {labels['alertname']}: {notes.get('summary') or notes.get('description') or ''}"
    if scope:
        text += f" ({scope})"
    tag = incident_tag(alert)
    room = MESSAGE_LEN - len(tag) - 1
    if len(text) > room:
        text = text[: room - 1] + "…"
    return f"{text} {tag}"


async def _lock(session: AsyncSession) -> None:
    """Serialise operator-alert writers (two deliveries of one notification at once would both
    find nothing stored and both insert); screening's own alert inserts are not held up."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
    else:  # SQLite: any write statement takes the database's one write lock for the transaction
        await session.execute(sa.update(Alert).where(col(Alert.id) == -1).values(id=-1))


async def operator_user(session: AsyncSession, *, now: datetime) -> int:
    """The system user operator alerts belong to (created on first use)."""
    found = (
        await session.execute(
            select(User.user_id)
            .where(col(User.segment) == OPERATOR_SEGMENT, col(User.full_name) == OPERATOR_NAME)
            .order_by(col(User.user_id))
            .limit(1)
        )
    ).scalar_one_or_none()
    if found is not None:
        return int(found)
    user = User(  # type: ignore[call-arg]  # user_id: the database assigns it
        created_at=now,
        full_name=OPERATOR_NAME,
        country="ZZ",  # ISO 3166 "unknown": no person, no country
        home_lat=0.0,
        home_lon=0.0,
        segment=OPERATOR_SEGMENT,
    )
    session.add(user)
    await session.flush()
    assert user.user_id is not None
    return user.user_id


async def _incident_rows(session: AsyncSession, user_id: int, tag: str) -> list[Alert]:
    escaped = tag.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    query = (
        select(Alert)
        .where(
            col(Alert.user_id) == user_id,
            col(Alert.kind).in_([FIRING, RESOLVED]),
            col(Alert.message).like(f"%{escaped}", escape="\\"),
        )
        .order_by(col(Alert.id))
    )
    return list((await session.execute(query)).scalars().all())


async def _add(
    session: AsyncSession, user_id: int, kind: str, severity: str, message: str, now: datetime
) -> int:
    """Store one operator alert row; its id."""
    row = Alert(user_id=user_id, kind=kind, severity=severity, message=message, created_at=now)
    session.add(row)
    await session.flush()
    assert row.id is not None
    return row.id


async def apply_notification(
    session: AsyncSession, *, payload: AlertmanagerWebhook, now: datetime
) -> OperatorAlertsResult:
    """Store what ``payload`` changes; the caller commits (one transaction for the notification)."""
    await _lock(session)
    user_id = await operator_user(session, now=now)
    created: list[int] = []
    resolved: list[int] = []
    unchanged = 0
    for alert in payload.alerts:
        rows = await _incident_rows(session, user_id, incident_tag(alert))
        firing = [r for r in rows if r.message.startswith("[FIRING]")]
        notices = [r for r in rows if r.message.startswith("[RESOLVED]")]
        severity = severity_of(alert.labels)
        if alert.status == "firing":
            if rows:
                unchanged += 1
                continue
            created.append(await _add(session, user_id, FIRING, severity, _message("[FIRING]", alert), now))
            continue
        if notices:
            unchanged += 1
            continue
        for row in firing:
            row.kind = RESOLVED
            assert row.id is not None
            resolved.append(row.id)
        created.append(await _add(session, user_id, RESOLVED, severity, _message("[RESOLVED]", alert), now))
    return OperatorAlertsResult(created=created, resolved=resolved, unchanged=unchanged)


def severity_of(labels: Mapping[str, str]) -> str:
    return SEVERITY.get(labels.get("severity", "").lower(), "low")
