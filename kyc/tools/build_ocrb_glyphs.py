"""Train the OCR-B glyph classifier shipped as ``kyc/assets/ocrb_glyphs.npz``. Run once, by hand.

Needs the OCR-B font (Debian ``fonts-ocr-b``: ``apt-get install fonts-ocr-b``) and torch; neither is
needed at run time. Training data are random MRZ-like lines rendered from the font (no real
document, no test crop) with augmentation: size, pitch and condensing, stroke thickness, small
rotation and shear, blur, noise, binarisation, JPEG. Each rendered line goes through the very
segmentation and normalisation used at inference (``kyc.glyphs``), so the classifier sees the same
patches, neighbour slivers included. Usage::

    .venv/bin/python -m kyc.tools.build_ocrb_glyphs [--lines 6000] [--epochs 12] [--seed 0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from kyc.glyphs import WEIGHTS, line_patches, segment_line
from kyc.mrz import CHARSET, DIGITS, FILLER, LETTERS

FONT_DIR = Path("/usr/share/fonts/opentype/ocr-b")
# Regular and Sharp are the OCR-B shapes; Oblique adds a little slant variety.
FONTS = [("OCRB.otf", 0.55), ("OCRBS.otf", 0.35), ("OCRBL.otf", 0.10)]


def _random_text(rng: np.random.Generator) -> str:
    n = int(rng.integers(6, 16))
    out: list[str] = []
    while len(out) < n:
        r = rng.random()
        if r < 0.2:
            out += [FILLER] * int(rng.integers(1, 6))
        elif r < 0.55:
            out.append(str(rng.choice(list(DIGITS))))
        else:
            out.append(str(rng.choice(list(LETTERS))))
    return "".join(out[:n])


def render_line(text: str, rng: np.random.Generator, fonts: dict[str, ImageFont.FreeTypeFont]) -> np.ndarray:
    """A grey (uint8) augmented rendering of ``text`` as one MRZ line."""
    names = [n for n, _ in FONTS]
    name = str(rng.choice(names, p=[w for _, w in FONTS]))
    font = fonts[name]
    size = font.size
    adv = font.getlength("0")
    pitch = adv * rng.uniform(0.95, 1.6)
    stroke = int(rng.choice([0, 0, 0, 1, 2]))
    w = int(pitch * len(text) + size)
    h = int(size * 1.6)
    img = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(img)
    x0 = size * 0.3
    base = size * 1.15
    for k, ch in enumerate(text):
        jitter = rng.normal(0, 0.02 * pitch)
        draw.text(
            (x0 + k * pitch + jitter, base),
            ch,
            font=font,
            fill=0,
            anchor="ls",
            stroke_width=stroke,
            stroke_fill=0,
        )
    a = np.asarray(img)
    if rng.random() < 0.3:  # thinner strokes
        k = int(rng.integers(2, 5))
        a = cv2.dilate(a, np.ones((k, k), np.uint8))
    # Geometry: condensing, slight rotation and shear.
    fx = rng.uniform(0.65, 1.25)
    angle = rng.normal(0, 0.6)
    shear = rng.normal(0, 0.04)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    m[0, 1] += shear
    a = cv2.warpAffine(a, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=255)
    # Down to a realistic band height (cap height ~ 0.72 em): 14..55 px.
    target_cap = rng.uniform(14, 55)
    s = target_cap / (0.72 * size)
    a = cv2.resize(a, None, fx=s * fx, fy=s, interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        a = cv2.GaussianBlur(a, (0, 0), rng.uniform(0.3, 1.2))
    a = a.astype(np.float32)
    a = a * rng.uniform(0.6, 1.0) + rng.uniform(0, 60)  # contrast / background
    if rng.random() < 0.6:
        a += rng.normal(0, rng.uniform(2, 18), a.shape)
    a = np.clip(a, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        ok, enc = cv2.imencode(".jpg", a, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(30, 90))])
        dec = cv2.imdecode(enc, cv2.IMREAD_GRAYSCALE) if ok else None
        if dec is not None:
            a = dec
    if rng.random() < 0.6:  # many MRZ crops are binarised scans
        _, a = cv2.threshold(a, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        if rng.random() < 0.3:  # ragged edges of low-resolution binarisation
            k = int(rng.integers(2, 3))
            op = cv2.erode if rng.random() < 0.5 else cv2.dilate
            a = op(a, np.ones((k, k), np.uint8))
    # A tight crop like the line detector's, with a small random margin.
    ys, xs = np.nonzero(a < 128)
    if ys.size == 0:
        return a
    mx, my = int(rng.integers(0, 6)), int(rng.integers(0, 4))
    return a[max(0, ys.min() - my) : ys.max() + 1 + my, max(0, xs.min() - mx) : xs.max() + 1 + mx]


def make_dataset(n_lines: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    fonts = {n: ImageFont.truetype(str(FONT_DIR / n), 64) for n, _ in FONTS}
    xs, ys = [], []
    skipped = 0
    for _ in range(n_lines):
        text = _random_text(rng)
        lc = segment_line(render_line(text, rng, fonts))
        if lc is None or len(lc.cells) != len(text):
            skipped += 1
            continue
        xs.append(line_patches(lc))
        ys += [CHARSET.index(c) for c in text]
    print(f"{n_lines - skipped} lines used, {skipped} skipped (segmentation disagreed with the text)")
    return np.concatenate(xs).astype(np.float32), np.asarray(ys, np.int64)


def train(x: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> dict[str, np.ndarray]:
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 4 * 3, 128), nn.ReLU(), nn.Dropout(0.3),
        nn.Linear(128, len(CHARSET)),
    )  # fmt: skip
    n_val = len(x) // 10
    perm = np.random.default_rng(seed).permutation(len(x))
    val, tr = perm[:n_val], perm[n_val:]
    xt, yt = torch.from_numpy(x[:, None]), torch.from_numpy(y)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * (len(tr) // 256 + 1))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.05)
    for ep in range(epochs):
        net.train()
        order = torch.from_numpy(np.random.default_rng(seed + ep).permutation(tr))
        for i in range(0, len(order), 256):
            idx = order[i : i + 256]
            xb = xt[idx]
            # on-the-fly shift augmentation of +-1 pixel
            dx, dy = np.random.default_rng(seed + ep * 1000 + i).integers(-1, 2, 2)
            xb = torch.roll(xb, shifts=(int(dy), int(dx)), dims=(2, 3))
            opt.zero_grad()
            loss = loss_fn(net(xb), yt[idx])
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            acc = (net(xt[val]).argmax(1) == yt[val]).float().mean().item()
        print(f"epoch {ep + 1}/{epochs}: loss {loss.item():.3f}, held-out rendered accuracy {acc:.4f}")
    layers = [m for m in net if isinstance(m, nn.Conv2d | nn.Linear)]
    names = ["c1", "c2", "c3", "f1", "f2"]
    out: dict[str, np.ndarray] = {}
    for name, layer in zip(names, layers, strict=True):
        out[name + "w"] = layer.weight.detach().numpy()
        assert layer.bias is not None
        out[name + "b"] = layer.bias.detach().numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--lines", type=int, default=6000)
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=WEIGHTS)
    args = ap.parse_args()
    t = time.perf_counter()
    x, y = make_dataset(args.lines, args.seed)
    print(f"{len(x)} glyph patches rendered in {time.perf_counter() - t:.0f} s")
    params = train(x, y, args.epochs, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {k: v.astype(np.float16) for k, v in params.items()}
    arrays["charset"] = np.array(CHARSET)
    np.savez_compressed(args.out, **arrays)  # type: ignore[arg-type]
    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
