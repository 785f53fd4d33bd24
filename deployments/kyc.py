"""KYC verification on Ray Serve: one thin deployment around :class:`kyc.pipeline.KycEngine`.

Models load once per replica in ``__init__`` (never at import); without them the replica does not
start (see :class:`KycVerifier`). ``verify`` runs the CPU-heavy submission in a worker thread so
the replica's event loop keeps serving health checks and other requests; ``kyc.errors.InvalidImage``
propagates unchanged (the ingress maps it to HTTP 422).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve

from kyc.config import KycConfig
from kyc.pipeline import KycEngine, KycResult


def result_to_dict(result: KycResult) -> dict[str, Any]:
    """``KycResult`` as JSON-safe data: enums as their values, NumPy scalars as Python numbers."""
    return {f.name: _plain(getattr(result, f.name)) for f in dataclasses.fields(result)}


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@serve.deployment(name="KycVerifier")
class KycVerifier:
    """``config``: :class:`kyc.config.KycConfig` fields; ``model_dir`` defaults to
    :func:`kyc.config.default_model_dir` (``$VIGIL_KYC_MODEL_DIR`` or the packaged models).

    Fails closed: missing or corrupt models raise :class:`kyc.errors.ModelsUnavailable` (naming
    the file) from ``__init__``, so the replica never becomes ready. Serve retries it, then marks
    the deployment DEPLOY_FAILED with that error, which ``vigil up`` prints before it stops.
    """

    def __init__(self, **config: Any) -> None:
        model_dir = config.get("model_dir")  # a string when it comes from a YAML or JSON config
        self.engine = KycEngine(KycConfig(**{**config, "model_dir": Path(model_dir) if model_dir else None}))

    async def verify(self, selfie_frames: list[bytes], document: bytes, today: date) -> dict[str, Any]:
        result = await asyncio.to_thread(self.engine.verify, selfie_frames, document, today=today)
        return result_to_dict(result)
