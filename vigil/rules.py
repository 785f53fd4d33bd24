"""Rule screening: versioned rules that each compute one value and map it through bands to an outcome.

Modelled on Tazama's rule processors, without the cryptic abbreviations:

- every rule has a versioned id (``velocity-count-1h@1.0.0``) and computes ONE number from the
  transaction and its feature row (``{feature name: float}``, see :mod:`vigil.features.spec`);
- configured **bands** map that number to an outcome ``none | review | block`` with a stable reason
  code (``VELOCITY_1H_HIGH``) and a human reason;
- a rule never raises: a missing feature, a non-numeric value or a bug gives the explicit outcome
  ``error`` with the reason, and the decision policy decides what an error means;
- a rule in ``shadow`` mode is evaluated and reported exactly like an enforced one, but the
  decision policy never lets it change the outcome (that is how a new band is tried on live traffic).

Configuration (``vigil/config/rules.yaml`` is the default; a Serve ``user_config`` carries the
same shape and ``reconfigure()`` builds a new :class:`RuleSet` from it)::

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

Rule kinds:

``threshold``
    value = ``features[feature]``. A feature absent from the row is an ``error`` (the config and the
    feature code disagree: a deployment bug); a NaN/None value means "unknown" (e.g. a ratio for a
    user with no history) and gives ``none`` unless ``on_unknown: error``.
``blacklist``
    value = how many of the listed entity kinds (``user device ip merchant beneficiary``) of the
    transaction have an entry active at the event time in the :class:`Blacklist` snapshot passed
    to :meth:`RuleSet.evaluate`; any match gives ``outcome`` (default ``block``). A ``beneficiary``
    is matched against ``merchant_id``: beneficiaries are merchants of kind ``beneficiary``.
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

Evaluation is cheap: configuration is validated and compiled once (bands sorted, templates
checked); :meth:`RuleSet.evaluate` runs plain Python over the compiled rules, and
:meth:`RuleSet.evaluate_batch` loops over a Serve micro-batch.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import math
import re
import string
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from importlib import resources
from numbers import Real
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vigil.errors import InvalidRequest
from vigil.schemas import BlacklistKind, Currency

log = logging.getLogger("vigil.rules")

RuleOutcome = Literal["none", "review", "block", "error"]
BandOutcome = Literal["none", "review", "block"]
RuleMode = Literal["enforce", "shadow"]

#: ``name@MAJOR.MINOR.PATCH``: lower-case words joined by dashes, then a semantic version.
RULE_ID_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*@\d+\.\d+\.\d+$"
_RULE_ID = re.compile(RULE_ID_PATTERN)
REASON_CODE_PATTERN = r"^[A-Z][A-Z0-9_]*$"
#: The reason code of every ``error`` outcome.
RULE_ERROR_CODE = "RULE_ERROR"

#: Blacklist kind -> the transaction field it is matched against.
BLACKLIST_FIELDS: dict[str, str] = {
    "user": "user_id",
    "device": "device_id",
    "ip": "ip",
    "merchant": "merchant_id",
    "beneficiary": "merchant_id",
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class RuleConfigError(InvalidRequest, ValueError):
    """A rule set configuration is invalid; the message lists every problem with its location."""

    code = "invalid_rules"


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RuleHit:
    """One rule's result for one transaction (every rule yields one, ``none`` included).

    ``value`` is the number the rule computed (None when it could not: unknown or error).
    ``code`` is the stable reason code (None for ``none``; ``RULE_ERROR`` for ``error``).
    ``shadow`` rules are reported, never enforced.
    """

    rule_id: str
    outcome: RuleOutcome
    reason: str
    code: str | None = None
    value: float | None = None
    shadow: bool = False

    @property
    def fired(self) -> bool:
        """True for ``review`` and ``block``: the rule asks for action."""
        return self.outcome == "review" or self.outcome == "block"

    def as_dict(self) -> dict[str, Any]:
        """JSON-safe form for ``decisions.rule_hits`` and events (non-finite values become None)."""
        value = self.value if self.value is not None and math.isfinite(self.value) else None
        return {
            "rule_id": self.rule_id,
            "outcome": self.outcome,
            "code": self.code,
            "reason": self.reason,
            "value": value,
            "shadow": self.shadow,
        }


# --------------------------------------------------------------------------------------------
# Blacklist snapshot
# --------------------------------------------------------------------------------------------


def _utc(t: datetime | int, what: str) -> datetime:
    """An aware UTC datetime from an aware datetime or integer nanoseconds since the epoch."""
    if isinstance(t, int):
        return _EPOCH + timedelta(microseconds=t // 1000)
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {t!r}")
    return t.astimezone(UTC)


def entity_key(kind: str, value: object) -> str:
    """The string a blacklist value or a transaction field is matched by.

    Ids match as integers written in decimal (``42``, ``"42"`` and ``42.0`` are the same user);
    IP addresses in their canonical form; anything else stripped.
    """
    if kind == "ip":
        text = str(value).strip()
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            return text.lower()
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value).strip()
    try:
        return str(int(text))
    except ValueError:
        return text


class BlacklistItem:
    """One entry: active while ``added_at <= t < expires_at`` (either bound None = open).

    Times are aware datetimes or integer UTC nanoseconds (as in :mod:`vigil.features.events`);
    both are stored as aware UTC datetimes, a naive datetime is refused.
    """

    __slots__ = ("added_at", "expires_at", "kind", "reason", "value")

    def __init__(
        self,
        kind: str,
        value: object,
        reason: str = "",
        added_at: datetime | int | None = None,
        expires_at: datetime | int | None = None,
    ) -> None:
        self.kind = str(kind)
        self.value = str(value)
        self.reason = reason
        self.added_at: datetime | None = None if added_at is None else _utc(added_at, "added_at")
        self.expires_at: datetime | None = None if expires_at is None else _utc(expires_at, "expires_at")

    def __repr__(self) -> str:
        return (
            f"BlacklistItem(kind={self.kind!r}, value={self.value!r}, reason={self.reason!r}, "
            f"added_at={self.added_at!r}, expires_at={self.expires_at!r})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BlacklistItem):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[Any, ...]:
        return (self.kind, self.value, self.reason, self.added_at, self.expires_at)

    def active_at(self, at: datetime) -> bool:
        if self.added_at is not None and at < self.added_at:
            return False
        return self.expires_at is None or at < self.expires_at


class Blacklist:
    """An in-memory snapshot of ``blacklist_entries``, matched at event time.

    Build it from :class:`BlacklistItem` objects, or with :meth:`from_rows` from database rows,
    feature events or dicts; :meth:`add` applies one new entry between batches (evaluation is
    synchronous, so a replica's event loop never sees a half-applied change). Expired entries are
    kept: the event time decides, and a late or replayed transaction may predate the expiry.
    """

    __slots__ = ("_entries", "_size")

    def __init__(self, items: Iterable[BlacklistItem] = ()) -> None:
        self._entries: dict[tuple[str, str], tuple[BlacklistItem, ...]] = {}
        self._size = 0
        for item in items:
            self.add(item)

    def add(self, item: BlacklistItem) -> None:
        """Add one entry (an identical one already present is not added twice)."""
        if item.kind not in BLACKLIST_FIELDS:
            raise ValueError(
                f"unknown blacklist kind {item.kind!r}: expected one of {sorted(BLACKLIST_FIELDS)}"
            )
        key = (item.kind, entity_key(item.kind, item.value))
        present = self._entries.get(key, ())
        if item in present:
            return
        self._entries[key] = (*present, item)
        self._size += 1

    @classmethod
    def from_rows(cls, rows: Iterable[Any]) -> Blacklist:
        """A snapshot from objects or mappings with ``kind``, ``value`` (+ optional fields)."""
        items = []
        for row in rows:
            added = _field(row, "added_at")
            expires = _field(row, "expires_at")
            items.append(
                BlacklistItem(
                    kind=str(_field(row, "kind")),
                    value=_field(row, "value"),
                    reason=str(_field(row, "reason") or ""),
                    added_at=added,
                    expires_at=expires,
                )
            )
        return cls(items)

    def __len__(self) -> int:
        return self._size

    def match(self, kind: str, value: object, at: datetime) -> BlacklistItem | None:
        """The entry of ``kind`` naming ``value`` that is active at ``at`` (aware), if any."""
        if value is None:
            return None
        for item in self._entries.get((kind, entity_key(kind, value)), ()):
            if item.active_at(at):
                return item
        return None


# --------------------------------------------------------------------------------------------
# Configuration (validated with pydantic, then compiled)
# --------------------------------------------------------------------------------------------

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


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err.get("loc", ()))
        msg = err.get("msg", "").removeprefix("Value error, ")
        lines.append(f"  {loc or '<root>'}: {msg}")
    return "invalid rule configuration:\n" + "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Compiled rules
# --------------------------------------------------------------------------------------------


def _field(obj: Any, name: str) -> Any:
    """``obj[name]`` for a mapping, ``obj.name`` otherwise; None when absent."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _number(raw: Any) -> float | None:
    """A float from a numeric value (bools and Decimals included); None for anything else."""
    if isinstance(raw, Real):  # int, float, bool, numpy scalars
        return float(raw)
    if isinstance(raw, Decimal):
        return float(raw)
    return None


def _format(template: str, value: float | None, detail: str) -> str:
    try:
        return template.format(value=math.nan if value is None else value, detail=detail)
    except (ValueError, TypeError):  # validated at load; a format spec can still refuse e.g. inf
        return f"{template} (value={value}, {detail})"


@dataclass(frozen=True, slots=True)
class _CompiledBand:
    low: float
    high: float
    outcome: BandOutcome
    code: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class _Rule:
    rule_id: str
    shadow: bool
    bands: tuple[_CompiledBand, ...]
    features: tuple[str, ...] = field(default=())

    def _band_hit(self, value: float, detail: str = "") -> RuleHit:
        for band in self.bands:
            # An open upper bound (inf) includes inf itself: a value that large is surely above.
            if band.low <= value and (value < band.high or band.high == math.inf):
                return RuleHit(
                    self.rule_id,
                    band.outcome,
                    _format(band.reason, value, detail),
                    band.code,
                    value,
                    self.shadow,
                )
        return RuleHit(
            self.rule_id,
            "none",
            _format("{value:g} is within the normal range", value, ""),
            None,
            value,
            self.shadow,
        )

    def _none(self, reason: str, value: float | None = None) -> RuleHit:
        return RuleHit(self.rule_id, "none", reason, None, value, self.shadow)

    def _error(self, reason: str) -> RuleHit:
        return RuleHit(self.rule_id, "error", reason, RULE_ERROR_CODE, None, self.shadow)

    def _feature(self, features: Mapping[str, Any], name: str) -> float | RuleHit | None:
        """The feature's number; None when unknown (NaN/None); an error hit when absent or bad."""
        if name not in features:
            return self._error(f"feature {name!r} is missing from the feature row")
        raw = features[name]
        if raw is None:
            return None
        number = _number(raw)
        if number is None:
            return self._error(f"feature {name!r} is not a number: {type(raw).__name__}")
        return None if math.isnan(number) else number

    def evaluate(
        self, tx: Any, features: Mapping[str, Any], blacklist: Blacklist | None, at: datetime
    ) -> RuleHit:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class _ThresholdRule(_Rule):
    feature: str = ""
    unknown_is_error: bool = False

    def evaluate(
        self, tx: Any, features: Mapping[str, Any], blacklist: Blacklist | None, at: datetime
    ) -> RuleHit:
        value = self._feature(features, self.feature)
        if isinstance(value, RuleHit):
            return value
        if value is None:
            reason = f"feature {self.feature!r} is unknown (NaN) for this transaction"
            return self._error(reason) if self.unknown_is_error else self._none(reason)
        return self._band_hit(value)


@dataclass(frozen=True, slots=True)
class _BlacklistRule(_Rule):
    lists: tuple[str, ...] = ()

    def evaluate(
        self, tx: Any, features: Mapping[str, Any], blacklist: Blacklist | None, at: datetime
    ) -> RuleHit:
        if blacklist is None:
            return self._error("no blacklist snapshot is loaded")
        matches = []
        for kind in self.lists:
            item = blacklist.match(kind, _field(tx, BLACKLIST_FIELDS[kind]), at)
            if item is not None:
                matches.append(f"{kind} {item.value}" + (f" ({item.reason})" if item.reason else ""))
        if not matches:
            return self._none("no active blacklist entry", 0.0)
        return self._band_hit(float(len(matches)), "; ".join(matches))


@dataclass(frozen=True, slots=True)
class _StructuringRule(_Rule):
    threshold: float = 0.0
    near_floor: float = 0.0
    count_feature: str | None = None
    sum_feature: str | None = None
    currencies: frozenset[str] | None = None

    def evaluate(
        self, tx: Any, features: Mapping[str, Any], blacklist: Blacklist | None, at: datetime
    ) -> RuleHit:
        amount = _number(_field(tx, "amount"))
        if amount is None or math.isnan(amount):
            return self._error("transaction has no numeric amount")
        if self.currencies is not None:
            currency = _field(tx, "currency")
            if currency is None:
                return self._error("transaction has no currency and the rule is restricted to some")
            if str(currency).upper() not in self.currencies:
                return self._none(f"currency {currency} is not screened by this rule", 0.0)
        if not self.near_floor <= amount < self.threshold:
            return self._none(f"amount {amount:g} is not just under the threshold {self.threshold:g}", 0.0)
        if self.count_feature is not None:
            prior = self._feature(features, self.count_feature)
            if isinstance(prior, RuleHit):
                return prior
            if prior is None:
                return self._none(f"feature {self.count_feature!r} is unknown for this transaction")
            value = prior + 1.0
            detail = f"{value:g} payments in [{self.near_floor:g}, {self.threshold:g})"
        else:
            assert self.sum_feature is not None
            prior = self._feature(features, self.sum_feature)
            if isinstance(prior, RuleHit):
                return prior
            if prior is None:  # no prior spending known: this payment alone
                prior = 0.0
            value = (prior + amount) / self.threshold
            detail = f"{prior + amount:g} in the window, this payment {amount:g} < {self.threshold:g}"
        return self._band_hit(value, detail)


def _compile_bands(bands: Sequence[Band]) -> tuple[_CompiledBand, ...]:
    return tuple(
        _CompiledBand(
            low=-math.inf if b.at_least is None else b.at_least,
            high=math.inf if b.below is None else b.below,
            outcome=b.outcome,
            code=b.code,
            reason=b.reason,
        )
        for b in bands
    )


def _compile(cfg: ThresholdRuleConfig | BlacklistRuleConfig | StructuringRuleConfig) -> _Rule:
    shadow = cfg.mode == "shadow"
    if isinstance(cfg, ThresholdRuleConfig):
        return _ThresholdRule(
            cfg.id,
            shadow,
            _compile_bands(cfg.bands),
            (cfg.feature,),
            feature=cfg.feature,
            unknown_is_error=cfg.on_unknown == "error",
        )
    if isinstance(cfg, BlacklistRuleConfig):
        band = _CompiledBand(1.0, math.inf, cfg.outcome, cfg.code, cfg.reason)
        return _BlacklistRule(cfg.id, shadow, (band,), (), lists=tuple(cfg.lists))
    source = cfg.count_feature or cfg.sum_feature
    assert source is not None
    return _StructuringRule(
        cfg.id,
        shadow,
        _compile_bands(cfg.bands),
        (source,),
        threshold=cfg.threshold,
        near_floor=cfg.threshold * (1.0 - cfg.margin),
        count_feature=cfg.count_feature,
        sum_feature=cfg.sum_feature,
        currencies=None if cfg.currencies is None else frozenset(cfg.currencies),
    )


# --------------------------------------------------------------------------------------------
# The rule set
# --------------------------------------------------------------------------------------------


class RuleSet:
    """A validated, compiled, immutable set of rules with a version.

    Build it with :meth:`from_dict`, :meth:`from_yaml`, :meth:`load` or :meth:`default`;
    reconfiguring means building a new one (the old one stays valid for in-flight batches).
    """

    __slots__ = ("_rules", "config")

    def __init__(self, config: RuleSetConfig) -> None:
        self.config = config
        self._rules: tuple[_Rule, ...] = tuple(_compile(rule) for rule in config.rules)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleSet:
        """Validate ``{"version": ..., "rules": [...]}``; raise :class:`RuleConfigError` listing problems."""
        try:
            return cls(RuleSetConfig.model_validate(data))
        except ValidationError as exc:
            raise RuleConfigError(_describe(exc)) from None

    @classmethod
    def from_yaml(cls, text: str) -> RuleSet:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RuleConfigError(f"rule configuration is not valid YAML: {exc}") from None
        if not isinstance(data, Mapping):
            raise RuleConfigError("rule configuration must be a mapping with 'version' and 'rules'")
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> RuleSet:
        return cls.from_yaml(Path(path).read_text(encoding="utf-8"))

    @classmethod
    def default(cls) -> RuleSet:
        """The rules shipped in ``vigil/config/rules.yaml``."""
        return cls.from_yaml(
            resources.files("vigil").joinpath("config/rules.yaml").read_text(encoding="utf-8")
        )

    @property
    def version(self) -> str:
        return self.config.version

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(rule.rule_id for rule in self._rules)

    @property
    def features_read(self) -> frozenset[str]:
        """Every feature name some rule reads."""
        return frozenset(name for rule in self._rules for name in rule.features)

    def missing_features(self, available: Iterable[str]) -> list[str]:
        """Features the rules read that ``available`` (e.g. ``FEATURE_NAMES``) lacks, sorted.

        A deployment should refuse a configuration with missing features at ``reconfigure()``
        rather than let every transaction carry an ``error`` hit.
        """
        return sorted(self.features_read - set(available))

    def evaluate(
        self, tx: Any, features: Mapping[str, Any], blacklist: Blacklist | None = None, *, at: datetime
    ) -> list[RuleHit]:
        """One :class:`RuleHit` per rule, in configuration order; never raises for bad data.

        ``tx`` is a mapping or an object with the transaction's fields (``user_id``, ``device_id``,
        ``ip``, ``merchant_id``, ``amount``, ``currency``); ``features`` its feature row;
        ``at`` the event time (timezone-aware), against which blacklist expiry is checked.
        A naive ``at`` is a caller bug and raises ``ValueError``.
        """
        at = _utc(at, "at")
        return [self._run(rule, tx, features, blacklist, at) for rule in self._rules]

    def evaluate_batch(
        self,
        txs: Sequence[Any],
        feature_rows: Sequence[Mapping[str, Any]],
        blacklist: Blacklist | None = None,
        *,
        at: Sequence[datetime],
    ) -> list[list[RuleHit]]:
        """:meth:`evaluate` over a micro-batch (same length sequences), results in input order."""
        if not len(txs) == len(feature_rows) == len(at):
            raise ValueError(
                f"batch lengths differ: {len(txs)} txs, {len(feature_rows)} rows, {len(at)} times"
            )
        return [
            self.evaluate(tx, row, blacklist, at=t) for tx, row, t in zip(txs, feature_rows, at, strict=True)
        ]

    @staticmethod
    def _run(
        rule: _Rule, tx: Any, features: Mapping[str, Any], blacklist: Blacklist | None, at: datetime
    ) -> RuleHit:
        try:
            return rule.evaluate(tx, features, blacklist, at)
        except Exception as exc:  # a rule must never take the screening down: report and go on
            log.exception("rule %s failed", rule.rule_id)
            return RuleHit(
                rule.rule_id,
                "error",
                f"rule failed: {type(exc).__name__}: {exc}",
                RULE_ERROR_CODE,
                None,
                rule.shadow,
            )
