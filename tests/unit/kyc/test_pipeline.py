"""End to end: a submission with the specimen passport, and risk mapping."""

from __future__ import annotations

from datetime import date

import pytest

from kyc.pipeline import KycStatus, RiskLevel, risk_from_reasons

from .conftest import kyc_data


def test_risk_mapping() -> None:
    assert risk_from_reasons([]) == (RiskLevel.LOW, KycStatus.APPROVED)
    assert risk_from_reasons(["document_no_face"])[0] is RiskLevel.MEDIUM
    assert risk_from_reasons(["face_mismatch"])[0] is RiskLevel.HIGH


@pytest.mark.slow
def test_full_submission(engine) -> None:  # type: ignore[no-untyped-def]
    selfie = kyc_data("liveness", "image_T1.jpg").read_bytes()
    doc = kyc_data("mrz", "passport-td3.jpg").read_bytes()
    r = engine.verify([selfie] * 3, doc, today=date(2010, 1, 1))
    assert r.document_fields["document_number"] == "L898902C3"
    assert r.liveness_score is not None and r.liveness_score > 0.5
    # The specimen portrait is another person: the match must fail and the risk be high.
    assert "face_mismatch" in r.reason_codes or any(c.startswith("document_") for c in r.reason_codes)
    assert r.risk_level is not RiskLevel.LOW
    assert set(r.timings_ms) >= {"face", "liveness", "ocr", "total"}
    later = engine.verify([selfie], doc, today=date(2013, 1, 1))
    assert "document_expired" in later.reason_codes
