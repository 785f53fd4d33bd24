"""Unusable bytes raise InvalidImage with a reason, never anything else."""

from __future__ import annotations

from datetime import date

import cv2
import numpy as np
import pytest

from kyc.config import KycConfig
from kyc.errors import InvalidImage
from kyc.imageio import decode_image

from .conftest import kyc_data

CFG = KycConfig(max_image_bytes=2_000_000, max_image_pixels=4_000_000)


def _png(h: int, w: int) -> bytes:
    return cv2.imencode(".png", np.zeros((h, w, 3), np.uint8))[1].tobytes()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello world",
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 50,
        b"\xff\xd8\xff" + b"\x13" * 100,
        b"%PDF-1.4 ...",
        _png(8, 8),
    ],
)
def test_garbage_raises_invalid_image(data: bytes) -> None:
    with pytest.raises(InvalidImage) as exc:
        decode_image(data, CFG)
    assert exc.value.reason


def test_too_many_bytes_and_pixels() -> None:
    with pytest.raises(InvalidImage, match="bytes"):
        decode_image(b"\xff\xd8\xff" + b"\x00" * 2_000_001, CFG)
    with pytest.raises(InvalidImage, match="pixels"):
        decode_image(_png(2100, 2100), CFG)


def test_truncated_jpeg() -> None:
    data = kyc_data("liveness", "image_T1.jpg").read_bytes()[:200]
    with pytest.raises(InvalidImage):
        decode_image(data, CFG)


def test_pipeline_raises_only_invalid_image(engine) -> None:  # type: ignore[no-untyped-def]
    good = kyc_data("liveness", "image_T1.jpg").read_bytes()
    for frames, doc in [([], good), ([b"junk"], good), ([good], b""), ([good] * 20, good)]:
        with pytest.raises(InvalidImage):
            engine.verify(frames, doc, today=date(2010, 1, 1))
