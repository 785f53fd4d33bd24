"""Text recognition behind one small protocol, and an MRZ line reader built on RapidOCR's recogniser.

``RapidOcrEngine`` (default) uses the models bundled in ``rapidocr_onnxruntime``: no download.
``EasyOcrEngine`` is optional (``easyocr`` is not a dependency) and never downloads weights.
``MrzLineReader`` reads one MRZ line crop character by character: the line is cut into character
cells (:mod:`kyc.glyphs`), the recogniser's per-frame CTC probabilities are restricted to the
MRZ alphabet and each cell takes the frames that cover it; the OCR-B glyph classifier reads each
cell too, and the two vote. This keeps the characters the CTC decoder drops (repeated ``<``,
``MM``) and gives per-position candidates for check-digit repair.
"""

from __future__ import annotations

import math
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from kyc.glyphs import GlyphClassifier, LineCells, default_classifier, line_patches, segment_line
from kyc.mrz import CHARSET

Box = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class TextLine:
    """One recognised text line: ``box`` is its 4 corner points in pixels, ``score`` 0..1 (higher =
    more confident)."""

    text: str
    box: Box
    score: float


def crop_box(image: np.ndarray, box: Box) -> np.ndarray:
    """The axis-aligned crop around a text box, with a margin of 15% of its height."""
    pts = np.asarray(box, dtype=np.float32)
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    h, w = image.shape[:2]
    m = 0.15 * (y1 - y0)
    return image[max(0, int(y0 - m)) : min(h, int(y1 + m)), max(0, int(x0 - m)) : min(w, int(x1 + m))]


_DEFAULT_RATIO = 320 / 48  # RapidOCR's recogniser input: 48 px high, padded to >= 320 px wide
_MIN_BOX_RATIO = 3.0  # narrower boxes are padded to this width/height ratio before recognition


class OcrEngine(Protocol):
    """Anything that finds and reads text lines in a BGR uint8 image."""

    def read(self, image: np.ndarray) -> list[TextLine]: ...


class RapidOcrEngine:
    """RapidOCR (PP-OCRv4 det + rec ONNX, bundled in the wheel). Thread-safe; build once."""

    def __init__(self, *, threads: int = 1, workers: int = 2) -> None:
        """``threads``: ONNX Runtime threads per call; ``workers``: boxes read concurrently by
        ``recognise``. One thread per call and two calls at once beat two threads per call on
        this workload: a text box is too small a job to split, and ORT's intra-op pool spins
        while it waits, so a document read took more wall and CPU time that way (docs/kyc.md)."""
        from rapidocr_onnxruntime import RapidOCR

        self._engine = RapidOCR(intra_op_num_threads=threads, inter_op_num_threads=1)
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ocr-rec") if workers > 1 else None

    @property
    def recogniser(self) -> Any:
        """The underlying text recogniser (``TextRecognizer``), shared with ``MrzLineReader``."""
        return self._engine.text_rec

    def detect(self, image: np.ndarray, *, max_side: int | None = None) -> list[Box]:
        """Text line boxes only (4 corner points each, pixels); much faster than ``read``.

        ``max_side`` set: the detector runs on the image scaled so its longer side is at most that
        many pixels (RapidOCR's default instead scales the *shorter* side up to 736, which makes
        a wide strip or a large page slow); boxes are in ``image`` pixels either way.
        """
        if max_side is None:
            with self._lock:
                result, _ = self._engine(image, use_cls=False, use_rec=False)
            return [tuple((float(x), float(y)) for x, y in box) for box in (result or [])]
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

        det = self._engine.text_det
        pre = DetPreProcess(max_side, "max", det.mean, det.std)
        shape = image.shape[:2]
        with self._lock:
            x = pre(image)
            if x is None:
                return []
            preds = det.infer(x)[0]
            boxes, _ = det.postprocess_op(preds, shape)
            boxes = det.filter_tag_det_res(boxes, shape)
        return [tuple((float(px), float(py)) for px, py in box) for box in boxes]

    def recognise(self, image: np.ndarray, boxes: list[Box]) -> list[TextLine]:
        """Read the text of boxes already found by ``detect``, one box per recogniser call at its
        own width, ``workers`` boxes at a time (ORT sessions are thread-safe). (RapidOCR's batched
        call pads every line to at least 320x48 px, so the short fields of a visual zone cost as
        much as a long line; boxes narrower than 3:1 are padded to 3:1.)"""
        crops = [crop_box(image, box) for box in boxes]
        work = [(b, c) for b, c in zip(boxes, crops, strict=True) if c.shape[0] >= 2 and c.shape[1] >= 2]
        if self._pool is None or len(work) < 2:
            return [self._recognise_one(b, c) for b, c in work]
        return list(self._pool.map(lambda bc: self._recognise_one(*bc), work))

    def _recognise_one(self, box: Box, crop: np.ndarray) -> TextLine:
        rec = self._engine.text_rec
        # Very short boxes (one letter, a code) read reliably only padded: unpadded, a lone ``P``
        # read as nothing; padded to 3:1 every short box of both specimens reads as it does at
        # RapidOCR's 320x48 default, at half the cost.
        ratio = max(crop.shape[1] / crop.shape[0], _MIN_BOX_RATIO)
        x = rec.resize_norm_img(crop, ratio)[None].astype(np.float32)
        preds = rec.session(x)[0]
        (text, score), *_ = rec.postprocess_op(preds, False, wh_ratio_list=[ratio], max_wh_ratio=ratio)
        return TextLine(str(text), box, float(score))

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
    """Reads single MRZ text lines; returns per-position candidates ``{char: probability}``.

    Two readers vote per character cell: RapidOCR's recogniser (its CTC frames over the cell) and
    the OCR-B glyph classifier of :mod:`kyc.glyphs` (when its weights are present). Their
    probabilities are combined log-linearly: ``p ~ ctc**ctc_weight * glyph**glyph_weight``.
    """

    def __init__(
        self,
        recogniser: Any,
        glyphs: GlyphClassifier | bool | None = True,
        *,
        ctc_weight: float = 0.5,
        glyph_weight: float = 1.0,
    ) -> None:
        self._rec = recogniser
        chars: list[str] = list(recogniser.postprocess_op.character)
        index = {c: i for i, c in enumerate(chars)}
        self._columns: list[list[int]] = []
        for ch in CHARSET:
            names = [ch, ch.lower(), *_ALIASES.get(ch, "")]
            self._columns.append(sorted({index[n] for n in names if n in index}))
        self._glyphs = default_classifier() if glyphs is True else (glyphs or None)
        self._wc, self._wg = ctc_weight, glyph_weight

    def read(self, line_image: np.ndarray) -> list[dict[str, float]]:
        """Candidates per character cell of a tightly or loosely cropped single-line image
        (dark text on light background, BGR or grey)."""
        probs = self.cell_probs(line_image)
        out: list[dict[str, float]] = []
        for row in probs:
            top = np.argsort(-row)[:4]
            out.append({CHARSET[i]: float(row[i]) for i in top})
        return out

    def cell_probs(self, line_image: np.ndarray) -> np.ndarray:
        """(cells, len(CHARSET)) combined probabilities; empty when no text line is found."""
        grey = line_image if line_image.ndim == 2 else cv2.cvtColor(line_image, cv2.COLOR_BGR2GRAY)
        lc = segment_line(grey)
        if lc is None:
            return np.zeros((0, len(CHARSET)), np.float32)
        ctc = self.ctc_probs(grey, lc)
        if self._glyphs is None:
            return ctc
        glyph = self._glyphs.probs(line_patches(lc))
        logp = self._wc * np.log(ctc + 1e-4) + self._wg * np.log(glyph + 1e-4)
        logp -= logp.max(1, keepdims=True)
        p = np.exp(logp)
        return np.asarray(p / p.sum(1, keepdims=True))

    def ctc_probs(self, grey: np.ndarray, lc: LineCells) -> np.ndarray:
        """RapidOCR recogniser's CTC mass per cell, restricted to the MRZ alphabet."""
        r0, r1 = lc.rows
        grey = grey[r0:r1]
        pad = max(2, int(grey.shape[0] * 0.15))
        padded = cv2.copyMakeBorder(grey, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=255)
        bgr = cv2.cvtColor(padded, cv2.COLOR_GRAY2BGR)
        h, w = bgr.shape[:2]
        x = self._rec.resize_norm_img(bgr, max(_DEFAULT_RATIO, w / h))[None].astype(np.float32)
        probs = self._rec.session(x)[0][0]  # frames x dictionary (ORT sessions are thread-safe)
        table = np.stack([probs[:, cols].sum(1) for cols in self._columns], axis=1)
        scale = math.ceil(48 * w / h) / w
        frame_w = x.shape[3] / probs.shape[0]
        rows = []
        for a, b in lc.cells:
            t0 = int((a + pad) * scale / frame_w)
            t1 = max(t0 + 1, math.ceil((b + pad) * scale / frame_w))
            mass = table[t0:t1].sum(0)
            rows.append(mass / max(float(mass.sum()), 1e-9))
        return np.asarray(rows, np.float32)
