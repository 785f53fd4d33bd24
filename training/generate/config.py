"""What to generate: :class:`GenerateConfig` and the fraud-type vocabulary."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType

#: Fraud scenarios the generator injects, in a fixed order (their codes in the data).
FRAUD_TYPES: tuple[str, ...] = (
    "high_velocity",
    "amount_spike",
    "account_takeover",
    "structuring",
    "blacklisted",
    "compromised_merchant",
)

DEFAULT_FRAUD_MIX: Mapping[str, float] = MappingProxyType(
    {
        "high_velocity": 0.22,
        "amount_spike": 0.14,
        "account_takeover": 0.20,
        "structuring": 0.10,
        "blacklisted": 0.14,
        "compromised_merchant": 0.20,
    }
)

#: Users per generation block. Part of the output contract: the same seed and sizes give
#: byte-identical files only for the same block size, so it is a constant, not a knob.
USERS_PER_BLOCK = 8192


@dataclass(frozen=True)
class GenerateConfig:
    """Sizes and knobs of a synthetic dataset.

    ``transactions`` counts every row of the transactions table, fraud included; ``fraud_rate`` is
    the share of those rows that are fraud and must lie inside ``fraud_rate_band`` (inclusive).
    ``start`` is the UTC start of the simulated window, which lasts ``days`` days. ``fraud_mix``
    gives the relative weight of each fraud type (normalised; a type with weight 0 is not injected).
    ``structuring_threshold`` is the reporting threshold structurers stay just under, in the
    account currency.
    """

    users: int = 2_000
    transactions: int = 100_000
    seed: int = 0
    fraud_rate: float = 0.04
    fraud_rate_band: tuple[float, float] = (0.03, 0.05)
    start: datetime = datetime(2025, 1, 1, tzinfo=UTC)
    days: int = 90
    fraud_mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FRAUD_MIX))
    structuring_threshold: float = 10_000.0
    validate: bool = True

    def __post_init__(self) -> None:
        if self.users < 10:
            raise ValueError(f"users must be >= 10, got {self.users}")
        if self.transactions < 1_000:
            raise ValueError(f"transactions must be >= 1000, got {self.transactions}")
        if self.days < 14:
            raise ValueError(f"days must be >= 14 (fraud scenarios span days), got {self.days}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        low, high = self.fraud_rate_band
        if not 0.0 < low <= high < 0.5:
            raise ValueError(
                f"fraud_rate_band must satisfy 0 < low <= high < 0.5, got {self.fraud_rate_band}"
            )
        if not low <= self.fraud_rate <= high:
            raise ValueError(f"fraud_rate {self.fraud_rate} outside the configured band [{low}, {high}]")
        if self.start.tzinfo is None or self.start.utcoffset() != UTC.utcoffset(None):
            raise ValueError("start must be a timezone-aware UTC datetime")
        unknown = set(self.fraud_mix) - set(FRAUD_TYPES)
        if unknown:
            raise ValueError(f"unknown fraud types in fraud_mix: {sorted(unknown)}; known: {FRAUD_TYPES}")
        weights = [self.fraud_mix.get(t, 0.0) for t in FRAUD_TYPES]
        if any(w < 0 or not math.isfinite(w) for w in weights) or sum(weights) <= 0:
            raise ValueError(f"fraud_mix weights must be finite, >= 0 and not all 0: {dict(self.fraud_mix)}")
        if not 1_000 <= self.structuring_threshold <= 1_000_000:
            raise ValueError("structuring_threshold must lie in [1000, 1000000]")

    @property
    def fraud_transactions(self) -> int:
        """Fraud rows written: ``round(transactions * fraud_rate)``, kept inside the band."""
        low, high = self.fraud_rate_band
        wanted = round(self.transactions * self.fraud_rate)
        return min(
            max(wanted, math.ceil(self.transactions * low - 1e-9)),
            math.floor(self.transactions * high + 1e-9),
        )

    def fraud_counts(self) -> dict[str, int]:
        """Fraud rows per type: the mix applied to :attr:`fraud_transactions` (sums exactly)."""
        weights = [max(self.fraud_mix.get(t, 0.0), 0.0) for t in FRAUD_TYPES]
        total = sum(weights)
        target = self.fraud_transactions
        counts = [math.floor(target * w / total) for w in weights]
        # Largest remainders get the leftover rows, so the counts sum to the target exactly.
        order = sorted(range(len(weights)), key=lambda i: -(target * weights[i] / total - counts[i]))
        for i in order[: target - sum(counts)]:
            counts[i] += 1
        return dict(zip(FRAUD_TYPES, counts, strict=True))

    @property
    def start_us(self) -> int:
        return int(self.start.timestamp()) * 1_000_000 + self.start.microsecond

    @property
    def end_us(self) -> int:
        return self.start_us + self.days * 86_400 * 1_000_000
