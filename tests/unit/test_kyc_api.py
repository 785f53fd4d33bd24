"""The KYC route over the real KYC engine (in-process) and real images: results are stored on the
submission and the user; unusable uploads are a 4xx with a reason, never a crash."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import httpx
import pytest

from vigil.errors import InvalidRequest
from vigil.gateway.api import create_api, install_service
from vigil.gateway.auth import InMemoryKeyStore, install_key_store
from vigil.gateway.ratelimit import InMemoryRateLimiter, RateLimit, install_rate_limiter
from vigil.service import VigilService

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

KYC_DATA = Path(__file__).resolve().parents[1] / "data" / "kyc"  # origins and licences: its README.md
KEY = "kyc-" + "k" * 32


def _image(*parts: str) -> bytes:
    path = KYC_DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"KYC test data missing: {path} (it is part of the repository)")
    return path.read_bytes()


@pytest.fixture(scope="module")
def engine() -> Any:
    from kyc.config import PACKAGED_MODEL_DIR, KycConfig
    from kyc.pipeline import KycEngine

    return KycEngine(KycConfig(model_dir=PACKAGED_MODEL_DIR))


@pytest.fixture
async def client(sqlite_url: str, engine: Any) -> AsyncIterator[httpx.AsyncClient]:
    from deployments.kyc import result_to_dict
    from kyc.errors import InvalidImage

    async def verify(frames: list[bytes], document: bytes, today: date) -> dict[str, Any]:
        try:
            result = await asyncio.to_thread(engine.verify, frames, document, today=today)
        except InvalidImage as exc:
            raise InvalidRequest(f"{exc.field}: {exc.reason}") from None
        return result_to_dict(result)

    api = create_api()
    service = VigilService(sqlite_url)
    service.attach_kyc(verify)
    install_service(api, service)
    keys = InMemoryKeyStore()
    keys.add("ops", "admin", KEY)
    install_key_store(api, keys)
    install_rate_limiter(api, InMemoryRateLimiter(RateLimit(capacity=1000, rate=100)))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api),
        base_url="http://test",
        headers={"Authorization": f"Bearer {KEY}"},
    ) as c:
        user = await c.post(
            "/v1/users", json={"full_name": "A", "country": "GB", "home_lat": 0, "home_lon": 0}
        )
        c.user_id = user.json()["user_id"]  # type: ignore[attr-defined]
        yield c
    await service.close()


async def test_a_submission_is_verified_and_stored(client: httpx.AsyncClient) -> None:
    selfie = _image("faces", "obama", "obama.jpg")
    document = _image("mrz", "passport-td3.jpg")
    response = await client.post(
        "/v1/kyc/submissions",
        data={"user_id": str(client.user_id)},  # type: ignore[attr-defined]
        files=[
            ("document", ("passport.jpg", document, "image/jpeg")),
            ("selfie", ("s.jpg", selfie, "image/jpeg")),
        ],
    )
    assert response.status_code == 201, response.text
    body = response.json()
    # The specimen passport's portrait is not Obama: the face match must fail, with a reason.
    assert body["status"] == "rejected" and body["risk_level"] == "high"
    assert "face_mismatch" in body["reason_codes"]
    assert body["document_type"] and body["face_match_score"] is not None
    fetched = await client.get(f"/v1/kyc/submissions/{body['id']}")
    assert fetched.status_code == 200 and fetched.json()["id"] == body["id"]


@pytest.mark.parametrize(
    ("files", "status", "reason"),
    [
        (
            [
                ("document", ("d.jpg", b"not an image", "image/jpeg")),
                ("selfie", ("s.jpg", b"\xff\xd8junk", "image/jpeg")),
            ],
            422,
            "",
        ),
        (
            [("document", ("d.jpg", b"", "image/jpeg")), ("selfie", ("s.jpg", b"x", "image/jpeg"))],
            422,
            "empty",
        ),
        ([("selfie", ("s.jpg", b"x", "image/jpeg"))], 422, "document"),
        (
            [
                ("document", ("d.jpg", b"x" * (11 * 1024 * 1024), "image/jpeg")),
                ("selfie", ("s.jpg", b"x", "image/jpeg")),
            ],
            413,
            "",
        ),
    ],
)
async def test_unusable_uploads_are_a_4xx(
    client: httpx.AsyncClient, files: list[Any], status: int, reason: str
) -> None:
    response = await client.post("/v1/kyc/submissions", data={"user_id": str(client.user_id)}, files=files)  # type: ignore[attr-defined]
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]


async def test_unknown_user_is_a_422(client: httpx.AsyncClient) -> None:
    files = [("document", ("d.jpg", b"x", "image/jpeg")), ("selfie", ("s.jpg", b"x", "image/jpeg"))]
    response = await client.post("/v1/kyc/submissions", data={"user_id": "424242"}, files=files)
    assert response.status_code == 422 and "424242" in response.json()["detail"]
