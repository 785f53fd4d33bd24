from __future__ import annotations

from pathlib import Path

import pytest

from vigil.settings import Settings


def test_embedded_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("DATABASE_URL", "VIGIL_DATABASE_URL", "REDIS_URL", "VIGIL_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path))
    settings = Settings()
    assert settings.effective_database_url == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'vigil.db'}"
    assert settings.redis_url is None
    assert settings.http_host == "127.0.0.1"


def test_conventional_urls_are_read_and_given_async_drivers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIGIL_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db:5432/vigil")
    monkeypatch.setenv("REDIS_URL", "redis://cache:6379/0")
    settings = Settings()
    assert settings.effective_database_url == "postgresql+asyncpg://u:p@db:5432/vigil"
    assert settings.redis_url == "redis://cache:6379/0"
    monkeypatch.setenv("VIGIL_DATABASE_URL", "sqlite:///x.db")
    assert Settings().effective_database_url == "sqlite+aiosqlite:///x.db"


def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_HTTP_PORT", "70000")
    with pytest.raises(ValueError, match="http_port"):
        Settings()


def test_a_demo_dataset_of_another_size_is_refused_with_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import json

    import typer

    from cli.main import _demo_dataset

    data = tmp_path / "demo-data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"config": {"users": 2_000, "transactions": 100_000}}))
    monkeypatch.setenv("VIGIL_HOME", str(tmp_path))
    assert _demo_dataset(Settings()) == data  # the default size: reused as it is
    monkeypatch.setenv("VIGIL_DEMO_USERS", "20000")
    monkeypatch.setenv("VIGIL_DEMO_TRANSACTIONS", "1000000")
    with pytest.raises(
        typer.BadParameter, match=r"2,000 and 100,000 users.*not the 20,000.*another VIGIL_HOME"
    ):
        _demo_dataset(Settings())
    (data / "manifest.json").write_text(json.dumps({"config": {}}))  # a manifest without its sizes
    with pytest.raises(typer.BadParameter, match=r"\? and \? users"):
        _demo_dataset(Settings())
    monkeypatch.setenv("VIGIL_DEMO_USERS", "5")
    with pytest.raises(ValueError, match="demo_users"):
        Settings()
