"""Shared fixtures for KYC unit tests: real images from the shared data folder, models built once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kyc.config import KycConfig

SHARED = Path(
    os.environ.get("VIGIL_SHARED_DATA", Path(__file__).resolve().parents[3] / ".." / "shared" / "data")
)


def shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared test data missing: {path}")
    return path


@pytest.fixture(scope="session")
def config() -> KycConfig:
    return KycConfig(model_dir=shared("models"))


@pytest.fixture(scope="session")
def engine(config: KycConfig):  # type: ignore[no-untyped-def]
    from kyc.pipeline import KycEngine

    return KycEngine(config)
