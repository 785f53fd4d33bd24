"""Test tiers: ``tests/unit`` never starts Ray or touches the network; ``tests/integration``
talks to a real local Ray, PostgreSQL and Redis.

Under ``CI=true`` (also ``1`` or ``yes``) no test may skip: a skip, whether from ``pytest.skip``,
a ``skip``/``skipif`` mark or ``importorskip``, at collection or while running, is reported as a
failure that names the skip's reason, so a missing service, model or file cannot pass unnoticed.
Expected failures (``xfail``) are not skips and keep their outcome.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from vigil.schemas import TransactionCreate
    from vigil.service import VigilService


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def _no_skip_under_ci(report: pytest.CollectReport | pytest.TestReport) -> None:
    """Turn a skipped ``report`` (not an xfail) into a failure naming the skip's reason: in the
    call phase a failed test, in setup (skip marks, fixtures) an error, at collection an error."""
    if not report.skipped or hasattr(report, "wasxfail") or not _ci():
        return
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: <reason>")
        path, line, reason = longrepr
        where = f" ({path}:{line})" if line is not None else f" ({path})"
    else:
        reason, where = str(longrepr), ""
    report.outcome = "failed"
    reason = str(reason).removeprefix("Skipped: ")
    report.longrepr = f"CI=true allows no skips, and this one skipped{where}: {reason}"


def pytest_report_header(config: pytest.Config) -> str | None:
    return "CI=true: a skipped test counts as a failure" if _ci() else None


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    _no_skip_under_ci(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, Any]:
    report = yield
    _no_skip_under_ci(report)
    return report


@dataclass(frozen=True)
class Shop:
    """A user in GB with a EUR account, and a merchant, stored through a :class:`VigilService`."""

    user_id: int
    account_id: int
    merchant_id: int

    def tx(self, key: str, amount: str, **fields: Any) -> TransactionCreate:
        from vigil.schemas import TransactionCreate

        return TransactionCreate(
            idempotency_key=key,
            user_id=self.user_id,
            account_id=self.account_id,
            merchant_id=self.merchant_id,
            amount=Decimal(amount),
            currency="EUR",
            channel="ecommerce",
            country="GB",
            **fields,
        )


async def _open_shop(service: VigilService) -> Shop:
    from vigil.schemas import AccountCreate, MerchantCreate, UserCreate

    user = await service.create_user(UserCreate(full_name="Ada", country="GB", home_lat=51.5, home_lon=0))
    assert user.user_id is not None
    account = await service.create_account(AccountCreate(user_id=user.user_id, currency="EUR"))
    merchant = await service.create_merchant(
        MerchantCreate(name="Shop", category="grocery", country="GB", lat=51.5, lon=0)
    )
    assert account.account_id is not None and merchant.merchant_id is not None
    return Shop(user.user_id, account.account_id, merchant.merchant_id)


@pytest.fixture
def open_shop() -> Callable[[VigilService], Awaitable[Shop]]:
    """``shop = await open_shop(service)``: a user, an account and a merchant to transact with."""
    return _open_shop


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database file of this test's own: its async URL."""
    from vigil.db.migrate import upgrade_async

    url = f"sqlite+aiosqlite:///{tmp_path / 'vigil.db'}"
    await upgrade_async(url)
    return url
