"""One KYC submission end to end: selfie frames + document image -> ``KycResult``.

``KycEngine(config)`` loads every model once (a Serve replica builds it in ``__init__``);
``KycEngine.verify`` is pure given its inputs and ``today``. Unusable bytes raise
``kyc.errors.InvalidImage``; everything else is an outcome with reason codes. Missing or corrupt
models raise ``kyc.errors.ModelsUnavailable`` from the constructor: there is no degraded mode.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum

import numpy as np

from kyc.config import KycConfig
from kyc.document import DocumentRead, DocumentReader, tamper_signals, validate
from kyc.errors import InvalidImage
from kyc.face import FaceAnalysis, FaceAnalyzer, FaceOutcome
from kyc.imageio import decode_image
from kyc.liveness import Challenge, PassiveLiveness, check_active
from kyc.ocr import MrzLineReader, OcrEngine, RapidOcrEngine


class KycStatus(StrEnum):
    APPROVED = "approved"
    REVIEW = "review"
    REJECTED = "rejected"


class RiskLevel(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


# Longer side (px) of the document image for the first, coarse HOG pass: a passport portrait
# (~1/4 of the page width) stays >= 80 px, HOG's smallest face, on pages of typical framing.
DOC_DETECT_SIDE = 800

# Reason codes that alone make the risk high; any other reason makes it at least medium.
HIGH_RISK = (
    "face_mismatch",
    "liveness_failed",
    "document_expired",
    "holder_under_age",
    "mrz_check_failed",
    "tamper_",
    "selfie_several_faces",
    "document_several_faces",
    "liveness_active_",
)


@dataclass(frozen=True)
class KycResult:
    """``face_match_score`` 0..1 (0.5 = threshold, higher = same person); ``liveness_score`` 0..1
    (higher = live); ``timings_ms`` per stage in milliseconds (``ocr`` runs alongside ``face``,
    ``liveness`` and ``tamper``; ``ocr_wait`` is the part of it the submission waited for after
    them)."""

    status: KycStatus
    risk_level: RiskLevel
    reason_codes: list[str]
    face_match_score: float | None
    face_distance: float | None
    liveness_score: float | None
    document_type: str
    document_fields: dict[str, str]
    timings_ms: dict[str, float] = field(default_factory=dict)
    rule_version: str = "kyc-risk@1.0.0"


def risk_from_reasons(reasons: list[str]) -> tuple[RiskLevel, KycStatus]:
    """Map reason codes to a risk level and status: none -> low/approved, any high-risk code ->
    high/rejected, otherwise medium/review."""
    if any(r.startswith(h) for r in reasons for h in HIGH_RISK):
        return RiskLevel.HIGH, KycStatus.REJECTED
    if reasons:
        return RiskLevel.MEDIUM, KycStatus.REVIEW
    return RiskLevel.LOW, KycStatus.APPROVED


class KycEngine:
    """Holds the face, liveness and OCR models. Thread-safe for concurrent ``verify`` calls.

    Raises :class:`kyc.errors.ModelsUnavailable` (naming the file) when the liveness models are
    missing or unreadable: the engine does not start without them."""

    def __init__(self, config: KycConfig, *, ocr: OcrEngine | None = None) -> None:
        self.config = config
        # First: it raises ModelsUnavailable for missing or corrupt models before the slow loads.
        self.liveness = PassiveLiveness(config)
        self.faces = FaceAnalyzer(config)
        rapid = RapidOcrEngine() if ocr is None else None
        self.ocr: OcrEngine = ocr if ocr is not None else rapid  # type: ignore[assignment]
        self.documents = DocumentReader(self.ocr, MrzLineReader(rapid.recogniser) if rapid else None)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="kyc-ocr")

    def _read_document(self, image: np.ndarray, today: date) -> tuple[DocumentRead, float]:
        t = time.perf_counter()
        read = self.documents.read(image, today=today, visual_zone=self.config.read_visual_zone)
        return read, _ms(t)

    def verify(
        self, selfie_frames: list[bytes], document: bytes, *, today: date, challenge: Challenge | None = None
    ) -> KycResult:
        """Run one submission. ``challenge`` set = the frames must show it (active liveness)."""
        cfg = self.config
        timings: dict[str, float] = {}
        t = t_start = time.perf_counter()
        if not (cfg.min_frames <= len(selfie_frames) <= cfg.max_frames):
            raise InvalidImage(
                f"expected {cfg.min_frames}-{cfg.max_frames} selfie frames, got {len(selfie_frames)}",
                field="selfie_frames",
            )
        frames = [decode_image(b, cfg, field=f"selfie_frames[{i}]") for i, b in enumerate(selfie_frames)]
        doc_img = decode_image(document, cfg, field="document")
        timings["decode"] = _ms(t)

        # The document read overlaps the face work: ONNX Runtime releases the GIL while it runs
        # (dlib does not, so the overlap is partial). Its recogniser calls are single-threaded,
        # two at a time (see RapidOcrEngine), so they do not spin against the face work.
        ocr_job = self._pool.submit(self._read_document, doc_img, today)
        t = time.perf_counter()
        want_marks = challenge is not None
        # Every frame is checked (outcome, sharpness, landmarks); only the sharpest is embedded.
        selfies = [self.faces.analyze(f, landmarks=want_marks, encode=False) for f in frames]
        best = _best_selfie(selfies)
        if best is not None:
            selfies[best[0]] = self.faces.encode(frames[best[0]], best[1])
            best = (best[0], selfies[best[0]])
        doc_face = self.faces.analyze(doc_img, max_side=1600, detect_side=DOC_DETECT_SIDE)
        timings["face"] = _ms(t)
        reasons: list[str] = []
        if best is None:
            reasons.append(f"selfie_{selfies[0].outcome.value}")
        if doc_face.outcome is not FaceOutcome.OK:
            reasons.append(f"document_{doc_face.outcome.value}")
        match_score = distance = None
        if best is not None and doc_face.encoding is not None and best[1].encoding is not None:
            m = self.faces.match(best[1].encoding, doc_face.encoding)
            match_score, distance = m.score, m.distance
            if not m.matched:
                reasons.append("face_mismatch")

        t = time.perf_counter()
        idx = best[0] if best is not None else 0
        live = self.liveness.check(frames[idx], selfies[idx])
        if not live.live:
            reasons += ["liveness_failed", *live.reasons]
        if challenge is not None:
            active = check_active(selfies, challenge, cfg)
            reasons += active.reasons
        timings["liveness"] = _ms(t)

        t = time.perf_counter()
        box = doc_face.box
        tamper = tamper_signals(doc_img, (box.top, box.right, box.bottom, box.left) if box else None, cfg)
        timings["tamper"] = _ms(t)
        t = time.perf_counter()
        read, timings["ocr"] = ocr_job.result()
        timings["ocr_wait"] = _ms(t)
        t = time.perf_counter()
        reasons += validate(read, today=today, config=cfg)
        reasons += tamper.reasons
        timings["validation"] = _ms(t)

        fields: dict[str, str] = {}
        if read.mrz is not None:
            mz = read.mrz
            fields = {
                "document_number": mz.document_number,
                "surname": mz.surname,
                "given_names": mz.given_names,
                "nationality": mz.nationality,
                "issuer": mz.issuer,
                "sex": mz.sex,
                "birth_date": mz.birth_date.isoformat() if mz.birth_date else "",
                "expiry_date": mz.expiry_date.isoformat() if mz.expiry_date else "",
                "mrz": "\n".join(mz.lines),
            }
        risk, status = risk_from_reasons(reasons)
        timings["total"] = _ms(t_start)
        return KycResult(
            status, risk, reasons, match_score, distance, live.real_score, read.document_type, fields, timings
        )


def _best_selfie(selfies: list[FaceAnalysis]) -> tuple[int, FaceAnalysis] | None:
    ok = [(i, s) for i, s in enumerate(selfies) if s.outcome is FaceOutcome.OK]
    return max(ok, key=lambda t: t[1].sharpness) if ok else None


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 1)


def verify(
    selfie_frames: list[bytes],
    document: bytes,
    *,
    today: date,
    config: KycConfig,
    engine: KycEngine | None = None,
) -> KycResult:
    """Convenience wrapper: builds a ``KycEngine`` when none is given (slow: loads models)."""
    return (engine or KycEngine(config)).verify(selfie_frames, document, today=today)
