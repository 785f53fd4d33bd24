"""Rule screening: versioned rules that each compute one value and map it through bands to an outcome.

Modelled on Tazama's rule processors, without the cryptic abbreviations:

- every rule has a versioned id (``velocity-count-1h@1.0.0``) and computes ONE number from the
  transaction and its feature row (``{feature name: float}``, see :mod:`vigil.features.spec`);
- configured **bands** map that number to an outcome ``none | review | block`` with a stable reason
  code (``VELOCITY_1H_HIGH``) and a human reason;
- a rule never raises: a missing feature, a non-numeric value or a bug gives the explicit outcome
  ``error`` with the reason, and the decision policy decides what an error means;
- a rule in ``shadow`` mode is evaluated and reported exactly like an enforced one, but the
  decision policy never lets it change the outcome.

Modules, one concern each (import the names from this package):

- :mod:`~vigil.decision.rules.hits`: rule ids, reason codes, :class:`RuleHit`, :class:`RuleConfigError`;
- :mod:`~vigil.decision.rules.blacklist`: :func:`entity_key`, :class:`BlacklistItem`, :class:`Blacklist`;
- :mod:`~vigil.decision.rules.config`: the configuration models and bands, with the YAML format
  and what each rule kind computes;
- :mod:`~vigil.decision.rules.engine`: the compiled rules and :class:`RuleSet`.
"""

from vigil.decision.rules.blacklist import BLACKLIST_FIELDS, Blacklist, BlacklistItem, entity_key
from vigil.decision.rules.config import (
    Band,
    BlacklistRuleConfig,
    FeatureName,
    ReasonCode,
    ReasonTemplate,
    RuleConfig,
    RuleSetConfig,
    StructuringRuleConfig,
    ThresholdRuleConfig,
)
from vigil.decision.rules.engine import RuleSet
from vigil.decision.rules.hits import (
    REASON_CODE_PATTERN,
    RULE_ERROR_CODE,
    RULE_ID_PATTERN,
    BandOutcome,
    RuleConfigError,
    RuleHit,
    RuleMode,
    RuleOutcome,
)

__all__ = [
    "BLACKLIST_FIELDS",
    "REASON_CODE_PATTERN",
    "RULE_ERROR_CODE",
    "RULE_ID_PATTERN",
    "Band",
    "BandOutcome",
    "Blacklist",
    "BlacklistItem",
    "BlacklistRuleConfig",
    "FeatureName",
    "ReasonCode",
    "ReasonTemplate",
    "RuleConfig",
    "RuleConfigError",
    "RuleHit",
    "RuleMode",
    "RuleOutcome",
    "RuleSet",
    "RuleSetConfig",
    "StructuringRuleConfig",
    "ThresholdRuleConfig",
    "entity_key",
]
