"""Synthetic fraud data: ``generate(GenerateConfig(...), out_dir)`` writes the Parquet tables.

See :mod:`.core` for the pipeline, :mod:`.fraud` for the fraud scenarios and
:mod:`training.quality` for the checks run on the output.
"""

from .config import DEFAULT_FRAUD_MIX, FRAUD_TYPES, USERS_PER_BLOCK, GenerateConfig
from .core import MANIFEST, DataQualityError, GenerateSummary, generate, split_at
from .schema import SCHEMAS, TABLES

__all__ = [
    "DEFAULT_FRAUD_MIX",
    "FRAUD_TYPES",
    "MANIFEST",
    "SCHEMAS",
    "TABLES",
    "USERS_PER_BLOCK",
    "DataQualityError",
    "GenerateConfig",
    "GenerateSummary",
    "generate",
    "split_at",
]
