"""Decode untrusted image bytes into BGR uint8 arrays, or raise ``InvalidImage``."""

from __future__ import annotations

import io
import warnings

import cv2
import numpy as np

from kyc.config import KycConfig
from kyc.errors import InvalidImage

_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"BM", b"RIFF", b"GIF8")


def decode_image(data: bytes, config: KycConfig, *, field: str = "image") -> np.ndarray:
    """BGR uint8 image (H, W, 3) from JPEG/PNG/TIFF/BMP/WebP bytes; raises ``InvalidImage``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise InvalidImage("expected bytes", field=field)
    if len(data) == 0:
        raise InvalidImage("empty upload", field=field)
    if len(data) > config.max_image_bytes:
        raise InvalidImage(f"{len(data)} bytes exceeds the limit of {config.max_image_bytes}", field=field)
    head = bytes(data[:16])
    if not any(head.startswith(m) for m in _MAGIC):
        raise InvalidImage("not a supported image format", field=field)
    buf = np.frombuffer(data, dtype=np.uint8)
    # Check the declared size before decoding so a decompression bomb never allocates.
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # we apply our own limit
            with Image.open(io.BytesIO(bytes(data))) as probe:
                w, h = probe.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidImage("corrupt or unreadable image", field=field) from exc
    if w * h > config.max_image_pixels:
        raise InvalidImage(f"{w}x{h} pixels exceeds the limit of {config.max_image_pixels}", field=field)
    if w < 16 or h < 16:
        raise InvalidImage(f"{w}x{h} pixels is too small", field=field)
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise InvalidImage("corrupt or unreadable image", field=field)
    return image
