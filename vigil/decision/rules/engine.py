"""Compiled rules and :class:`RuleSet`: validated configuration turned into plain Python and evaluated.

Configuration (:mod:`vigil.decision.rules.config`) is validated and compiled once (bands sorted,
templates checked); :meth:`RuleSet.evaluate` runs plain Python over the compiled rules, and
:meth:`RuleSet.evaluate_batch` loops over a Serve micro-batch. A rule never raises: a missing
feature, a non-numeric value or a bug gives the outcome ``error`` with the reason.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from importlib import resources
from numbers import Real
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from vigil.decision.rules.blacklist import BLACKLIST_FIELDS, Blacklist, _field, _utc
from vigil.decision.rules.config import (
    Band,
    BlacklistRuleConfig,
    RuleSetConfig,
    StructuringRuleConfig,
    ThresholdRuleConfig,
)
from vigil.decision.rules.hits import RULE_ERROR_CODE, BandOutcome, RuleConfigError, RuleHit

log = logging.getLogger("vigil.decision.rules")

# --------------------------------------------------------------------------------------------
# Compiled rules
# --------------------------------------------------------------------------------------------


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


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err.get("loc", ()))
        msg = err.get("msg", "").removeprefix("Value error, ")
        lines.append(f"  {loc or '<root>'}: {msg}")
    return "invalid rule configuration:\n" + "\n".join(lines)


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
