"""Document reading (MRZ + visual zone) and validation (check digits, expiry, age, consistency, tamper).

Checks return reason codes, never raise. Dates: ``today`` is a parameter, never ``date.today()``.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass, field
from datetime import date

import cv2
import numpy as np

from kyc.config import KycConfig
from kyc.crosscheck import cross_check, visual_dates
from kyc.mrz import CHARSET, FILLER, LINE_LENGTHS, Mrz, normalise_length, parse
from kyc.ocr import Box, MrzLineReader, OcrEngine, TextLine, crop_box

_MRZ_LIKE = re.compile(r"^[A-Z0-9<]{20,48}$")
FAST_DETECT_SIDE = 640  # longer side (px) of the page for the MRZ fast path's text detection (MRZ
# characters stay ~12 px tall on a full-frame TD3 page; a page the fast path misses falls back to
# full OCR at 1280 px)


@dataclass(frozen=True)
class DocumentRead:
    """What was read from a document image. ``document_type``: passport, id_card, driving_licence
    or unknown; ``mrz`` is None when the document has none (or it was unreadable);
    ``visual_text`` is empty unless ``visual_zone_read``."""

    document_type: str
    mrz: Mrz | None
    visual_text: list[str]
    visual_fields: dict[str, str] = field(default_factory=dict)
    visual_zone_read: bool = False  # True when the visual-zone text was recognised


@dataclass(frozen=True)
class TamperSignals:
    """``ela_excess``: mean JPEG error level of the face-photo region minus the page's (grey levels;
    higher = photo recompressed differently, i.e. pasted); ``copy_move_pairs``: count of matched
    keypoint pairs between distinct areas of the same image (higher = cloned regions)."""

    ela_excess: float
    copy_move_pairs: int
    reasons: list[str]


def _mrz_text(line: TextLine) -> str:
    return line.text.upper().replace(" ", "").replace("«", "<<").replace("く", "<")


class DocumentReader:
    """Finds and reads the MRZ and visual-zone text of a BGR document image. Build once."""

    def __init__(self, ocr: OcrEngine, line_reader: MrzLineReader | None) -> None:
        self._ocr = ocr
        self._lines = line_reader

    def read(self, image: np.ndarray, *, today: date, visual_zone: bool = True) -> DocumentRead:
        """Read the MRZ (fast path: text detection + the MRZ line reader on the widest lines) and,
        when ``visual_zone`` is set, the other text lines found by the same detection (read box
        by box). A page whose MRZ the fast path misses is read whole."""
        scale = min(1.0, 1280 / max(image.shape[:2]))
        img = (
            cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else image
        )
        detect = getattr(self._ocr, "detect", None)
        fast = None
        if detect is not None and self._lines is not None:
            # MRZ lines are the widest, tallest-contrast text on the page: text detection at a
            # reduced scale finds them; the lines are then read from the full-resolution image.
            scalable = "max_side" in inspect.signature(detect).parameters
            boxes = detect(img, max_side=FAST_DETECT_SIDE) if scalable else detect(img)
            fast, mrz_boxes = self._fast_mrz(img, boxes, today=today)
            if fast is not None and fast.valid:
                if not visual_zone:
                    return DocumentRead(fast.document_type, fast, [], {})
                recognise = getattr(self._ocr, "recognise", None)
                if recognise is not None:
                    visual = [t.text for t in recognise(img, [b for b in boxes if b not in mrz_boxes])]
                    return DocumentRead(fast.document_type, fast, visual, visual_fields(visual), True)
        text = self._ocr.read(img)
        mrz_lines = sorted(
            (t for t in text if _MRZ_LIKE.match(_mrz_text(t)) and FILLER in _mrz_text(t)),
            key=lambda t: min(p[1] for p in t.box),
        )
        visual = [t.text for t in text if t not in mrz_lines]
        mrz = self._read_mrz(img, mrz_lines, today=today) if len(mrz_lines) >= 2 else None
        if fast is not None and (mrz is None or len(fast.failed_checks) < len(mrz.failed_checks)):
            mrz = fast  # the full read found no better MRZ than the fast path
        fields = visual_fields(visual)
        if mrz is not None:
            kind = mrz.document_type
        elif any(re.search(r"DRIV|LICEN[CS]E|PERMIS|FÜHRERSCHEIN", v.upper()) for v in visual):
            kind = "driving_licence"
        else:
            kind = "unknown"
        return DocumentRead(kind, mrz, visual, fields, True)

    def _fast_mrz(self, img: np.ndarray, boxes: list[Box], *, today: date) -> tuple[Mrz | None, list[Box]]:
        """Read the 2-3 lowest very wide text boxes as MRZ lines; also returns the boxes read."""
        assert self._lines is not None
        wide = []
        for b in boxes:
            pts = np.asarray(b)
            w, h = np.ptp(pts[:, 0]), np.ptp(pts[:, 1])
            if h > 0 and w / h > 12 and w > 0.5 * img.shape[1]:
                wide.append(b)
        wide.sort(key=lambda b: min(p[1] for p in b))
        lines = []
        read: dict[Box, list[dict[str, float]]] = {}
        for b in wide[-3:]:
            cands = read[b] = self._lines.read(crop_box(img, b))
            text = "".join(max(c, key=lambda k: c[k]) for c in cands)
            lines.append(TextLine(text, b, 1.0))
        mrz_lines = [t for t in lines if _MRZ_LIKE.match(t.text) and FILLER in t.text]
        if len(mrz_lines) < 2:
            return None, []
        return self._read_mrz(img, mrz_lines, today=today, known=read), [t.box for t in mrz_lines]

    def _read_mrz(
        self,
        img: np.ndarray,
        lines: list[TextLine],
        *,
        today: date,
        known: dict[Box, list[dict[str, float]]] | None = None,
    ) -> Mrz | None:
        """``known``: per-character candidates already read for some boxes (not read again)."""
        known = {} if known is None else known
        texts = [_mrz_text(t) for t in lines][-3:]
        boxes = [t.box for t in lines][-3:]
        for fmt, n in sorted(LINE_LENGTHS.items(), key=lambda kv: -kv[1]):
            count = 3 if fmt == "TD1" else 2
            if len(texts) < count:
                continue
            sel_t, sel_b = texts[-count:], boxes[-count:]
            if not all(abs(len(normalise_length(t)) - n) <= 2 for t in sel_t):
                continue
            cands = []
            for t, b in zip(sel_t, sel_b, strict=True):
                if b not in known:
                    known[b] = self._lines.read(crop_box(img, b)) if self._lines is not None else []
                per_char = known[b]
                if len(per_char) != n:
                    fixed = normalise_length(t)
                    per_char = [{c: 1.0} if c in CHARSET else {} for c in fixed] if len(fixed) == n else []
                if len(per_char) != n:
                    break
                cands.append(per_char)
            else:
                read = ["".join(max(c, key=lambda k: c[k]) if c else FILLER for c in row) for row in cands]
                return parse(read, today=today, candidates=cands)
        return None


def visual_fields(lines: list[str]) -> dict[str, str]:
    """Best-effort visual-zone fields: the printed dates (``dates``: ``;``-joined YY-MM-DD, as
    printed, century unknown) and the all-caps words (``words``)."""
    joined = " ".join(lines).upper()
    dates = [f"{y:02d}-{m:02d}-{d:02d}" for y, m, d in visual_dates(lines)]
    words = sorted(set(re.findall(r"\b[A-Z]{3,}\b", joined)))
    return {"dates": ";".join(dates), "words": " ".join(words)}


def age_on(birth: date, today: date) -> int:
    """Completed years between ``birth`` and ``today``."""
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


def validate(read: DocumentRead, *, today: date, config: KycConfig) -> list[str]:
    """Reason codes for a read document; empty = no problem found."""
    reasons: list[str] = []
    mrz = read.mrz
    if mrz is None:
        if read.document_type in ("passport", "id_card", "unknown"):
            reasons.append("document_no_mrz")
        return reasons
    reasons += [f"mrz_check_failed:{name}" for name in mrz.failed_checks]
    if mrz.guessed_positions:
        reasons.append("mrz_repaired_by_check_digit")
    if mrz.expiry_date is None:
        reasons.append("document_expiry_unreadable")
    elif mrz.expiry_date < today:
        reasons.append("document_expired")
    if mrz.birth_date is None:
        reasons.append("document_birth_date_unreadable")
    elif age_on(mrz.birth_date, today) < config.min_age_years:
        reasons.append("holder_under_age")
    if read.visual_zone_read:
        if not any(t.strip() for t in read.visual_text):
            reasons.append("document_visual_zone_unreadable")
        else:
            check = cross_check(mrz, read.visual_text)
            reasons += [f"mrz_visual_mismatch:{name}" for name in check.unconfirmed]
    return reasons


def error_level(image: np.ndarray, quality: int = 90) -> np.ndarray:
    """Per-pixel error level (grey levels, 0..255): |image - JPEG(image, quality)|, channel mean."""
    ok, enc = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        return np.zeros(image.shape[:2], np.float32)
    re_img = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    if re_img is None:
        return np.zeros(image.shape[:2], np.float32)
    return np.asarray(np.abs(image.astype(np.float32) - re_img.astype(np.float32)).mean(axis=2))


def tamper_signals(
    image: np.ndarray, face_box: tuple[int, int, int, int] | None, config: KycConfig
) -> TamperSignals:
    """Error-level analysis of the photo region vs the page, and ORB copy-move matching.

    ``face_box`` is (top, right, bottom, left) of the portrait in ``image`` pixels, or None.
    """
    reasons: list[str] = []
    ela = error_level(image)
    excess = 0.0
    if face_box is not None:
        t, r, b, left = face_box
        region = ela[max(t, 0) : b, max(left, 0) : r]
        if region.size:
            excess = float(region.mean() - ela.mean())
            if excess > config.ela_threshold:
                reasons.append("tamper_pasted_photo")
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    orb = cv2.ORB_create(nfeatures=1500)  # type: ignore[attr-defined]
    kps, desc = orb.detectAndCompute(grey, None)
    pairs = 0
    if desc is not None and len(kps) > 10:
        matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
        min_dist = 0.1 * min(grey.shape)
        shifts: dict[tuple[int, int], int] = {}
        for m in matcher.knnMatch(desc, desc, k=3):
            for cand in m[1:]:  # m[0] is the keypoint itself
                if cand.distance < 20 and cand.queryIdx < cand.trainIdx:
                    p, q = kps[cand.queryIdx].pt, kps[cand.trainIdx].pt
                    dx, dy = q[0] - p[0], q[1] - p[1]
                    if np.hypot(dx, dy) > min_dist:
                        key = (round(dx / 8), round(dy / 8))
                        shifts[key] = shifts.get(key, 0) + 1
        # A cloned region moves many keypoints by one shared offset; repeated printed glyphs
        # match at many different offsets, so only the largest shared-offset cluster counts.
        pairs = max(shifts.values(), default=0)
        if pairs >= 25:
            reasons.append("tamper_copy_move")
    return TamperSignals(excess, pairs, reasons)
