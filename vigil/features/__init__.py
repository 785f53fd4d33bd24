"""Fraud feature definitions, executed two ways from one spec.

- :mod:`vigil.features.spec` — the registry: names, dtypes, meaning, :data:`FEATURE_VERSION`.
- :mod:`vigil.features.definitions` — the arithmetic, shared by both executions.
- :mod:`vigil.features.online` — per-event state (read, then learn) for the velocity actors.
- :mod:`vigil.features.offline` — :func:`compute_features`, vectorised over a whole table.

``tests/unit/features/test_features_parity.py`` replays random streams both ways and demands
equal rows. No Ray here: actors wrap these objects.

:func:`compute_features` is imported on first use: the offline path needs pandas, which the
velocity shards (online only) would otherwise import at every (re)start.
"""

from typing import Any

from vigil.features.events import (
    BlacklistEntry,
    LabelEvent,
    MerchantProfile,
    TransactionEvent,
    UserProfile,
    to_ns,
)
from vigil.features.online import (
    BlacklistIndex,
    EntityStore,
    InMemoryEntityStore,
    OnlineFeatureEngine,
    UserState,
    event_features,
    stable_shard,
)
from vigil.features.spec import (
    FEATURE_DTYPES,
    FEATURE_NAMES,
    FEATURE_SPEC,
    FEATURE_VERSION,
    FeatureSpec,
    FeatureVersionMismatch,
    check_feature_version,
)

__all__ = [
    "FEATURE_DTYPES",
    "FEATURE_NAMES",
    "FEATURE_SPEC",
    "FEATURE_VERSION",
    "BlacklistEntry",
    "BlacklistIndex",
    "EntityStore",
    "FeatureSpec",
    "FeatureVersionMismatch",
    "InMemoryEntityStore",
    "LabelEvent",
    "MerchantProfile",
    "OnlineFeatureEngine",
    "TransactionEvent",
    "UserProfile",
    "UserState",
    "check_feature_version",
    "compute_features",
    "event_features",
    "stable_shard",
    "to_ns",
]


def __getattr__(name: str) -> Any:
    if name == "compute_features":
        from vigil.features.offline import compute_features

        return compute_features
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
