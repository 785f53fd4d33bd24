"""The decision policy: rule hits and model scores in, ``approve | review | block`` with reason codes out.

Precedence is ``block > review > approve``: the most severe signal wins, and only *enforced*
signals count. Shadow rule hits are carried through for reporting and never change the outcome.

Signals, in the order their reason codes are listed:

1. Enforced rule hits that fired (``review``/``block``): their codes, block hits first, then in
   rule order. A rule ``error`` gives ``review`` with ``RULE_ERROR`` when
   ``rule_error="review"`` (the default: a rule we could not evaluate is not a rule that passed)
   and is ignored with ``rule_error="ignore"``.
2. The fraud score ``p(fraud)`` in [0, 1], higher = more likely fraud: ``>= fraud_block`` blocks
   (``FRAUD_SCORE_BLOCK``), ``>= fraud_review`` reviews (``FRAUD_SCORE_HIGH``). When the score
   reached the review cut-off, the model's top positive feature contributions become codes
   ``MODEL:<feature>`` (largest first, at most ``max_model_reasons``), so the explanation says
   which features pushed the score up.
3. The anomaly score in [0, 1], higher = more anomalous: ``>= anomaly_review`` reviews
   (``ANOMALY_SCORE_HIGH``). An anomaly alone never blocks: unsupervised detectors flag the unusual,
   not the fraudulent.

A scorer that is unavailable passes ``None`` (NaN counts as None). Without a fraud score the
decision falls back to the rules, plus ``review`` (``FRAUD_SCORE_UNAVAILABLE``) for amounts at or
above ``unavailable_review_amount`` (or when the amount is not given): small payments keep
flowing during a model outage, large ones wait for a human. ``unavailable_review_amount=None``
means rules only. A missing anomaly score is ignored (the anomaly signal can only add reviews).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vigil.decision.rules import RULE_ERROR_CODE, RuleHit

Outcome = Literal["approve", "review", "block"]

_SEVERITY: dict[str, int] = {"approve": 0, "review": 1, "block": 2}

FRAUD_SCORE_BLOCK = "FRAUD_SCORE_BLOCK"
FRAUD_SCORE_HIGH = "FRAUD_SCORE_HIGH"
FRAUD_SCORE_UNAVAILABLE = "FRAUD_SCORE_UNAVAILABLE"
ANOMALY_SCORE_HIGH = "ANOMALY_SCORE_HIGH"
MODEL_PREFIX = "MODEL:"
#: p(fraud) review / block cut-offs when neither the policy nor the model has any.
DEFAULT_FRAUD_CUTOFFS = (0.5, 0.9)


class PolicyThresholds(BaseModel):
    """Cut-offs of the decision policy; part of the scoring deployment's ``user_config``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    fraud_review: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="p(fraud) at or above: review. None = the scoring model's cost-chosen threshold.",
    )
    fraud_block: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="p(fraud) at or above: block. None = the scoring model's cost-chosen threshold.",
    )
    anomaly_review: float = Field(default=0.8, ge=0, le=1, description="Anomaly score at or above: review.")
    unavailable_review_amount: float | None = Field(
        default=1000.0,
        ge=0,
        description="Without a fraud score, review amounts at or above this (currency units); "
        "None = decide on the rules alone.",
    )
    rule_error: Literal["review", "ignore"] = Field(
        default="review", description="What an enforced rule's error outcome does."
    )
    max_model_reasons: int = Field(default=3, ge=0, le=20, description="MODEL:<feature> codes at most.")

    @model_validator(mode="after")
    def _ordered(self) -> PolicyThresholds:
        if (self.fraud_review is None) != (self.fraud_block is None):
            raise ValueError("set both fraud_review and fraud_block, or neither (the model's own)")
        if (
            self.fraud_review is not None
            and self.fraud_block is not None
            and self.fraud_review > self.fraud_block
        ):
            raise ValueError(
                f"fraud_review ({self.fraud_review}) must not exceed fraud_block ({self.fraud_block})"
            )
        return self


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one transaction.

    ``reason_codes`` explain the outcome (empty for a plain approve); ``rule_hits`` are the enforced
    rules that fired or failed, ``shadow_hits`` the shadow rules that fired or failed (reported only).
    """

    outcome: Outcome
    reason_codes: list[str] = field(default_factory=list)
    rule_hits: list[RuleHit] = field(default_factory=list)
    shadow_hits: list[RuleHit] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason_codes": list(self.reason_codes),
            "rule_hits": [h.as_dict() for h in self.rule_hits],
            "shadow_hits": [h.as_dict() for h in self.shadow_hits],
        }


def _score(value: float | None) -> float | None:
    if value is None or math.isnan(value):
        return None
    return float(value)


def explain_cutoff(explain_above: float | None, thresholds: tuple[float, float] | None) -> float:
    """Scores at or above this get feature contributions: the configured value, else the model's
    review threshold (where the policy starts reading them), else the default review cut-off."""
    if explain_above is not None:
        return explain_above
    return (thresholds or DEFAULT_FRAUD_CUTOFFS)[0]


class DecisionPolicy:
    """Combine rule hits and scores into a :class:`Decision` (pure; cheap; never raises on data)."""

    __slots__ = ("thresholds",)

    def __init__(self, thresholds: PolicyThresholds | None = None) -> None:
        self.thresholds = thresholds or PolicyThresholds()

    @classmethod
    def from_config(cls, data: dict[str, Any] | None) -> DecisionPolicy:
        """From a ``user_config`` mapping (pydantic errors name the bad field)."""
        return cls(PolicyThresholds.model_validate(data or {}))

    def fraud_cutoffs(self, model_thresholds: tuple[float, float] | None) -> tuple[float, float]:
        """(review, block) on p(fraud): the configured pair, else the scoring model's cost-chosen
        pair (recorded with the model version), else :data:`DEFAULT_FRAUD_CUTOFFS`."""
        t = self.thresholds
        if t.fraud_review is not None and t.fraud_block is not None:
            return t.fraud_review, t.fraud_block
        return model_thresholds or DEFAULT_FRAUD_CUTOFFS

    def decide(
        self,
        rule_hits: Iterable[RuleHit],
        fraud_score: float | None,
        anomaly_score: float | None,
        contributions: Sequence[tuple[str, float]] | None = None,
        *,
        amount: float | Decimal | None = None,
        model_thresholds: tuple[float, float] | None = None,
    ) -> Decision:
        """Decide one transaction.

        ``fraud_score`` is p(fraud) in [0, 1] and ``anomaly_score`` in [0, 1], higher = worse, None
        when the scorer is unavailable. ``contributions`` are the model's per-feature contributions
        to this score (e.g. SHAP values; positive = towards fraud). ``amount`` (currency units) is
        only used when the fraud score is missing. ``model_thresholds``: the scoring model's own
        (review, block) cut-offs, used unless the policy configures both.
        """
        t = self.thresholds
        fraud_review, fraud_block = self.fraud_cutoffs(model_thresholds)
        outcome: Outcome = "approve"
        codes: list[str] = []

        def raise_to(level: Outcome, code: str) -> None:
            nonlocal outcome
            if _SEVERITY[level] > _SEVERITY[outcome]:
                outcome = level
            if code not in codes:
                codes.append(code)

        enforced: list[RuleHit] = []
        shadow: list[RuleHit] = []
        for hit in rule_hits:
            if hit.fired or hit.outcome == "error":
                (shadow if hit.shadow else enforced).append(hit)

        # Block hits first so the first code is the strongest reason.
        for hit in sorted(enforced, key=lambda h: h.outcome != "block"):
            if hit.outcome == "block":
                raise_to("block", hit.code or hit.rule_id)
            elif hit.outcome == "review":
                raise_to("review", hit.code or hit.rule_id)
            elif t.rule_error == "review":
                raise_to("review", RULE_ERROR_CODE)

        fraud = _score(fraud_score)
        if fraud is None:
            cutoff = t.unavailable_review_amount
            if cutoff is not None and (amount is None or float(amount) >= cutoff):
                raise_to("review", FRAUD_SCORE_UNAVAILABLE)
        elif fraud >= fraud_review:
            raise_to(
                "block" if fraud >= fraud_block else "review",
                FRAUD_SCORE_BLOCK if fraud >= fraud_block else FRAUD_SCORE_HIGH,
            )
            for code in self._model_codes(contributions):
                raise_to("review", code)

        anomaly = _score(anomaly_score)
        if anomaly is not None and anomaly >= t.anomaly_review:
            raise_to("review", ANOMALY_SCORE_HIGH)

        return Decision(outcome=outcome, reason_codes=codes, rule_hits=enforced, shadow_hits=shadow)

    def _model_codes(self, contributions: Sequence[tuple[str, float]] | None) -> list[str]:
        if not contributions or self.thresholds.max_model_reasons == 0:
            return []
        positive = [(name, float(value)) for name, value in contributions if value is not None and value > 0]
        positive.sort(key=lambda item: -item[1])
        return [MODEL_PREFIX + name for name, _ in positive[: self.thresholds.max_model_reasons]]
