"""Without its models KYC cannot run: /readyz says why (503) and a submission is a 503 naming the
reason, never a pass and never a wait for a verifier that will not start."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from vigil.gateway.api import create_api, install_service
from vigil.gateway.auth import InMemoryKeyStore, install_key_store
from vigil.gateway.ratelimit import InMemoryRateLimiter, RateLimit, install_rate_limiter
from vigil.service import VigilService

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # ray.serve's pydantic import

KEY = "ops-" + "r" * 32


async def _never(frames: list[bytes], document: bytes, today: date) -> dict[str, Any]:
    raise AssertionError("KYC must not be attempted while it is unready")


@pytest.fixture
async def ready_app(sqlite_url: str) -> AsyncIterator[tuple[VigilService, httpx.AsyncClient]]:
    api = create_api()
    service = VigilService(sqlite_url)
    service.attach_kyc(_never)
    install_service(api, service)
    keys = InMemoryKeyStore()
    keys.add("ops", "admin", KEY)
    install_key_store(api, keys)
    install_rate_limiter(api, InMemoryRateLimiter(RateLimit(capacity=100, rate=100)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api),
        base_url="http://test",
        headers={"Authorization": f"Bearer {KEY}"},
    ) as client:
        yield service, client
    await service.close()


async def test_packaged_models_leave_the_service_ready(
    ready_app: tuple[VigilService, httpx.AsyncClient],
) -> None:
    from deployments.ingress import check_kyc_models
    from kyc.config import PACKAGED_MODEL_DIR

    service, client = ready_app
    check_kyc_models(service, PACKAGED_MODEL_DIR)
    assert service.unready == {}
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text


async def test_missing_models_make_readyz_say_why_and_submissions_a_503(
    ready_app: tuple[VigilService, httpx.AsyncClient], tmp_path: Path
) -> None:
    from deployments.ingress import check_kyc_models
    from kyc.config import PACKAGED_MODEL_DIR

    service, client = ready_app
    models = tmp_path / "models"
    shutil.copytree(PACKAGED_MODEL_DIR, models)
    (models / "MiniFASNetV2.onnx").unlink()
    check_kyc_models(service, models)

    ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert "kyc:" in ready.json()["detail"] and "MiniFASNetV2.onnx" in ready.json()["detail"]

    user = await client.post(
        "/v1/users", json={"full_name": "A", "country": "GB", "home_lat": 0, "home_lon": 0}
    )
    submitted = await client.post(
        "/v1/kyc/submissions",
        data={"user_id": str(user.json()["user_id"])},
        files={
            "selfie": ("s.jpg", b"\xff\xd8jpeg", "image/jpeg"),
            "document": ("d.jpg", b"\xff\xd8", "image/jpeg"),
        },
    )
    assert submitted.status_code == 503, submitted.text
    assert "MiniFASNetV2.onnx" in submitted.json()["detail"]
