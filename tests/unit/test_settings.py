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
