"""Decision policy: precedence, shadow hits, scorer outages, reason codes."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from vigil.decision.policy import (
    DEFAULT_FRAUD_CUTOFFS,
    Decision,
    DecisionPolicy,
    PolicyThresholds,
    explain_cutoff,
)
from vigil.decision.rules import RuleHit
from vigil.models.registry import LoadedModel

POLICY = DecisionPolicy(PolicyThresholds(fraud_review=0.5, fraud_block=0.9, anomaly_review=0.8))


def hit(outcome: str, code: str | None = "CODE", *, shadow: bool = False, rule: str = "r@1.0.0") -> RuleHit:
    if outcome == "none":
        code = None
    if outcome == "error":
        code = "RULE_ERROR"
    return RuleHit(rule, outcome, "why", code, 1.0, shadow)  # type: ignore[arg-type]


def decide(
    hits: tuple[RuleHit, ...] | list[RuleHit] = (),
    fraud: float | None = 0.1,
    anomaly: float | None = 0.1,
    **kw: Any,
) -> Decision:
    return POLICY.decide(hits, fraud, anomaly, kw.pop("contributions", None), **kw)


def test_clean_transaction_is_approved_without_reasons() -> None:
    d = decide([hit("none")])
    assert d == Decision("approve", [], [], [])


def test_rule_outcomes_and_precedence() -> None:
    assert decide([hit("review", "A")]).outcome == "review"
    d = decide([hit("review", "A", rule="a@1.0.0"), hit("block", "B", rule="b@1.0.0"), hit("none")])
    assert d.outcome == "block"
    assert d.reason_codes == ["B", "A"]  # the strongest reason first
    assert [h.rule_id for h in d.rule_hits] == ["a@1.0.0", "b@1.0.0"]  # fired hits, rule order


def test_shadow_hits_are_reported_but_never_enforced() -> None:
    d = decide([hit("block", "SHADOW_BLOCK", shadow=True), hit("none", shadow=True)])
    assert d.outcome == "approve" and d.reason_codes == []
    assert [h.code for h in d.shadow_hits] == ["SHADOW_BLOCK"] and d.rule_hits == []


@pytest.mark.parametrize(
    ("fraud", "outcome", "codes"),
    [
        (0.0, "approve", []),
        (0.4999, "approve", []),
        (0.5, "review", ["FRAUD_SCORE_HIGH"]),
        (0.8999, "review", ["FRAUD_SCORE_HIGH"]),
        (0.9, "block", ["FRAUD_SCORE_BLOCK"]),
        (1.0, "block", ["FRAUD_SCORE_BLOCK"]),
    ],
)
def test_fraud_score_cut_offs_are_inclusive(fraud: float, outcome: str, codes: list[str]) -> None:
    d = decide(fraud=fraud)
    assert (d.outcome, d.reason_codes) == (outcome, codes)


def test_anomaly_reviews_but_never_blocks() -> None:
    assert decide(anomaly=0.8).reason_codes == ["ANOMALY_SCORE_HIGH"]
    assert decide(anomaly=1.0).outcome == "review"
    assert decide(anomaly=0.79).outcome == "approve"


def test_model_contributions_become_reason_codes_when_the_score_matters() -> None:
    contributions = [
        ("amount", 0.1),
        ("amount_ratio_mean_all_by_user", 0.9),
        ("hour_utc", -2.0),
        ("age", 0.3),
        ("x", 0.05),
    ]
    d = decide(fraud=0.95, contributions=contributions)
    assert d.reason_codes == [
        "FRAUD_SCORE_BLOCK",
        "MODEL:amount_ratio_mean_all_by_user",
        "MODEL:age",
        "MODEL:amount",
    ]
    assert decide(fraud=0.2, contributions=contributions).reason_codes == []  # the model did not decide
    quiet = DecisionPolicy(PolicyThresholds(max_model_reasons=0))
    assert quiet.decide([], 0.95, None, contributions).reason_codes == ["FRAUD_SCORE_BLOCK"]


@pytest.mark.parametrize("missing", [None, math.nan])
def test_fraud_scorer_outage_falls_back_to_rules_and_reviews_large_amounts(missing: float | None) -> None:
    assert decide(fraud=missing, amount=50).outcome == "approve"
    d = decide(fraud=missing, amount=1000)
    assert (d.outcome, d.reason_codes) == ("review", ["FRAUD_SCORE_UNAVAILABLE"])
    assert decide(fraud=missing).outcome == "review"  # amount unknown: cannot prove it is small
    assert decide([hit("block", "B")], fraud=missing, amount=5).outcome == "block"
    rules_only = DecisionPolicy(PolicyThresholds(unavailable_review_amount=None))
    assert rules_only.decide([], missing, None, None, amount=10**9).outcome == "approve"


def test_missing_anomaly_score_is_ignored() -> None:
    assert decide(anomaly=None).outcome == "approve"
    assert decide(anomaly=math.nan).outcome == "approve"


def test_rule_errors_review_by_default_or_are_ignored() -> None:
    d = decide([hit("error")])
    assert (d.outcome, d.reason_codes) == ("review", ["RULE_ERROR"])
    assert len(d.rule_hits) == 1
    lenient = DecisionPolicy(PolicyThresholds(rule_error="ignore"))
    assert lenient.decide([hit("error")], 0.1, 0.1).outcome == "approve"
    assert decide([hit("error", shadow=True)]).outcome == "approve"


def test_thresholds_are_validated() -> None:
    with pytest.raises(ValidationError, match="must not exceed fraud_block"):
        PolicyThresholds(fraud_review=0.95, fraud_block=0.9)
    with pytest.raises(ValidationError, match="less than or equal to 1"):
        DecisionPolicy.from_config({"fraud_block": 1.5})
    with pytest.raises(ValidationError, match="Extra inputs"):
        DecisionPolicy.from_config({"fraud_blok": 0.5})
    assert DecisionPolicy.from_config(None).thresholds == PolicyThresholds()


def test_decision_as_dict_is_plain_data() -> None:
    d = decide([hit("review", "A"), hit("block", "S", shadow=True)], fraud=0.6)
    assert d.as_dict() == {
        "outcome": "review",
        "reason_codes": ["A", "FRAUD_SCORE_HIGH"],
        "rule_hits": [hit("review", "A").as_dict()],
        "shadow_hits": [hit("block", "S", shadow=True).as_dict()],
    }


# --- properties -----------------------------------------------------------------------------

SEVERITY = {"approve": 0, "review": 1, "block": 2}
hits_st = st.lists(
    st.builds(
        hit,
        st.sampled_from(["none", "review", "block", "error"]),
        st.sampled_from(["A", "B", "C"]),
        shadow=st.booleans(),
    ),
    max_size=6,
)
scores = st.one_of(st.none(), st.just(math.nan), st.floats(min_value=0, max_value=1))
contributions_st = st.one_of(
    st.none(), st.lists(st.tuples(st.sampled_from(["f1", "f2", "f3"]), st.floats(-5, 5)), max_size=4)
)
thresholds_st = st.builds(
    lambda r, b, a, amt, err: PolicyThresholds(
        fraud_review=min(r, b),
        fraud_block=max(r, b),
        anomaly_review=a,
        unavailable_review_amount=amt,
        rule_error=err,
    ),
    st.floats(0, 1),
    st.floats(0, 1),
    st.floats(0, 1),
    st.one_of(st.none(), st.floats(0, 1e6)),
    st.sampled_from(["review", "ignore"]),
)


@settings(max_examples=200, deadline=None)
@given(
    thresholds=thresholds_st,
    hits=hits_st,
    fraud=scores,
    anomaly=scores,
    contributions=contributions_st,
    amount=st.one_of(st.none(), st.floats(0, 1e6)),
)
def test_policy_invariants(
    thresholds: PolicyThresholds,
    hits: list[RuleHit],
    fraud: float | None,
    anomaly: float | None,
    contributions: list[tuple[str, float]] | None,
    amount: float | None,
) -> None:
    policy = DecisionPolicy(thresholds)
    d = policy.decide(hits, fraud, anomaly, contributions, amount=amount)

    # An enforced block hit always blocks.
    if any(h.outcome == "block" and not h.shadow for h in hits):
        assert d.outcome == "block"
    # Shadow hits never change the outcome or the reasons.
    without_shadow = policy.decide(
        [h for h in hits if not h.shadow], fraud, anomaly, contributions, amount=amount
    )
    assert (d.outcome, d.reason_codes) == (without_shadow.outcome, without_shadow.reason_codes)
    # Every enforced rule signal is at least honoured; anything but approve carries a reason.
    strongest = max((SEVERITY.get(h.outcome, 0) for h in hits if not h.shadow), default=0)
    assert SEVERITY[d.outcome] >= strongest
    assert bool(d.reason_codes) == (d.outcome != "approve")
    assert len(set(d.reason_codes)) == len(d.reason_codes)
    # A higher fraud score is never a milder decision.
    if fraud is not None and not math.isnan(fraud):
        higher = policy.decide(hits, min(1.0, fraud + 0.1), anomaly, contributions, amount=amount)
        assert SEVERITY[higher.outcome] >= SEVERITY[d.outcome]
    assert all(not h.shadow for h in d.rule_hits) and all(h.shadow for h in d.shadow_hits)


# --- the model's own cut-offs ------------------------------------------------------------------


def test_model_cutoffs_apply_unless_the_policy_pins_both() -> None:
    free = DecisionPolicy(PolicyThresholds(anomaly_review=0.8))
    model = (0.12, 0.78)  # what choose_thresholds picked for this version at training
    assert free.decide([], 0.1, 0.0, model_thresholds=model).outcome == "approve"
    assert free.decide([], 0.2, 0.0, model_thresholds=model).outcome == "review"
    assert free.decide([], 0.8, 0.0, model_thresholds=model).reason_codes == ["FRAUD_SCORE_BLOCK"]
    # No cut-offs from the model either: the documented defaults.
    assert free.fraud_cutoffs(None) == DEFAULT_FRAUD_CUTOFFS
    assert free.decide([], 0.2, 0.0).outcome == "approve"
    # Pinned in the config (user_config): the model's pair is ignored.
    assert POLICY.decide([], 0.2, 0.0, model_thresholds=model).outcome == "approve"
    assert POLICY.fraud_cutoffs(model) == (0.5, 0.9)


def test_half_a_pinned_pair_is_refused() -> None:
    with pytest.raises(ValidationError, match="set both fraud_review and fraud_block"):
        DecisionPolicy.from_config({"fraud_review": 0.3})


def test_explanations_start_where_the_policy_reads_them() -> None:
    assert explain_cutoff(None, (0.12, 0.78)) == 0.12
    assert explain_cutoff(None, None) == DEFAULT_FRAUD_CUTOFFS[0]
    assert explain_cutoff(0.4, (0.12, 0.78)) == 0.4


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"threshold_review": 0.12, "threshold_block": 0.78, "pr_auc": 0.5}, (0.12, 0.78)),
        ({"pr_auc": 0.5}, None),  # registered before thresholds were recorded
        ({"threshold_review": 0.9, "threshold_block": 0.2}, None),  # not a usable pair
        ({"threshold_review": "x", "threshold_block": 0.2}, None),
    ],
)
def test_registered_versions_carry_their_cutoffs(
    metrics: dict[str, object], expected: tuple[float, float] | None
) -> None:
    loaded = LoadedModel(model=None, manifest={"metrics": metrics})  # type: ignore[arg-type]
    assert loaded.operating_thresholds == expected
