"""KYC fails closed: it runs with the models shipped in the package, and without usable models the
engine does not start (a clear error naming the file) instead of passing faces it never checked."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import cv2
import numpy as np
import pytest

from kyc.config import PACKAGED_MODEL_DIR, KycConfig, default_model_dir
from kyc.errors import ModelsUnavailable
from kyc.liveness import MiniFasNet, PassiveLiveness
from kyc.models import CHECKSUMS, MODEL_FILES
from kyc.pipeline import KycEngine

from .conftest import kyc_data

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A private copy of the packaged models, free to break."""
    return Path(shutil.copytree(PACKAGED_MODEL_DIR, tmp_path / "models"))


def test_the_models_ship_in_the_package() -> None:
    for name in (*MODEL_FILES, CHECKSUMS, "README.md", "LICENSE-Apache-2.0"):
        assert (PACKAGED_MODEL_DIR / name).is_file(), name
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "assets/models/*" in package_data["kyc"]


def test_default_model_dir_is_the_package_unless_overridden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VIGIL_KYC_MODEL_DIR", raising=False)
    assert default_model_dir() == PACKAGED_MODEL_DIR
    monkeypatch.setenv("VIGIL_KYC_MODEL_DIR", "/opt/kyc-models")
    assert default_model_dir() == Path("/opt/kyc-models")


def test_a_default_config_runs_the_model_and_rejects_an_attack(monkeypatch: pytest.MonkeyPatch) -> None:
    # Was: no model folder configured -> "forensics-only" liveness (model score counted as 1.0).
    monkeypatch.delenv("VIGIL_KYC_MODEL_DIR", raising=False)
    liveness = PassiveLiveness(KycConfig())
    image = cv2.imread(str(kyc_data("liveness", "image_F1.jpg")))
    assert image is not None
    attack = liveness.check(image)
    assert attack.model_score < 0.5 and not attack.live
    assert "liveness_model_spoof" in attack.reasons


def test_a_removed_model_folder_stops_the_engine(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.rmtree(model_dir)
    with pytest.raises(ModelsUnavailable, match="does not exist") as exc:
        KycEngine(KycConfig(model_dir=model_dir))
    assert exc.value.path == model_dir and str(model_dir) in str(exc.value)
    # The same through the environment, as a deployment configures it.
    monkeypatch.setenv("VIGIL_KYC_MODEL_DIR", str(model_dir))
    with pytest.raises(ModelsUnavailable, match="VIGIL_KYC_MODEL_DIR"):
        KycEngine(KycConfig())


@pytest.mark.parametrize("name", [*MODEL_FILES, CHECKSUMS])
def test_a_missing_model_file_stops_the_engine(model_dir: Path, name: str) -> None:
    (model_dir / name).unlink()
    with pytest.raises(ModelsUnavailable) as exc:
        KycEngine(KycConfig(model_dir=model_dir))
    assert exc.value.path == model_dir / name
    assert str(model_dir / name) in str(exc.value)


@pytest.mark.parametrize("name", MODEL_FILES)
def test_a_corrupted_model_file_stops_the_engine(model_dir: Path, name: str) -> None:
    path = model_dir / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: a weight, most likely, so it would still load
    path.write_bytes(bytes(data))
    with pytest.raises(ModelsUnavailable, match="corrupt") as exc:
        KycEngine(KycConfig(model_dir=model_dir))
    assert exc.value.path == path and str(path) in str(exc.value)


def _listing(model_dir: Path) -> str:
    import hashlib

    return "".join(f"{hashlib.sha256((model_dir / n).read_bytes()).hexdigest()}  {n}\n" for n in MODEL_FILES)


@pytest.mark.parametrize(
    "name", ["Widerface-RetinaFace.caffemodel", "MiniFASNetV2.onnx", "MiniFASNetV1SE.onnx"]
)
def test_an_unloadable_model_file_stops_the_engine(model_dir: Path, name: str) -> None:
    # Checksums that match a broken file (a folder set up by hand): the load itself must refuse it.
    path = model_dir / name
    path.write_bytes(path.read_bytes()[:1000])
    (model_dir / CHECKSUMS).write_text(_listing(model_dir))
    with pytest.raises(ModelsUnavailable, match="cannot load") as exc:
        KycEngine(KycConfig(model_dir=model_dir))
    assert exc.value.path == path and str(path) in str(exc.value)


def test_a_model_with_the_wrong_output_stops_the_engine(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MiniFasNet, "_probs", staticmethod(lambda *_: np.array([[0.5, 0.5]])))
    with pytest.raises(ModelsUnavailable, match="3 class scores") as exc:
        MiniFasNet(model_dir)
    assert exc.value.path == model_dir / "MiniFASNetV2.onnx"


def test_checksums_without_a_model_stop_the_engine(model_dir: Path) -> None:
    lines = (model_dir / CHECKSUMS).read_text().splitlines()
    (model_dir / CHECKSUMS).write_text("\n".join(x for x in lines if "MiniFASNetV1SE" not in x) + "\n")
    with pytest.raises(ModelsUnavailable, match=r"no checksum for MiniFASNetV1SE\.onnx"):
        MiniFasNet(model_dir)
