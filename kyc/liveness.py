"""Presentation-attack detection: passive (one image) and active (challenge over a frame sequence).

Passive = MiniFASNetV2 (crop scale 2.7) + MiniFASNetV1SE (crop scale 4.0) around the face box of the
RetinaFace caffe detector, as in minivision-ai/Silent-Face-Anti-Spoofing (80x80 BGR input, raw
0..255 values, softmax class 1 = real, the two models' probabilities averaged), combined with
weight-free image-forensics signals. All scores are 0..1; ``real_score`` higher = more likely a
live face, forensic ``*_score`` higher = more attack-like.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from kyc.config import KycConfig, default_model_dir
from kyc.errors import ModelsUnavailable
from kyc.face import FaceAnalysis, FaceBox, sharpness
from kyc.models import CLASSIFIERS, DETECTOR_FILES, check_model_files


@dataclass(frozen=True)
class ForensicSignals:
    """Weight-free attack cues on the face region; each 0..1, higher = more attack-like."""

    moire_score: float  # periodic high-frequency energy (screen pixel grid / halftone)
    glare_score: float  # share of clipped highlights on the face
    colour_cast_score: float  # channel imbalance of the face (screen blue / paper yellow)
    border_score: float  # long straight edges of a bezel or paper border in the frame
    blur_score: float  # 1 - normalised sharpness

    def attack_score(self) -> float:
        """Combined forensic attack score 0..1: the strongest cue, plus half the border cue (straight
        lines also occur in real backgrounds, so a border alone never rejects)."""
        strongest = max(self.moire_score, self.glare_score, self.colour_cast_score, self.blur_score)
        return float(min(1.0, strongest + 0.45 * self.border_score))

    def reasons(self, threshold: float = 0.5) -> list[str]:
        names = {
            "moire_score": "moire",
            "glare_score": "glare",
            "colour_cast_score": "colour_cast",
            "border_score": "border",
            "blur_score": "blur",
        }
        return [f"liveness_{v}" for k, v in names.items() if getattr(self, k) >= threshold]


@dataclass(frozen=True)
class PassiveResult:
    """``real_score``: 0..1 probability-like score that the image shows a live face."""

    live: bool
    real_score: float
    model_score: float  # MiniFASNet average real probability (0 when no face box was found)
    forensics: ForensicSignals
    reasons: list[str] = field(default_factory=list)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return np.asarray(e / e.sum(axis=-1, keepdims=True))


def crop_scaled(image: np.ndarray, box: tuple[int, int, int, int], scale: float, out: int = 80) -> np.ndarray:
    """Silent-Face ``CropImage``: a square-ish crop ``scale`` times the box (x, y, w, h), shifted
    to stay inside the image, resized to ``out`` x ``out``."""
    src_h, src_w = image.shape[:2]
    x, y, w, h = box
    scale = min((src_h - 1) / h, (src_w - 1) / w, scale)
    nw, nh = w * scale, h * scale
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = cx - nw / 2, cy - nh / 2
    x1, y1 = cx + nw / 2, cy + nh / 2
    if x0 < 0:
        x1 -= x0
        x0 = 0
    if y0 < 0:
        y1 -= y0
        y0 = 0
    if x1 > src_w - 1:
        x0 -= x1 - src_w + 1
        x1 = src_w - 1
    if y1 > src_h - 1:
        y0 -= y1 - src_h + 1
        y1 = src_h - 1
    crop = image[int(y0) : int(y1) + 1, int(x0) : int(x1) + 1]
    return cv2.resize(crop, (out, out))


#: The files ``MiniFasNet`` loads from its model folder, each listed in the folder's ``SHA256SUMS``.
class MiniFasNet:
    """RetinaFace detector + the two MiniFASNet classifiers, loaded once from ``model_dir``.

    Raises :class:`ModelsUnavailable` (naming the file) if a model is missing, unreadable, fails
    its checksum, does not load, or gives no usable output on a test image."""

    def __init__(self, model_dir: Path, *, threads: int = 1) -> None:
        import onnxruntime as ort

        if not hasattr(cv2.dnn, "readNetFromCaffe"):
            raise RuntimeError("OpenCV without the Caffe importer (OpenCV >= 5): install opencv < 5")
        check_model_files(model_dir)
        prototxt, caffemodel = (model_dir / name for name in DETECTOR_FILES)
        try:
            self._detector = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
        except cv2.error as exc:
            raise ModelsUnavailable(
                f"cannot load the KYC face detector {caffemodel} ({prototxt}): {exc}", path=caffemodel
            ) from exc
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self._models: list[tuple[float, Any, Path]] = []  # crop scale, ONNX session, file
        for name, scale in CLASSIFIERS:
            try:
                sess = ort.InferenceSession(str(model_dir / name), opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
                raise ModelsUnavailable(
                    f"cannot load KYC model file {model_dir / name}: {exc}", path=model_dir / name
                ) from exc
            self._models.append((scale, sess, model_dir / name))
        self._self_test(caffemodel)

    def _self_test(self, caffemodel: Path) -> None:
        """Run every model once on a synthetic image: a model that loads but cannot run on this
        input (wrong shape, wrong output) stops the start, not the first submission."""
        image = np.full((240, 320, 3), 127, np.uint8)
        cv2.circle(image, (160, 120), 60, (90, 120, 170), -1)
        try:
            self.detect(image)
        except (cv2.error, ValueError, IndexError) as exc:
            raise ModelsUnavailable(
                f"KYC face detector {caffemodel} does not run: {exc}", path=caffemodel
            ) from exc
        for scale, sess, path in self._models:
            try:
                probs = self._probs(sess, image, (100, 60, 120, 120), scale)
            except Exception as exc:  # onnxruntime raises several unrelated types
                raise ModelsUnavailable(f"KYC model file {path} does not run: {exc}", path=path) from exc
            if probs.shape != (1, 3) or not np.all(np.isfinite(probs)):
                raise ModelsUnavailable(
                    f"KYC model file {path} gives {probs.shape} outputs, not the 3 class scores of a "
                    "MiniFASNet classifier",
                    path=path,
                )

    def detect(self, image: np.ndarray) -> tuple[int, int, int, int] | None:
        """Most confident face box (x, y, w, h) in pixels, or None."""
        h, w = image.shape[:2]
        img = image
        if w * h >= 192 * 192:
            ar = w / h
            img = cv2.resize(image, (int(192 * math.sqrt(ar)), int(192 / math.sqrt(ar))))
        blob = cv2.dnn.blobFromImage(img, 1, mean=(104, 117, 123))
        self._detector.setInput(blob, "data")
        out = self._detector.forward("detection_out").reshape(-1, 7)
        if out.size == 0:
            return None
        i = int(np.argmax(out[:, 2]))
        if out[i, 2] < 0.5:
            return None
        left, top, right, bottom = out[i, 3] * w, out[i, 4] * h, out[i, 5] * w, out[i, 6] * h
        return int(left), int(top), max(1, int(right - left + 1)), max(1, int(bottom - top + 1))

    @staticmethod
    def _probs(sess: Any, image: np.ndarray, box: tuple[int, int, int, int], scale: float) -> np.ndarray:
        crop = crop_scaled(image, box, scale).astype(np.float32).transpose(2, 0, 1)[None]
        return _softmax(np.asarray(sess.run(None, {sess.get_inputs()[0].name: crop})[0]))

    def real_score(self, image: np.ndarray, box: tuple[int, int, int, int]) -> float:
        """Average class-1 ("real") softmax probability of the two models, 0..1."""
        return float(np.mean([self._probs(sess, image, box, scale)[0, 1] for scale, sess, _ in self._models]))


def forensic_signals(image: np.ndarray, box: FaceBox | None) -> ForensicSignals:
    """Weight-free cues on the face region (or the centre when no box); image is BGR uint8."""
    h, w = image.shape[:2]
    if box is None:
        box = FaceBox(h // 4, 3 * w // 4, 3 * h // 4, w // 4)
    t, b = max(box.top, 0), min(box.bottom, h)
    left, r = max(box.left, 0), min(box.right, w)
    face = image[t:b, left:r] if b > t and r > left else image
    grey_face = cv2.cvtColor(cv2.resize(face, (128, 128), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    # Moire: energy in isolated high-frequency spectral peaks relative to the mid band.
    f = np.abs(np.fft.fftshift(np.fft.fft2(grey_face.astype(np.float32) - grey_face.mean())))
    yy, xx = np.mgrid[-64:64, -64:64]
    rad = np.hypot(yy, xx)
    hf = f[(rad > 24) & (rad < 62)]
    peak_ratio = float(np.percentile(hf, 99.9) / (np.median(hf) + 1e-6))
    moire = float(np.clip((peak_ratio - 25.0) / 25.0, 0, 1))
    # Glare: clipped highlights (all channels >= 245) on the face.
    clipped = float(np.mean(np.all(face >= 245, axis=2)))
    glare = float(np.clip((clipped - 0.02) / 0.08, 0, 1))
    # Colour cast: chroma of the face's mean colour in Lab; skin sits near a* 10-20, b* 10-25.
    lab = cv2.cvtColor(face, cv2.COLOR_BGR2LAB).reshape(-1, 3).astype(np.float32).mean(0)
    a, bb = lab[1] - 128, lab[2] - 128
    cast = float(np.clip(max(-a, -bb, a - 30, bb - 40) / 10.0, 0, 1))
    # Border: long straight lines away from the face (bezel/paper edge) in the whole frame.
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    s = 480 / max(h, w)
    small = cv2.resize(grey, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    edges = cv2.Canny(small, 60, 180)
    lines = cv2.HoughLinesP(
        edges, 1, np.pi / 180, threshold=80, minLineLength=int(0.6 * min(small.shape)), maxLineGap=5
    )
    n_lines = (
        0
        if lines is None
        else sum(1 for x1, y1, x2, y2 in lines[:, 0] if abs(x1 - x2) < 4 or abs(y1 - y2) < 4)
    )
    border = float(np.clip(n_lines / 2.0, 0, 1))
    blur = float(np.clip(1 - sharpness(grey_face) / 60.0, 0, 1))
    return ForensicSignals(moire, glare, cast, border, blur)


class PassiveLiveness:
    """MiniFASNet and forensic signals; both always run. Build once.

    The models come from ``config.model_dir`` (None = :func:`kyc.config.default_model_dir`, the
    models shipped in the package); without them this raises :class:`ModelsUnavailable`."""

    def __init__(self, config: KycConfig) -> None:
        self.config = config
        self._fas = MiniFasNet(Path(config.model_dir) if config.model_dir else default_model_dir())

    def check(self, image: np.ndarray, face: FaceAnalysis | None = None) -> PassiveResult:
        """Score one BGR image. ``real_score`` = model score x (1 - forensic attack score)."""
        box = face.box if face is not None else None
        forensics = forensic_signals(image, box)
        reasons: list[str] = []
        det = self._fas.detect(image)
        if det is None and box is not None:
            det = (box.left, box.top, box.right - box.left, box.bottom - box.top)
        model_score = self._fas.real_score(image, det) if det is not None else 0.0
        if model_score < self.config.liveness_threshold:
            reasons.append("liveness_model_spoof")
        real = model_score * (1 - forensics.attack_score())
        reasons += forensics.reasons()
        live = real >= self.config.liveness_threshold
        return PassiveResult(live, real, model_score, forensics, reasons if not live else [])


# ---------------------------------------------------------------- active challenge


class Challenge(StrEnum):
    BLINK = "blink"
    TURN_HEAD = "turn_head"


def eye_aspect_ratio(eye: list[tuple[int, int]]) -> float:
    """Soukupova & Cech EAR of 6 eye landmarks; ~0.3 open, < 0.2 closed."""
    p = np.asarray(eye, dtype=np.float64)
    v = np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])
    hz = 2 * np.linalg.norm(p[0] - p[3])
    return float(v / hz) if hz > 0 else 0.0


def yaw_proxy(marks: dict[str, list[tuple[int, int]]]) -> float:
    """Horizontal nose-tip offset from the eye midpoint, in units of half the inter-eye distance;
    0 = frontal, sign = direction of the turn."""
    le = np.mean(marks["left_eye"], axis=0)
    re = np.mean(marks["right_eye"], axis=0)
    nose = np.mean(marks["nose_tip"], axis=0)
    half = np.linalg.norm(re - le) / 2
    return float((nose[0] - (le[0] + re[0]) / 2) / half) if half > 0 else 0.0


@dataclass(frozen=True)
class ActiveResult:
    passed: bool
    challenge: Challenge
    ears: list[float]
    yaws: list[float]
    reasons: list[str]


def check_active(frames: list[FaceAnalysis], challenge: Challenge, config: KycConfig) -> ActiveResult:
    """Pass iff the landmark sequence shows the challenge: an open-closed-open blink, or a yaw
    swing of at least ``config.head_turn_yaw``. Identical frames cannot pass: nothing moves."""
    usable = [f.landmarks for f in frames if f.landmarks]
    ears = [(eye_aspect_ratio(m["left_eye"]) + eye_aspect_ratio(m["right_eye"])) / 2 for m in usable]
    yaws = [yaw_proxy(m) for m in usable]
    reasons: list[str] = []
    if len(usable) < 2:
        return ActiveResult(False, challenge, ears, yaws, ["liveness_active_too_few_frames"])
    if challenge is Challenge.BLINK:
        closed = [i for i, e in enumerate(ears) if e < config.blink_ear_closed]
        ok = (
            bool(closed)
            and any(e > config.blink_ear_open for e in ears[: closed[0]])
            and any(e > config.blink_ear_open for e in ears[closed[-1] + 1 :])
        )
        if not ok:
            reasons.append("liveness_active_no_blink")
    else:
        ok = max(yaws) - min(yaws) >= config.head_turn_yaw
        if not ok:
            reasons.append("liveness_active_no_head_turn")
    return ActiveResult(ok, challenge, ears, yaws, reasons)
