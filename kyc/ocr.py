"""Text recognition behind one small protocol, and an MRZ line reader built on RapidOCR's recogniser.

``RapidOcrEngine`` (default) uses the models bundled in ``rapidocr_onnxruntime``: no download.
``EasyOcrEngine`` is optional (``easyocr`` is not a dependency) and never downloads weights.
``MrzLineReader`` reads one MRZ line crop character by character: the line is cut into character
cells (OCR-B is monospaced), the recogniser's per-frame CTC probabilities are restricted to the
MRZ alphabet, and each cell takes the frames that cover it. This keeps the characters the CTC
decoder drops (repeated ``<``, ``MM``) and gives per-position candidates for check-digit repair.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from kyc.mrz import CHARSET

Box = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class TextLine:
    """One recognised text line: ``box`` is its 4 corner points in pixels, ``score`` 0..1 (higher =
    more confident)."""

    text: str
    box: Box
    score: float


class OcrEngine(Protocol):
    """Anything that finds and reads text lines in a BGR uint8 image."""

    def read(self, image: np.ndarray) -> list[TextLine]: ...


class RapidOcrEngine:
    """RapidOCR (PP-OCRv4 det + rec ONNX, bundled in the wheel). Thread-safe; build once."""

    def __init__(self, *, threads: int = 2) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self._engine = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)
        self._lock = threading.Lock()

    @property
    def recogniser(self) -> Any:
        """The underlying text recogniser (``TextRecognizer``), shared with ``MrzLineReader``."""
        return self._engine.text_rec

    def detect(self, image: np.ndarray) -> list[Box]:
        """Text line boxes only (4 corner points each, pixels); much faster than ``read``."""
        with self._lock:
            result, _ = self._engine(image, use_cls=False, use_rec=False)
        return [tuple((float(x), float(y)) for x, y in box) for box in (result or [])]

    def read(self, image: np.ndarray) -> list[TextLine]:
        with self._lock:
            result, _ = self._engine(image, use_cls=False)
        return [
            TextLine(str(t), tuple((float(x), float(y)) for x, y in box), float(s))
            for box, t, s in (result or [])
        ]


class EasyOcrEngine:
    """EasyOCR backend; ``model_dir`` must already hold its weights (``download_enabled=False``)."""

    def __init__(self, model_dir: Path, *, languages: tuple[str, ...] = ("en",)) -> None:
        try:
            import easyocr
        except ImportError as exc:  # optional backend
            raise RuntimeError("EasyOcrEngine needs the optional 'easyocr' package") from exc
        self._reader = easyocr.Reader(
            list(languages),
            gpu=False,
            model_storage_directory=str(model_dir),
            download_enabled=False,
            verbose=False,
        )

    def read(self, image: np.ndarray) -> list[TextLine]:
        return [
            TextLine(str(t), tuple((float(x), float(y)) for x, y in box), float(s))
            for box, t, s in self._reader.readtext(image)
        ]


# Characters of the recogniser's dictionary that are drawn like an MRZ character.
_ALIASES = {"<": "《〈‹«＜く(〔{[【（", "X": "×x"}


class MrzLineReader:
    """Reads single MRZ text lines; returns per-position candidates ``{char: probability}``."""

    def __init__(self, recogniser: Any) -> None:
        self._rec = recogniser
        chars: list[str] = list(recogniser.postprocess_op.character)
        index = {c: i for i, c in enumerate(chars)}
        self._columns: list[list[int]] = []
        for ch in CHARSET:
            names = [ch, ch.lower(), *_ALIASES.get(ch, "")]
            self._columns.append(sorted({index[n] for n in names if n in index}))
        self._lock = threading.Lock()

    def read(self, line_image: np.ndarray) -> list[dict[str, float]]:
        """Candidates per character cell of a tightly or loosely cropped single-line image
        (dark text on light background, BGR or grey)."""
        grey = line_image if line_image.ndim == 2 else cv2.cvtColor(line_image, cv2.COLOR_BGR2GRAY)
        thr, _ = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
        ink = grey <= thr
        rows = np.flatnonzero(ink.sum(1) > 0)
        if rows.size == 0:
            return []
        r0, r1 = int(rows[0]), int(rows[-1]) + 1
        cells = _character_cells(ink[r0:r1])
        if not cells:
            return []
        grey = grey[r0:r1]
        pad = max(2, int(grey.shape[0] * 0.15))
        padded = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=255)
        bgr = cv2.cvtColor(padded, cv2.COLOR_GRAY2BGR)
        h, w = bgr.shape[:2]
        x = self._rec.resize_norm_img(bgr, max(320 / 48, w / h))[None].astype(np.float32)
        with self._lock:
            probs = self._rec.session(x)[0][0]  # frames x dictionary
        table = np.stack([probs[:, cols].sum(1) for cols in self._columns], axis=1)
        scale = math.ceil(48 * w / h) / w
        frame_w = x.shape[3] / probs.shape[0]
        out: list[dict[str, float]] = []
        for a, b in cells:
            t0 = int((a + pad) * scale / frame_w)
            t1 = max(t0 + 1, math.ceil((b + pad) * scale / frame_w))
            mass = table[t0:t1].sum(0)
            mass = mass / max(float(mass.sum()), 1e-9)
            top = np.argsort(-mass)[:4]
            out.append({CHARSET[i]: float(mass[i]) for i in top})
        return out


def _character_cells(ink: np.ndarray) -> list[tuple[int, int]]:
    """Column ranges of characters: ink runs, with runs wider than the pitch split evenly."""
    cols = ink.sum(0) > 0
    runs: list[tuple[int, int]] = []
    i, n = 0, len(cols)
    while i < n:
        if cols[i]:
            j = i
            while j < n and cols[j]:
                j += 1
            runs.append((i, j))
            i = j
        else:
            i += 1
    if len(runs) < 4:
        return runs
    pitch = float(np.median(np.diff([a for a, _ in runs])))
    out: list[tuple[int, int]] = []
    for a, b in runs:
        k = round((b - a) / pitch) if pitch > 0 else 1
        if k >= 2:  # touching characters
            step = (b - a) / k
            out += [(int(a + t * step), int(a + (t + 1) * step)) for t in range(k)]
        else:
            out.append((a, b))
    return out
