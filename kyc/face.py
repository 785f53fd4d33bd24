"""Face detection, quality outcomes and selfie-to-document matching (dlib ResNet via face_recognition).

Bad photos are outcomes (``FaceOutcome``), never exceptions. The match score is
``1 - distance / (2 * threshold)`` clipped to 0..1, so 0.5 sits exactly on the decision threshold
and higher = more similar.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cv2
import numpy as np

from kyc.config import KycConfig


class FaceOutcome(StrEnum):
    OK = "ok"
    NO_FACE = "no_face"
    SEVERAL_FACES = "several_faces"
    FACE_TOO_SMALL = "face_too_small"
    TOO_BLURRED = "too_blurred"


@dataclass(frozen=True)
class FaceBox:
    """Pixel box (top, right, bottom, left), face_recognition's order."""

    top: int
    right: int
    bottom: int
    left: int

    @property
    def size(self) -> int:
        return min(self.bottom - self.top, self.right - self.left)


@dataclass(frozen=True)
class FaceAnalysis:
    outcome: FaceOutcome
    box: FaceBox | None = None
    encoding: np.ndarray | None = None  # 128-d dlib embedding
    sharpness: float = 0.0  # variance of the Laplacian of the grey face crop
    landmarks: dict[str, list[tuple[int, int]]] | None = None


@dataclass(frozen=True)
class FaceMatch:
    """``distance``: embedding distance (lower = same person); ``score`` 0..1 (higher = same)."""

    matched: bool
    distance: float
    score: float


def _fr() -> Any:
    with warnings.catch_warnings():
        # face_recognition_models imports pkg_resources, deprecated upstream; not ours to fix.
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        import face_recognition

    return face_recognition


def _limit(image: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``image`` scaled down (never up) so its longer side is at most ``max_side``; and the scale."""
    scale = min(1.0, max_side / max(image.shape[:2]))
    if scale >= 1.0:
        return image, 1.0
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA), scale


def sharpness(gray: np.ndarray) -> float:
    """Variance of the Laplacian (grey levels squared); higher = sharper."""
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


class FaceAnalyzer:
    """Detects one face, checks its quality and embeds it. Build once; loads dlib models."""

    def __init__(self, config: KycConfig) -> None:
        self.config = config
        self._fr = _fr()

    def analyze(
        self,
        image_bgr: np.ndarray,
        *,
        landmarks: bool = False,
        max_side: int = 800,
        encode: bool = True,
        detect_side: int = 640,
    ) -> FaceAnalysis:
        """Detect faces with HOG and analyse the one face; image is BGR uint8.

        Coarse to fine: HOG runs first without upsampling on the image scaled to at most
        ``detect_side`` pixels (fast; finds faces of >= ~80 px there); only if that finds nothing
        does it run on the ``max_side`` image (upsampled once when that is small). Quality,
        landmarks and the embedding always use the ``max_side`` image. ``encode=False`` skips the
        embedding (see ``encode``).
        """
        img, scale = _limit(image_bgr, max_side)
        rgb = np.ascontiguousarray(img[:, :, ::-1])
        boxes = self._detect(rgb, detect_side)
        if not boxes:
            return FaceAnalysis(FaceOutcome.NO_FACE)
        if len(boxes) > 1:
            return FaceAnalysis(FaceOutcome.SEVERAL_FACES)
        t, r, b, left = boxes[0]
        box = FaceBox(int(t / scale), int(r / scale), int(b / scale), int(left / scale))
        crop = cv2.cvtColor(img[max(t, 0) : b, max(left, 0) : r], cv2.COLOR_BGR2GRAY)
        # Normalise the crop size so sharpness does not depend on resolution.
        sharp = sharpness(cv2.resize(crop, (160, 160))) if crop.size else 0.0
        if box.size < self.config.min_face_px:
            return FaceAnalysis(FaceOutcome.FACE_TOO_SMALL, box=box, sharpness=sharp)
        if sharp < self.config.min_face_sharpness:
            return FaceAnalysis(FaceOutcome.TOO_BLURRED, box=box, sharpness=sharp)
        enc = self._fr.face_encodings(rgb, [boxes[0]], num_jitters=1, model="small")[0] if encode else None
        marks = None
        if landmarks:
            raw = self._fr.face_landmarks(rgb, [boxes[0]], model="large")[0]
            marks = {k: [(int(x / scale), int(y / scale)) for x, y in v] for k, v in raw.items()}
        return FaceAnalysis(FaceOutcome.OK, box=box, encoding=enc, sharpness=sharp, landmarks=marks)

    def encode(self, image_bgr: np.ndarray, face: FaceAnalysis, *, max_side: int = 800) -> FaceAnalysis:
        """``face`` (from ``analyze(..., encode=False)`` on the same image and ``max_side``) with
        its embedding; unchanged when it has one already or is not OK."""
        if face.encoding is not None or face.box is None or face.outcome is not FaceOutcome.OK:
            return face
        img, scale = _limit(image_bgr, max_side)
        rgb = np.ascontiguousarray(img[:, :, ::-1])
        b = face.box
        loc = (round(b.top * scale), round(b.right * scale), round(b.bottom * scale), round(b.left * scale))
        enc = self._fr.face_encodings(rgb, [loc], num_jitters=1, model="small")[0]
        return dataclasses.replace(face, encoding=enc)

    def _detect(self, rgb: np.ndarray, detect_side: int) -> list[tuple[int, int, int, int]]:
        small, s = _limit(rgb, detect_side)
        boxes = self._fr.face_locations(
            np.ascontiguousarray(small), number_of_times_to_upsample=0, model="hog"
        )
        if boxes:
            return [(int(t / s), int(r / s), int(b / s), int(left / s)) for t, r, b, left in boxes]
        upsample = 1 if max(rgb.shape[:2]) <= 1000 else 0
        if s == 1.0 and upsample == 0:
            return []  # the fine pass would repeat the coarse one
        return list(self._fr.face_locations(rgb, number_of_times_to_upsample=upsample, model="hog"))

    def match(self, a: np.ndarray, b: np.ndarray) -> FaceMatch:
        """Compare two embeddings against ``config.face_match_distance``."""
        d = float(np.linalg.norm(a - b))
        thr = self.config.face_match_distance
        return FaceMatch(d <= thr, d, float(np.clip(1 - d / (2 * thr), 0, 1)))
