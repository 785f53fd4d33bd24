"""KYC verification on Ray Serve: one thin deployment around :class:`kyc.pipeline.KycEngine`.

Models load once per replica in ``__init__`` (never at import). ``verify`` runs the CPU-heavy
submission in a worker thread so the replica's event loop keeps serving health checks and other
requests; ``kyc.errors.InvalidImage`` propagates unchanged (the ingress maps it to HTTP 422).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from datetime import date
from typing import Any

import numpy as np
from ray import serve

from kyc.config import KycConfig, default_model_dir
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
    def __init__(self, **config: Any) -> None:
        config.setdefault("model_dir", default_model_dir())
        self.engine = KycEngine(KycConfig(**config))

    async def verify(self, selfie_frames: list[bytes], document: bytes, today: date) -> dict[str, Any]:
        result = await asyncio.to_thread(self.engine.verify, selfie_frames, document, today=today)
        return result_to_dict(result)
