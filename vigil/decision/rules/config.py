"""Rule configuration: the pydantic models a rule set is validated with, bands included.

``vigil/config/rules.yaml`` is the default configuration; a Serve ``user_config`` carries the
same shape and ``reconfigure()`` builds a new :class:`~vigil.decision.rules.RuleSet` from it::

    version: "2026-01-15.1"            # recorded with every decision (decisions.rules_version)
    rules:
      - id: velocity-count-1h@1.0.0
        kind: threshold                  # threshold | blacklist | structuring
        mode: enforce                    # enforce | shadow
        feature: txn_count_1h_by_user
        bands:                           # half-open [at_least, below); bands may not overlap
          - {at_least: 10, below: 25, outcome: review, code: VELOCITY_1H_HIGH,
             reason: "{value:.0f} transactions in the last hour"}
          - {at_least: 25, outcome: block, code: VELOCITY_1H_EXTREME,
             reason: "{value:.0f} transactions in the last hour"}

A value that falls in no band gives ``none``. Reason templates may use ``{value}`` (the rule's
number, any format spec) and ``{detail}`` (rule-kind context, e.g. which blacklist matched).
A rule in ``shadow`` mode is evaluated and reported exactly like an enforced one, but the
decision policy never lets it change the outcome (that is how a new band is tried on live traffic).

Rule kinds:

``threshold``
    value = ``features[feature]``. A feature absent from the row is an ``error`` (the config and the
    feature code disagree: a deployment bug); a NaN/None value means "unknown" (e.g. a ratio for a
    user with no history) and gives ``none`` unless ``on_unknown: error``.
``blacklist``
    value = how many of the listed entity kinds (``user device ip merchant beneficiary``) of the
    transaction have an entry active at the event time in the
    :class:`~vigil.decision.rules.Blacklist` snapshot passed to ``RuleSet.evaluate``; any match
    gives ``outcome`` (default ``block``). A ``beneficiary`` is matched against ``merchant_id``:
    beneficiaries are merchants of kind ``beneficiary``.
``structuring``
    Splitting a payment into several just under a reporting threshold. The *near band* is
    ``[threshold * (1 - margin), threshold)``. A transaction outside the near band has value 0
    (the rule screens *this* payment; a later just-under payment is what triggers it). Inside it:

    - with ``count_feature`` (the user's prior near-band transactions in the window, e.g. a
      ``txn_count_near_threshold_24h_by_user`` feature): value = prior count + 1, the number of
      just-under payments including this one;
    - with ``sum_feature`` (e.g. ``amount_sum_24h_by_user``, prior amounts in the window): value =
      (prior sum + amount) / threshold, the window's total in multiples of the threshold. This is
      the fallback when no near-band count feature exists; it also fires for a user whose normal
      spending is large, so prefer the count when the features provide it.

    ``currencies`` (optional) restricts the rule to amounts in those currencies: the threshold is
    in currency units and no FX conversion is done.
"""

from __future__ import annotations

import itertools
import math
import re
import string
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from vigil.decision.rules.hits import REASON_CODE_PATTERN, RULE_ID_PATTERN, BandOutcome, RuleMode
from vigil.schemas import BlacklistKind, Currency

_RULE_ID = re.compile(RULE_ID_PATTERN)
_FORMATTER = string.Formatter()
_TEMPLATE_FIELDS = frozenset({"value", "detail"})


def _check_template(template: str) -> str:
    try:
        names = {name for _, name, _, _ in _FORMATTER.parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"reason template {template!r} is malformed: {exc}") from None
    unknown = names - _TEMPLATE_FIELDS
    if unknown:
        raise ValueError(
            f"reason template {template!r} uses {sorted(unknown)}; only {{value}} and {{detail}} exist"
        )
    try:
        template.format(value=1.5, detail="x")
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        raise ValueError(f"reason template {template!r} does not format a number: {exc}") from None
    return template


ReasonTemplate = Annotated[str, Field(min_length=1, max_length=300)]
ReasonCode = Annotated[str, Field(pattern=REASON_CODE_PATTERN, max_length=64)]
FeatureName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=80)]


class _Config(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Band(_Config):
    """Values in ``[at_least, below)`` (a missing bound is open) map to ``outcome``."""

    at_least: float | None = None
    below: float | None = None
    outcome: BandOutcome
    code: ReasonCode | None = None
    reason: ReasonTemplate = "{value:g} is within the normal range"

    @field_validator("at_least", "below")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and math.isnan(v):
            raise ValueError("band bounds must be numbers, not NaN")
        return v

    @field_validator("reason")
    @classmethod
    def _template(cls, v: str) -> str:
        return _check_template(v)

    @model_validator(mode="after")
    def _consistent(self) -> Band:
        if self.at_least is not None and self.below is not None and not self.at_least < self.below:
            raise ValueError(
                f"band is empty: at_least ({self.at_least}) must be below 'below' ({self.below})"
            )
        if self.outcome != "none" and self.code is None:
            raise ValueError(
                f"a band with outcome {self.outcome!r} needs a reason code (e.g. VELOCITY_1H_HIGH)"
            )
        return self


def _check_bands(bands: list[Band]) -> list[Band]:
    if not bands:
        raise ValueError("at least one band is required")
    ordered = sorted(bands, key=lambda b: -math.inf if b.at_least is None else b.at_least)
    for lower, upper in itertools.pairwise(ordered):
        lower_end = math.inf if lower.below is None else lower.below
        upper_start = -math.inf if upper.at_least is None else upper.at_least
        if lower_end > upper_start:
            raise ValueError(
                f"bands overlap: [{lower.at_least}, {lower.below}) and [{upper.at_least}, {upper.below})"
            )
    return ordered


class _RuleConfig(_Config):
    id: Annotated[str, Field(max_length=80)]
    mode: RuleMode = "enforce"
    description: str = ""

    @field_validator("id")
    @classmethod
    def _versioned(cls, v: str) -> str:
        if not _RULE_ID.match(v):
            raise ValueError(
                f"rule id {v!r} must be a lower-case dashed name and a version, e.g. velocity-count-1h@1.0.0"
            )
        return v


class ThresholdRuleConfig(_RuleConfig):
    kind: Literal["threshold"]
    feature: FeatureName
    bands: list[Band]
    on_unknown: Literal["none", "error"] = "none"

    @field_validator("bands")
    @classmethod
    def _bands(cls, v: list[Band]) -> list[Band]:
        return _check_bands(v)


class BlacklistRuleConfig(_RuleConfig):
    kind: Literal["blacklist"]
    lists: list[BlacklistKind] = Field(
        default=["user", "device", "ip", "merchant", "beneficiary"], min_length=1
    )
    outcome: Literal["review", "block"] = "block"
    code: ReasonCode = "BLACKLIST_HIT"
    reason: ReasonTemplate = "blacklisted: {detail}"

    @field_validator("lists")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"blacklist kinds repeat: {v}")
        return v

    @field_validator("reason")
    @classmethod
    def _template(cls, v: str) -> str:
        return _check_template(v)


class StructuringRuleConfig(_RuleConfig):
    kind: Literal["structuring"]
    threshold: float = Field(gt=0, allow_inf_nan=False, description="Reporting threshold, currency units.")
    margin: float = Field(
        default=0.1, gt=0, lt=1, description="Near band = [threshold*(1-margin), threshold)."
    )
    count_feature: FeatureName | None = None
    sum_feature: FeatureName | None = None
    currencies: list[Currency] | None = None
    bands: list[Band]

    @field_validator("bands")
    @classmethod
    def _bands(cls, v: list[Band]) -> list[Band]:
        return _check_bands(v)

    @model_validator(mode="after")
    def _one_source(self) -> StructuringRuleConfig:
        if (self.count_feature is None) == (self.sum_feature is None):
            raise ValueError("a structuring rule needs exactly one of count_feature or sum_feature")
        return self


RuleConfig = Annotated[
    ThresholdRuleConfig | BlacklistRuleConfig | StructuringRuleConfig, Field(discriminator="kind")
]


class RuleSetConfig(_Config):
    """The whole configuration: a version string and the rules, ids unique."""

    version: Annotated[str, Field(min_length=1, max_length=64)]
    rules: list[RuleConfig]

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list[Any]) -> list[Any]:
        seen: set[str] = set()
        for rule in rules:
            name = rule.id.split("@", 1)[0]
            if name in seen:
                raise ValueError(f"rule {name!r} appears twice (ids must be unique, whatever the version)")
            seen.add(name)
        return rules
