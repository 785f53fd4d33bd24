"""The passive-liveness model files and their integrity check: standard library only, so a process
that only needs to know whether KYC can start (the ingress's readiness) does not load OpenCV."""

from __future__ import annotations

import hashlib
from pathlib import Path

from kyc.errors import ModelsUnavailable

DETECTOR_FILES = ("deploy.prototxt", "Widerface-RetinaFace.caffemodel")
CLASSIFIERS = (("MiniFASNetV2.onnx", 2.7), ("MiniFASNetV1SE.onnx", 4.0))  # file, crop scale
MODEL_FILES = (*DETECTOR_FILES, *(name for name, _ in CLASSIFIERS))
CHECKSUMS = "SHA256SUMS"


def check_model_files(model_dir: Path) -> None:
    """Raise :class:`ModelsUnavailable` naming the first model file that is missing, unreadable or
    not the one ``model_dir/SHA256SUMS`` (``sha256sum`` format, required) lists."""
    if not model_dir.is_dir():
        raise ModelsUnavailable(
            f"KYC model folder {model_dir} does not exist: set VIGIL_KYC_MODEL_DIR to a folder with "
            f"{', '.join(MODEL_FILES)} and {CHECKSUMS}, or unset it to use the models in the package",
            path=model_dir,
        )
    for name in MODEL_FILES:
        if not (model_dir / name).is_file():
            raise ModelsUnavailable(f"KYC model file {model_dir / name} is missing", path=model_dir / name)
    sums_path = model_dir / CHECKSUMS
    listed: dict[str, str] = {}
    try:
        for line in sums_path.read_text().splitlines():
            if line.strip():
                digest, name = line.split(maxsplit=1)
                listed[name.strip().lstrip("*")] = digest.lower()
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelsUnavailable(
            f"cannot read the KYC model checksums {sums_path} ({exc}): write it with "
            f"`sha256sum {' '.join(MODEL_FILES)} > {CHECKSUMS}` in {model_dir}",
            path=sums_path,
        ) from exc
    for name in MODEL_FILES:
        path = model_dir / name
        if name not in listed:
            raise ModelsUnavailable(f"{sums_path} lists no checksum for {name}", path=sums_path)
        try:
            actual = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError as exc:
            raise ModelsUnavailable(f"cannot read KYC model file {path}: {exc}", path=path) from exc
        if actual != listed[name]:
            raise ModelsUnavailable(
                f"KYC model file {path} is corrupt or not the expected model: its SHA-256 is {actual}, "
                f"{sums_path} expects {listed[name]}",
                path=path,
            )
