"""Face matching over every pair in faces/, outcomes for bad photos, passive liveness on real images."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from kyc.attacks import ATTACKS, pad_report
from kyc.face import FaceOutcome
from kyc.liveness import Challenge, check_active

from .conftest import kyc_data


@pytest.fixture(scope="module")
def encodings(engine):  # type: ignore[no-untyped-def]
    out = []
    for path in sorted(kyc_data("faces").glob("*/*.jp*g")):
        if path.parent.name == "_multi":
            continue
        a = engine.faces.analyze(cv2.imread(str(path)))
        assert a.outcome is FaceOutcome.OK, (path, a.outcome)
        out.append((path.parent.name, path.name, a.encoding))
    assert len(out) == 11, [n for _, n, _ in out]  # tests/data/kyc/README.md: 11 photos of 5 people
    return out


@pytest.mark.slow
def test_all_pairs(engine, encodings) -> None:  # type: ignore[no-untyped-def]
    for (p1, n1, e1), (p2, n2, e2) in itertools.combinations(encodings, 2):
        m = engine.faces.match(e1, e2)
        assert m.matched == (p1 == p2), (n1, n2, p1, p2, m.distance)


@pytest.mark.slow
def test_multi_face_images(engine) -> None:  # type: ignore[no-untyped-def]
    paths = sorted(kyc_data("faces", "_multi").glob("*.jpg"))
    assert len(paths) == 2, paths
    for path in paths:
        assert engine.faces.analyze(cv2.imread(str(path))).outcome is FaceOutcome.SEVERAL_FACES


def test_bad_photos_are_outcomes(engine) -> None:  # type: ignore[no-untyped-def]
    img = cv2.imread(str(kyc_data("liveness", "image_T1.jpg")))
    assert engine.faces.analyze(np.full((300, 300, 3), 127, np.uint8)).outcome is FaceOutcome.NO_FACE
    assert engine.faces.analyze(cv2.resize(img, (120, 160))).outcome is FaceOutcome.FACE_TOO_SMALL
    assert engine.faces.analyze(cv2.GaussianBlur(img, (0, 0), 6)).outcome in (
        FaceOutcome.TOO_BLURRED,
        FaceOutcome.NO_FACE,
    )


@pytest.mark.parametrize(
    ("name", "live"), [("image_T1.jpg", True), ("image_F1.jpg", False), ("image_F2.jpg", False)]
)
def test_passive_liveness(engine, name: str, live: bool) -> None:  # type: ignore[no-untyped-def]
    img = cv2.imread(str(kyc_data("liveness", name)))
    r = engine.liveness.check(img, engine.faces.analyze(img))
    assert r.live is live, r


def test_repeated_still_fails_active_challenge(engine) -> None:  # type: ignore[no-untyped-def]
    img = cv2.imread(str(kyc_data("liveness", "image_T1.jpg")))
    frames = [engine.faces.analyze(img, landmarks=True)] * 4
    for ch in Challenge:
        assert not check_active(frames, ch, engine.config).passed


@pytest.mark.slow
def test_pad_error_rates(engine) -> None:  # type: ignore[no-untyped-def]
    paths = [p for p in sorted(kyc_data("faces").glob("*/*.jp*g")) if p.parent.name != "_multi"]
    paths.append(kyc_data("liveness", "image_T1.jpg"))
    bona, attacks = [], {k: [] for k in ATTACKS}
    for i, p in enumerate(paths):
        img = cv2.imread(str(p))
        s = min(1.0, 800 / max(img.shape[:2]))
        img = cv2.resize(img, None, fx=s, fy=s)
        bona.append(engine.liveness.check(img, engine.faces.analyze(img)).live)
        for kind, make in ATTACKS.items():
            x = make(img, i)
            attacks[kind].append(engine.liveness.check(x, engine.faces.analyze(x)).live)
    report = pad_report(bona, attacks)
    print("\n" + report.format())
    assert all(v <= 0.1 for v in report.apcer.values())
    assert report.bpcer <= 0.25
