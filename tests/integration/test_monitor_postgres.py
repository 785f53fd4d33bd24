"""The monitor and Alertmanager's webhook on PostgreSQL: the same checks as the unit tier's
(tests/unit/test_monitoring.py) on the other backend."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from vigil.db.migrate import upgrade_async
from vigil.service import VigilService

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))  # --import-mode=importlib: tests/ is no package
from monitoring_scenario import fill, raw_tables, recompute  # noqa: E402


def _unit_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "unit_test_monitoring", TESTS / "unit" / "test_monitoring.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


unit = _unit_module()


@pytest.fixture
def pg_url(fresh_postgres_database: Callable[[str], Any]) -> Iterator[str]:
    with fresh_postgres_database("vigil_mon") as url:
        yield url


async def test_monitor_figures_equal_a_recomputation_on_postgres(
    pg_url: str, open_shop: Callable[[VigilService], Awaitable[Any]]
) -> None:
    await upgrade_async(pg_url)
    await fill(pg_url, open_shop)
    now = datetime.now(UTC) + timedelta(seconds=1)
    snapshot = await unit.monitor_snapshot(pg_url, now)
    unit.check_against_recomputation(snapshot, recompute(await raw_tables(pg_url), now))


async def test_alertmanager_webhook_on_postgres(pg_url: str) -> None:
    await upgrade_async(pg_url)
    async with unit.webhook_client(pg_url) as client:
        await unit.exercise_webhook(client)
