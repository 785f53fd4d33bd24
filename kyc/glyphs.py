"""OCR-B glyph segmentation and classification for single MRZ text lines.

MRZ text is OCR-B, one line of 30/36/44 characters. A line crop is binarised, its text band (the
rows holding the cap height) is found, the line is cut into character cells (ink column runs; runs
wider than a character are split, slivers are merged) and each cell is normalised to a fixed
``GLYPH_H`` x ``GLYPH_W`` patch that a small CNN classifies into the 37 MRZ characters.

The CNN weights (``kyc/assets/ocrb_glyphs.npz``) were trained only on glyphs rendered from the OCR-B
font with augmentation, by ``kyc/tools/build_ocrb_glyphs.py``; inference is plain NumPy.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from kyc.mrz import CHARSET

GLYPH_H, GLYPH_W = 32, 24
WEIGHTS = Path(__file__).resolve().parent / "assets" / "ocrb_glyphs.npz"


@dataclass(frozen=True)
class LineCells:
    """A segmented line: ``ink`` is the text band (rows r0:r1 of the crop) as float ink 0..1,
    ``cells`` the column ranges of the characters within it, left to right."""

    ink: np.ndarray
    rows: tuple[int, int]
    cells: list[tuple[int, int]]


def ink_image(grey: np.ndarray) -> np.ndarray:
    """Float ink map 0..1 (1 = darkest) from a grey or BGR line crop, contrast-stretched."""
    if grey.ndim == 3:
        grey = cv2.cvtColor(grey, cv2.COLOR_BGR2GRAY)
    g = grey.astype(np.float32)
    lo, hi = np.percentile(g, 1), np.percentile(g, 99)
    if hi - lo < 1:
        return np.zeros_like(g)
    return np.clip((hi - g) / (hi - lo), 0, 1)


def segment_line(grey: np.ndarray) -> LineCells | None:
    """Text band and character cells of a single-line crop (dark text on a light background)."""
    if grey.ndim == 3:
        grey = cv2.cvtColor(grey, cv2.COLOR_BGR2GRAY)
    if grey.size == 0:
        return None
    thr, _ = cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    binary = grey <= thr
    rp = binary.sum(1)
    if rp.max() == 0:
        return None
    rows = np.flatnonzero(rp > 0.08 * rp.max())
    r0, r1 = int(rows[0]), int(rows[-1]) + 1
    # Grow the band to the rows with any ink adjacent to it (tops of round glyphs).
    while r0 > 0 and rp[r0 - 1] > 0.02 * rp.max():
        r0 -= 1
    while r1 < len(rp) and rp[r1] > 0.02 * rp.max():
        r1 += 1
    band = binary[r0:r1]
    cells = character_cells(band)
    if not cells:
        return None
    return LineCells(ink_image(grey)[r0:r1], (r0, r1), cells)


def _runs(on: np.ndarray) -> list[tuple[int, int]]:
    idx = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(idx[::2], idx[1::2], strict=True)]


def character_cells(band: np.ndarray) -> list[tuple[int, int]]:
    """Column ranges of the characters of a binary text band (True = ink).

    Ink column runs are the characters; a run much narrower than a character that sits close to a
    neighbour is merged into it (broken strokes), and a run as wide as k characters is split evenly.
    """
    h = band.shape[0]
    runs = _runs(band.sum(0) > 0)
    if not runs:
        return []
    # Drop specks: tiny runs with little ink (dust, the tail of a cut-off neighbour line).
    runs = [(a, b) for a, b in runs if band[:, a:b].sum() >= 0.01 * h * h]
    if len(runs) < 2:
        return runs
    widths = np.array([b - a for a, b in runs], float)
    typical = float(np.median(widths[widths >= 0.25 * h])) if np.any(widths >= 0.25 * h) else float(h) * 0.6
    starts = np.array([a for a, _ in runs], float)
    pitch = float(np.median(np.diff(starts)))
    pitch = min(max(pitch, typical), 1.6 * typical)
    # Merge slivers into the closer neighbour when the result is still no wider than a character.
    merged = True
    while merged and len(runs) > 1:
        merged = False
        for i, (a, b) in enumerate(runs):
            if b - a >= 0.45 * typical:
                continue
            gaps = []
            if i > 0:
                gaps.append((a - runs[i - 1][1], i - 1))
            if i + 1 < len(runs):
                gaps.append((runs[i + 1][0] - b, i + 1))
            gap, j = min(gaps)
            lo, hi = min(a, runs[j][0]), max(b, runs[j][1])
            if gap <= 0.25 * pitch and hi - lo <= 1.15 * typical:
                runs[min(i, j)] = (lo, hi)
                del runs[max(i, j)]
                merged = True
                break
    out: list[tuple[int, int]] = []
    for a, b in runs:
        k = round((b - a + (pitch - typical)) / pitch) if b - a > 1.35 * typical else 1
        if k >= 2:  # touching characters
            step = (b - a) / k
            out += [(int(a + t * step), int(a + (t + 1) * step)) for t in range(k)]
        else:
            out.append((a, b))
    return out


def glyph_patch(ink: np.ndarray, a: int, b: int) -> np.ndarray:
    """``GLYPH_H`` x ``GLYPH_W`` float patch of the cell ``a:b`` of a text band, ink outside the
    cell masked out, centred in a box of the band's height x 0.75 of it (aspect kept)."""
    h = ink.shape[0]
    cell = ink[:, a:b]
    box_w = max(b - a, round(0.75 * h))
    left = (box_w - (b - a)) // 2
    canvas = np.zeros((h, box_w), np.float32)
    canvas[:, left : left + (b - a)] = cell
    # Scale the longer relative side to fit, keeping the aspect ratio.
    scale = min(GLYPH_H / h, GLYPH_W / box_w)
    nh, nw = max(1, round(h * scale)), max(1, round(box_w * scale))
    small = cv2.resize(canvas, (nw, nh), interpolation=cv2.INTER_AREA)
    out = np.zeros((GLYPH_H, GLYPH_W), np.float32)
    y, x = (GLYPH_H - nh) // 2, (GLYPH_W - nw) // 2
    out[y : y + nh, x : x + nw] = small
    return out


def line_patches(lc: LineCells) -> np.ndarray:
    return (
        np.stack([glyph_patch(lc.ink, a, b) for a, b in lc.cells])
        if lc.cells
        else np.zeros((0, GLYPH_H, GLYPH_W))
    )


# ---------------------------------------------------------------- the CNN (NumPy inference)


def _conv3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3x3 'same' convolution as one matrix product: x (N, H, W, C), w (O, C, 3, 3) -> (N, H, W, O)."""
    n, h, wd, c = x.shape
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = np.concatenate([xp[:, i : i + h, j : j + wd, :] for i in range(3) for j in range(3)], axis=3)
    kernel = w.transpose(2, 3, 1, 0).reshape(9 * c, -1)  # (i, j, c) rows, like ``cols``
    return np.asarray(cols.reshape(-1, 9 * c) @ kernel + b).reshape(n, h, wd, -1)


def _pool2(x: np.ndarray) -> np.ndarray:
    n, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2]
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class GlyphClassifier:
    """Probabilities over ``CHARSET`` for glyph patches. Loads ``ocrb_glyphs.npz`` once."""

    def __init__(self, path: Path = WEIGHTS) -> None:
        with np.load(path) as data:
            self._p = {k: data[k].astype(np.float32) for k in data.files if k != "charset"}
            charset = str(data["charset"])
        if charset != CHARSET:
            raise ValueError(f"{path}: charset {charset!r} does not match the MRZ charset")
        self._lock = threading.Lock()

    def logits(self, patches: np.ndarray) -> np.ndarray:
        p = self._p
        x = patches.astype(np.float32)[..., None]  # NHWC
        x = _pool2(np.maximum(_conv3(x, p["c1w"], p["c1b"]), 0))
        x = _pool2(np.maximum(_conv3(x, p["c2w"], p["c2b"]), 0))
        x = _pool2(np.maximum(_conv3(x, p["c3w"], p["c3b"]), 0))
        x = x.transpose(0, 3, 1, 2).reshape(len(x), -1)  # torch's (C, H, W) flattening order
        x = np.maximum(x @ p["f1w"].T + p["f1b"], 0)
        return np.asarray(x @ p["f2w"].T + p["f2b"])

    def probs(self, patches: np.ndarray) -> np.ndarray:
        if len(patches) == 0:
            return np.zeros((0, len(CHARSET)), np.float32)
        z = self.logits(patches)
        z = z - z.max(1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(1, keepdims=True))


_DEFAULT: GlyphClassifier | None = None
_DEFAULT_LOCK = threading.Lock()


def default_classifier() -> GlyphClassifier | None:
    """The shipped classifier, loaded once per process; None if the weights file is missing."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None and WEIGHTS.exists():
            _DEFAULT = GlyphClassifier(WEIGHTS)
        return _DEFAULT
