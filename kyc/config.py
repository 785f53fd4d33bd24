"""KYC thresholds and limits; plain data so a Serve ``user_config`` can rebuild it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The passive-liveness models shipped inside the package (see its README.md for origin and licence).
PACKAGED_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "models"


def default_model_dir() -> Path:
    """``$VIGIL_KYC_MODEL_DIR`` if set, else the models shipped in the package."""
    env = os.environ.get("VIGIL_KYC_MODEL_DIR")
    return Path(env) if env else PACKAGED_MODEL_DIR


@dataclass(frozen=True)
class KycConfig:
    """Thresholds (units in each comment). Scores are 0..1 with higher = more genuine unless noted."""

    # MiniFASNet ONNX + RetinaFace caffe (kyc.models.MODEL_FILES); None = default_model_dir(). Missing
    # or unreadable models stop the engine from starting: there is no liveness without them.
    model_dir: Path | None = None
    max_image_bytes: int = 10_000_000  # bytes per uploaded image
    max_image_pixels: int = 40_000_000  # width * height
    min_frames: int = 1
    max_frames: int = 8
    # face matching: dlib 128-d embedding euclidean distance; lower = more similar
    face_match_distance: float = 0.55
    min_face_px: int = 60  # face box side in pixels
    min_face_sharpness: float = 15.0  # variance of the Laplacian on the face crop (grey levels^2)
    # liveness: real-score (probability the face is bona fide)
    liveness_threshold: float = 0.5
    # active challenge: eye aspect ratio and yaw
    blink_ear_closed: float = 0.2
    blink_ear_open: float = 0.25
    head_turn_yaw: float = 0.25  # normalised nose offset (-1..1) needed for a turn
    min_age_years: int = 18
    # Recognise the visual-zone text too and require every MRZ field to be printed there
    # (kyc.crosscheck); it adds OCR time per document (bench-kyc measures it). Off = MRZ check
    # digits only.
    read_visual_zone: bool = True
    ela_threshold: float = 12.0  # mean error-level excess of the photo region over the page (grey levels)
