"""The KycVerifier Serve deployment: JSON-safe results, work off the event loop, InvalidImage propagates,
no start without models (and the deploy error says why)."""

from __future__ import annotations

import json
import threading
import warnings
from datetime import date
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from kyc.errors import InvalidImage, ModelsUnavailable
from kyc.pipeline import KycResult, KycStatus, RiskLevel

with warnings.catch_warnings():  # Ray Serve's pydantic fields warn on import
    warnings.simplefilter("ignore", DeprecationWarning)
    from deployments.kyc import KycVerifier, result_to_dict
    from deployments.launch import failed_deployments


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


def test_a_replica_without_models_does_not_start(tmp_path: Path) -> None:
    # Serve keeps such a replica out of service and reports this error as the deployment's.
    missing = tmp_path / "no-models"
    with pytest.raises(ModelsUnavailable) as exc:
        KycVerifier.func_or_class(model_dir=str(missing))  # type: ignore[attr-defined]  # str: as from YAML
    assert exc.value.path == missing and str(missing) in str(exc.value)


def test_a_failed_deploy_says_why() -> None:
    # The application's message names the failed deployment; deploy() adds the deployment's own
    # message, which carries the replica constructor's error.
    def info(status: str, message: str) -> SimpleNamespace:
        return SimpleNamespace(status=status, message=message)

    reason = "ModelsUnavailable: KYC model file /m/MiniFASNetV2.onnx is missing"
    status = {
        "vigil": SimpleNamespace(
            deployments={
                "Ingress": info("HEALTHY", ""),
                "KycVerifier": info("DEPLOY_FAILED", f"failed to start 3 times. Error:\n{reason}"),
            }
        )
    }
    detail = failed_deployments(status, ["vigil"])
    assert detail.startswith("\nvigil/KycVerifier: ") and detail.endswith(reason)
    assert "Ingress" not in detail
