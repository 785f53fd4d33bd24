"""Synthetic presentation attacks and ISO/IEC 30107-3 error rates.

The generators simulate re-capturing a bona fide face photo from a screen (pixel-grid moire, blue
cast, glare, bezel) or from paper (halftone, warm/faded colour, blur, paper border). They are
deterministic given ``seed``. APCER is computed per attack type (share of attack presentations
accepted as bona fide); BPCER is the share of bona fide presentations rejected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import cv2
import numpy as np


def _moire(img: np.ndarray, rng: np.random.Generator, period: float) -> np.ndarray:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, np.pi)
    wave = np.sin(2 * np.pi * (xx * np.cos(ang) + yy * np.sin(ang)) / period)
    return np.clip(img.astype(np.float32) * (1 + 0.18 * wave[..., None]), 0, 255).astype(np.uint8)


def screen_replay(img: np.ndarray, seed: int = 0) -> np.ndarray:
    """The face shown on a phone/monitor and photographed: moire, blue cast, glare spot, bezel."""
    rng = np.random.default_rng(seed)
    out = _moire(img, rng, period=rng.uniform(2.5, 4.0)).astype(np.float32)
    out[..., 0] *= 1.25  # screens render skin bluer (BGR)
    out[..., 2] *= 0.85
    h, w = img.shape[:2]
    cy, cx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
    yy, xx = np.mgrid[0:h, 0:w]
    out += 200 * np.exp(-(((yy - cy) / (0.15 * h)) ** 2 + ((xx - cx) / (0.2 * w)) ** 2))[..., None]
    out = np.clip(out, 0, 255).astype(np.uint8)
    b = int(0.08 * min(h, w))
    return cv2.copyMakeBorder(out, b, b, b, b, cv2.BORDER_CONSTANT, value=(15, 15, 15))


def print_attack(img: np.ndarray, seed: int = 0) -> np.ndarray:
    """The face printed on paper and photographed: halftone, faded warm colour, blur, white border."""
    rng = np.random.default_rng(seed)
    out = _moire(img, rng, period=rng.uniform(3.0, 5.0)).astype(np.float32)
    out = out * 0.7 + 60
    out[..., 0] *= 0.8  # paper and ink shift colours to yellow
    blurred = cv2.GaussianBlur(np.clip(out, 0, 255).astype(np.uint8), (0, 0), rng.uniform(1.5, 2.5))
    h, w = img.shape[:2]
    b = int(0.1 * min(h, w))
    return cv2.copyMakeBorder(blurred, b, b, b, b, cv2.BORDER_CONSTANT, value=(235, 240, 245))


def blurred_recapture(img: np.ndarray, seed: int = 0) -> np.ndarray:
    """A low-quality re-capture: defocus blur and mild glare only (the hardest to detect)."""
    rng = np.random.default_rng(seed)
    out = cv2.GaussianBlur(img, (0, 0), rng.uniform(3.0, 4.5)).astype(np.float32) * 1.15
    return np.clip(out, 0, 255).astype(np.uint8)


ATTACKS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "screen_replay": screen_replay,
    "print": print_attack,
    "blurred_recapture": blurred_recapture,
}


@dataclass(frozen=True)
class PadReport:
    """ISO/IEC 30107-3 figures: ``apcer`` per attack type and ``bpcer``, as fractions 0..1 (lower
    = better), with the number of presentations behind each."""

    apcer: dict[str, float]
    attack_counts: dict[str, int]
    bpcer: float
    bona_fide_count: int

    def format(self) -> str:
        rows = ["attack type            APCER    n"]
        rows += [f"{k:<22} {v:6.1%} {self.attack_counts[k]:4d}" for k, v in self.apcer.items()]
        rows.append(f"{'BPCER (bona fide)':<22} {self.bpcer:6.1%} {self.bona_fide_count:4d}")
        return "\n".join(rows)


def pad_report(
    bona_fide_accepted: Iterable[bool], attacks_accepted: Mapping[str, Iterable[bool]]
) -> PadReport:
    """APCER per attack type = accepted attacks / attacks; BPCER = rejected bona fide / bona fide."""
    bf = list(bona_fide_accepted)
    apcer, counts = {}, {}
    for kind, acc in attacks_accepted.items():
        a = list(acc)
        counts[kind] = len(a)
        apcer[kind] = sum(a) / len(a) if a else float("nan")
    bpcer = sum(not x for x in bf) / len(bf) if bf else float("nan")
    return PadReport(apcer, counts, bpcer, len(bf))
