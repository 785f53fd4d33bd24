"""KYC benchmark: latency of one full submission and ISO/IEC 30107-3 PAD error rates.

Usage: ``.venv/bin/python benchmarks/bench_kyc.py [--runs 20] [--frames 3]``. Prints p50/p95 of
``KycEngine.verify`` (selfie frames + the TD3 specimen passport), with the visual-zone cross-check
(the default) and MRZ-only in the same run, and the APCER/BPCER table over
the test faces (``tests/data/kyc``) and the synthetic attacks, and saves JSON to ``benchmarks/results/kyc-<ts>.json``
and ``benchmarks/results/kyc-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
import warnings
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import cv2

ROOT = Path(__file__).resolve().parents[1]
KYC_DATA = ROOT / "tests" / "data" / "kyc"  # the KYC test images (origins and licences: its README.md)


def _pad(engine: object) -> dict[str, object]:
    from kyc.attacks import ATTACKS, pad_report

    paths = [p for p in sorted((KYC_DATA / "faces").glob("*/*.jp*g")) if p.parent.name != "_multi"]
    paths.append(KYC_DATA / "liveness" / "image_T1.jpg")
    bona: list[bool] = []
    attacks: dict[str, list[bool]] = {k: [] for k in ATTACKS}
    for i, p in enumerate(paths):
        img = cv2.imread(str(p))
        if img is None:
            raise SystemExit(f"cannot read image {p}")
        s = min(1.0, 800 / max(img.shape[:2]))
        img = cv2.resize(img, None, fx=s, fy=s)
        check = engine.liveness.check  # type: ignore[attr-defined]
        faces = engine.faces  # type: ignore[attr-defined]
        bona.append(check(img, faces.analyze(img)).live)
        for kind, make in ATTACKS.items():
            x = make(img, i)
            attacks[kind].append(check(x, faces.analyze(x)).live)
    report = pad_report(bona, attacks)
    print(report.format())
    return {
        "apcer": report.apcer,
        "attack_counts": report.attack_counts,
        "bpcer": report.bpcer,
        "bona_fide_count": report.bona_fide_count,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--frames", type=int, default=3)
    args = ap.parse_args()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from kyc.config import KycConfig
        from kyc.pipeline import KycEngine

    t0 = time.perf_counter()
    engine = KycEngine(KycConfig())  # the models shipped in the package, or $VIGIL_KYC_MODEL_DIR
    load_s = time.perf_counter() - t0
    selfie = (KYC_DATA / "liveness" / "image_T1.jpg").read_bytes()
    doc = (KYC_DATA / "mrz" / "passport-td3.jpg").read_bytes()
    frames = [selfie] * args.frames
    engine.verify(frames, doc, today=date(2010, 1, 1))  # warm-up
    # Same run, same engine: with the visual-zone cross-check (the default) and MRZ-only, interleaved.
    modes = {"viz": engine.config, "mrz_only": replace(engine.config, read_visual_zone=False)}
    lat: dict[str, list[float]] = {m: [] for m in modes}
    stages: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for _ in range(args.runs):
        for mode, cfg in modes.items():
            engine.config = cfg
            t = time.perf_counter()
            r = engine.verify(frames, doc, today=date(2010, 1, 1))
            lat[mode].append(time.perf_counter() - t)
            stages[mode].append(r.timings_ms)
            if mode == "viz":
                last = r
    engine.config = modes["viz"]
    summary: dict[str, dict[str, Any]] = {}
    for mode in modes:
        xs = sorted(lat[mode])
        summary[mode] = {
            "p50_s": statistics.median(xs),
            "p95_s": xs[min(len(xs) - 1, round(0.95 * (len(xs) - 1)))],
            "stage_p50_ms": {k: statistics.median(s[k] for s in stages[mode]) for k in stages[mode][0]},
        }
        print(
            f"KYC submission ({args.frames} frames + TD3 passport, {mode}), {args.runs} runs on "
            f"{os.cpu_count()} CPUs: p50 {summary[mode]['p50_s']:.3f} s, p95 {summary[mode]['p95_s']:.3f} s"
        )
        print(
            "  stage p50 (ms): " + ", ".join(f"{k} {v:.0f}" for k, v in summary[mode]["stage_p50_ms"].items())
        )
    print(f"model load {load_s:.1f} s; last result: {last.status} {last.risk_level} {last.reason_codes}")
    pad = _pad(engine)
    out = {
        "timestamp": datetime.now(UTC).isoformat(),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_at_start": load_at_start,
        "runs": args.runs,
        "frames": args.frames,
        "p50_s": summary["viz"]["p50_s"],
        "p95_s": summary["viz"]["p95_s"],
        "load_s": load_s,
        "stage_p50_ms": summary["viz"]["stage_p50_ms"],
        "mrz_only": summary["mrz_only"],
        "pad": pad,
    }
    res = ROOT / "benchmarks" / "results"
    res.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    for name in (f"kyc-{stamp}.json", "kyc-latest.json"):
        (res / name).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
