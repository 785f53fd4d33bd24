"""The OCR-B glyph classifier: shipped weights, segmentation of synthetic lines, NumPy inference."""

from __future__ import annotations

import numpy as np
import pytest

from kyc.glyphs import GLYPH_H, GLYPH_W, WEIGHTS, GlyphClassifier, character_cells, glyph_patch, segment_line
from kyc.mrz import CHARSET


def test_weights_are_shipped_small_and_licensed() -> None:
    assert WEIGHTS.exists(), "run kyc/tools/build_ocrb_glyphs.py"
    assert WEIGHTS.stat().st_size < 1_000_000
    assert (WEIGHTS.parent / "OCRB-LICENSE.txt").exists()


def test_classifier_outputs_probabilities() -> None:
    clf = GlyphClassifier()
    rng = np.random.default_rng(0)
    p = clf.probs(rng.random((5, GLYPH_H, GLYPH_W)).astype(np.float32))
    assert p.shape == (5, len(CHARSET))
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-5)
    assert clf.probs(np.zeros((0, GLYPH_H, GLYPH_W))).shape == (0, len(CHARSET))


def _blocks(widths: list[int], gap: int, h: int = 30) -> np.ndarray:
    """A binary band with one ink block per width, separated by ``gap`` columns."""
    cols = []
    for w in widths:
        cols += [np.ones((h, w), bool), np.zeros((h, gap), bool)]
    return np.hstack(cols[:-1])


def test_cells_split_touching_and_merge_slivers() -> None:
    assert len(character_cells(_blocks([20] * 10, 8))) == 10
    # Two characters touching (one run 2 pitches wide) are split.
    assert len(character_cells(_blocks([20, 20, 48, 20, 20, 20], 8))) == 7
    # A broken character (a sliver next to a narrow part) is merged.
    band = _blocks([20, 20, 12, 20, 20], 8)
    band[:, 48 + 12 : 48 + 14] = False
    band[:, 48 + 14 : 48 + 16] = True
    band[:, 48 + 16 : 48 + 17] = False
    assert len(character_cells(band)) == 5


def test_segment_line_and_patch_shape() -> None:
    grey = np.full((50, 300), 255, np.uint8)
    for k in range(8):
        grey[10:40, 10 + k * 35 : 32 + k * 35] = 0
    lc = segment_line(grey)
    assert lc is not None and len(lc.cells) == 8
    assert lc.rows == (10, 40)
    patch = glyph_patch(lc.ink, *lc.cells[0])
    assert patch.shape == (GLYPH_H, GLYPH_W) and patch.max() > 0.9
    assert segment_line(np.full((20, 20), 255, np.uint8)) is None


def test_mismatched_charset_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with np.load(WEIGHTS) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["charset"] = np.array("ABC")
    bad = tmp_path / "bad.npz"
    np.savez(bad, **arrays)
    with pytest.raises(ValueError, match="charset"):
        GlyphClassifier(bad)
