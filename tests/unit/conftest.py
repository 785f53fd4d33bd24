"""Unit tier: pure Python. Starting Ray here is a bug, so an autouse fixture refuses it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _refuse_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency
        yield
        return

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("unit tests must not start Ray: move this test to tests/integration")

    monkeypatch.setattr(ray, "init", refuse)
    yield
