"""The KycVerifier Serve deployment: JSON-safe results, work off the event loop, InvalidImage propagates."""

from __future__ import annotations

import json
import threading
from datetime import date

import numpy as np
import pytest

from kyc.errors import InvalidImage
from kyc.pipeline import KycResult, KycStatus, RiskLevel

pytest.importorskip("ray.serve")

from deployments.kyc import KycVerifier, result_to_dict


def _result() -> KycResult:
    return KycResult(
        KycStatus.REVIEW,
        RiskLevel.MEDIUM,
        ["document_no_face"],
        np.float64(0.7),
        0.3,
        np.float32(0.9),
        "passport",
        {"surname": "ERIKSSON"},
        {"total": 12.5},
    )


def test_result_is_json_safe() -> None:
    d = result_to_dict(_result())
    assert json.loads(json.dumps(d)) == d
    assert d["status"] == "review" and d["risk_level"] == "medium"
    assert isinstance(d["face_match_score"], float) and isinstance(d["liveness_score"], float)


class _Engine:
    def __init__(self) -> None:
        self.thread: int | None = None

    def verify(self, frames: list[bytes], document: bytes, *, today: date) -> KycResult:
        self.thread = threading.get_ident()
        if not document:
            raise InvalidImage("empty upload", field="document")
        return _result()


def _replica(engine: _Engine):  # type: ignore[no-untyped-def]
    cls = KycVerifier.func_or_class
    replica = cls.__new__(cls)
    replica.engine = engine
    return replica


async def test_verify_runs_off_the_event_loop() -> None:
    engine = _Engine()
    out = await _replica(engine).verify([b"x"], b"doc", date(2024, 1, 1))
    assert out["document_type"] == "passport"
    assert engine.thread is not None and engine.thread != threading.get_ident()


async def test_invalid_image_propagates() -> None:
    with pytest.raises(InvalidImage):
        await _replica(_Engine()).verify([b"x"], b"", date(2024, 1, 1))
