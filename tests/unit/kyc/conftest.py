"""Shared fixtures for KYC unit tests: real images from ``tests/data/kyc``, the engine built once with
the models shipped in the package."""

from __future__ import annotations

from pathlib import Path

import pytest

from kyc.config import PACKAGED_MODEL_DIR, KycConfig

#: The KYC test images (origins and licences in its README.md); part of the repository.
KYC_DATA = Path(__file__).resolve().parents[2] / "data" / "kyc"


def kyc_data(*parts: str) -> Path:
    """A path under ``tests/data/kyc``; a missing file fails the test (the data ships with the tests)."""
    path = KYC_DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"KYC test data missing: {path} (it is part of the repository: see {KYC_DATA}/README.md)")
    return path


@pytest.fixture(scope="session")
def config() -> KycConfig:
    return KycConfig(model_dir=PACKAGED_MODEL_DIR)


@pytest.fixture(scope="session")
def engine(config: KycConfig):  # type: ignore[no-untyped-def]
    from kyc.pipeline import KycEngine

    return KycEngine(config)
