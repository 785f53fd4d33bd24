"""Rule results: rule ids, reason codes, outcomes, :class:`RuleHit` and :class:`RuleConfigError`.

A rule id is a lower-case dashed name with a semantic version (``velocity-count-1h@1.0.0``); a
reason code is upper-case (``VELOCITY_1H_HIGH``). Every rule yields one :class:`RuleHit` per
transaction with the outcome ``none | review | block | error``; an ``error`` always carries the
code :data:`RULE_ERROR_CODE`, and the decision policy decides what it means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from vigil.errors import InvalidRequest

RuleOutcome = Literal["none", "review", "block", "error"]
BandOutcome = Literal["none", "review", "block"]
RuleMode = Literal["enforce", "shadow"]

#: ``name@MAJOR.MINOR.PATCH``: lower-case words joined by dashes, then a semantic version.
RULE_ID_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*@\d+\.\d+\.\d+$"
REASON_CODE_PATTERN = r"^[A-Z][A-Z0-9_]*$"
#: The reason code of every ``error`` outcome.
RULE_ERROR_CODE = "RULE_ERROR"


class RuleConfigError(InvalidRequest, ValueError):
    """A rule set configuration is invalid; the message lists every problem with its location."""

    code = "invalid_rules"


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
