"""Failed sign-ins: the per-IP throttle and the per-account lockout, as pure functions of the
failure times (the rows of ``sign_in_attempts``; :mod:`vigil.identity.service` reads them).

Two limits, because they stop two attacks:

- **Per account** (guessing one customer's password): after ``account_failures`` failed
  sign-ins to one e-mail address within ``account_window`` (counting only failures since its last
  successful sign-in), the address is locked for ``lockout`` from the last of them: **423
  Locked** with ``Retry-After``, even for the right password. Unknown addresses lock the same
  way, so the answer never tells whether an account exists. The price is that anyone can lock a
  customer out for ``lockout`` by failing on purpose; the lock ends by itself and the per-IP
  limit slows that down too.
- **Per IP address** (one source trying many accounts): once ``ip_failures`` failed attempts
  came from one address within ``ip_window``, further attempts from it get **429 Too Many
  Requests** with ``Retry-After`` (when the oldest of those failures leaves the window).

Refused attempts are not recorded: a locked account's lock does not grow while it is hammered,
and nothing is hashed for them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from vigil.errors import VigilError


@dataclass(frozen=True, slots=True)
class SignInLimits:
    account_failures: int = 5
    account_window: timedelta = timedelta(minutes=15)
    lockout: timedelta = timedelta(minutes=15)
    ip_failures: int = 20
    ip_window: timedelta = timedelta(minutes=15)

    def __post_init__(self) -> None:
        if self.account_failures < 1 or self.ip_failures < 1:
            raise ValueError("failure limits must be at least 1")
        if min(self.account_window, self.lockout, self.ip_window) <= timedelta(0):
            raise ValueError("windows and the lockout must be positive")


def _retry_after(seconds: float) -> dict[str, str]:
    return {"Retry-After": str(max(1, math.ceil(seconds)))}


class AccountLocked(VigilError):
    status = 423
    code = "account_locked"

    def __init__(self, until: datetime, now: datetime) -> None:
        super().__init__(
            f"too many failed sign-ins: this account is locked until {until.isoformat()}; "
            "try again then, or reset the password"
        )
        self.until = until
        self.headers = _retry_after((until - now).total_seconds())


class TooManyAttempts(VigilError):
    status = 429
    code = "too_many_attempts"

    def __init__(self, until: datetime, now: datetime) -> None:
        super().__init__("too many failed sign-ins from this address: slow down")
        self.until = until
        self.headers = _retry_after((until - now).total_seconds())


def account_locked_until(
    failures_newest_first: Sequence[datetime], limits: SignInLimits, now: datetime
) -> datetime | None:
    """When the account's lock ends, or None when it is not locked at ``now``.

    ``failures_newest_first``: the account's failed attempts since its last success (at least
    the newest ``limits.account_failures`` of them), newest first.
    """
    n = limits.account_failures
    if len(failures_newest_first) < n:
        return None
    newest, nth = failures_newest_first[0], failures_newest_first[n - 1]
    if newest - nth > limits.account_window:
        return None
    until = newest + limits.lockout
    return until if now < until else None


def ip_throttled_until(
    failures_newest_first: Sequence[datetime], limits: SignInLimits, now: datetime
) -> datetime | None:
    """When the address may try again, or None when it may now.

    ``failures_newest_first``: the address's failed attempts within ``limits.ip_window`` of
    ``now`` (at least the newest ``limits.ip_failures``), newest first.
    """
    recent = [t for t in failures_newest_first if t > now - limits.ip_window]
    if len(recent) < limits.ip_failures:
        return None
    # The attempt is allowed again once fewer than ip_failures failures are inside the window.
    return recent[limits.ip_failures - 1] + limits.ip_window
