"""A committed KYC result reaches the velocity state the transaction features read, without a
restart: the shard holding the user takes the new risk level at once."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any

from vigil.decision.local_graph import LocalGraph
from vigil.decision.policy import DecisionPolicy
from vigil.service import VigilService


async def _verdict(frames: list[bytes], document: bytes, today: date) -> dict[str, Any]:
    # Stands in for the KYC deployment (tested on real images in tests/unit/kyc): only its
    # verdict matters here.
    return {"status": "rejected", "risk_level": "high", "reason_codes": ["face_mismatch"]}


async def test_a_kyc_result_changes_the_loaded_users_features(
    sqlite_url: str, open_shop: Callable[[VigilService], Awaitable[Any]]
) -> None:
    service = VigilService(sqlite_url)
    graph = LocalGraph(sqlite_url, supervised=None, anomaly=None)
    service.attach_screening(graph, DecisionPolicy())
    service.attach_kyc(_verdict)
    try:
        shop = await open_shop(service)
        now = datetime.now(UTC)
        tx = shop.tx("kyc-feeds-0001", "12.00", created_at=now)
        await service.screen(tx, received_at=now)  # the shard now holds the user's state
        before = (await graph.shard.user_counts(shop.user_id, now))["kyc_risk_level_by_user"]
        assert before != 3.0 or math.isnan(before)

        submission = await service.submit_kyc(shop.user_id, selfie_frames=[b"s"], document=b"d")

        assert submission.risk_level == "high"
        after = (await graph.shard.user_counts(shop.user_id, now))["kyc_risk_level_by_user"]
        assert after == 3.0  # KYC_RISK_CODES["high"]
    finally:
        await graph.close()
        await service.close()
