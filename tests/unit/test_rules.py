"""Rule screening: bands, blacklists, structuring, config validation, and "never raises"."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil.decision.rules import Blacklist, BlacklistItem, RuleConfigError, RuleHit, RuleSet
from vigil.features import spec

AT = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
TX: dict[str, Any] = {
    "user_id": 7,
    "device_id": 70,
    "ip": "10.0.0.1",
    "merchant_id": 700,
    "amount": Decimal("50.00"),
    "currency": "EUR",
}


def velocity(mode: str = "enforce", **extra: Any) -> dict[str, Any]:
    return {
        "id": "velocity-count-1h@1.0.0",
        "kind": "threshold",
        "mode": mode,
        "feature": "txn_count_1h_by_user",
        "bands": [
            {
                "at_least": 10,
                "below": 25,
                "outcome": "review",
                "code": "VELOCITY_1H_HIGH",
                "reason": "{value:.0f} in 1h",
            },
            {
                "at_least": 25,
                "outcome": "block",
                "code": "VELOCITY_1H_EXTREME",
                "reason": "{value:.0f} in 1h",
            },
        ],
        **extra,
    }


def one(rule: dict[str, Any], features: dict[str, Any] | None = None, tx: Any = None, **kw: Any) -> RuleHit:
    rules = RuleSet.from_dict({"version": "t1", "rules": [rule]})
    [hit] = rules.evaluate(
        TX if tx is None else tx, features or {}, kw.pop("blacklist", Blacklist()), at=AT, **kw
    )
    return hit


# --- threshold ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "outcome", "code"),
    [
        (0, "none", None),
        (9.999, "none", None),
        (10, "review", "VELOCITY_1H_HIGH"),  # bands are half-open [at_least, below)
        (24, "review", "VELOCITY_1H_HIGH"),
        (25, "block", "VELOCITY_1H_EXTREME"),
        (1e9, "block", "VELOCITY_1H_EXTREME"),
        (math.inf, "block", "VELOCITY_1H_EXTREME"),
    ],
)
def test_threshold_bands(count: float, outcome: str, code: str | None) -> None:
    hit = one(velocity(), {"txn_count_1h_by_user": count})
    assert (hit.outcome, hit.code, hit.value) == (outcome, code, float(count))
    assert hit.rule_id == "velocity-count-1h@1.0.0"
    assert hit.fired == (outcome != "none")


def test_reason_is_formatted_from_the_value() -> None:
    assert one(velocity(), {"txn_count_1h_by_user": 12}).reason == "12 in 1h"


def test_lower_is_worse_bands() -> None:
    rule = {
        "id": "account-young@1.0.0",
        "kind": "threshold",
        "feature": "age_days_by_user",
        "bands": [{"below": 1, "outcome": "review", "code": "ACCOUNT_NEW", "reason": "{value:.1f} days old"}],
    }
    assert one(rule, {"age_days_by_user": 0.5}).outcome == "review"
    assert one(rule, {"age_days_by_user": 1.0}).outcome == "none"


def test_missing_feature_is_an_explicit_error_not_an_exception() -> None:
    hit = one(velocity(), {"amount": 5.0})
    assert hit.outcome == "error"
    assert hit.code == "RULE_ERROR"
    assert "txn_count_1h_by_user" in hit.reason and "missing" in hit.reason
    assert not hit.fired


@pytest.mark.parametrize("unknown", [math.nan, None])
def test_unknown_feature_is_none_by_default_and_error_on_request(unknown: Any) -> None:
    assert one(velocity(), {"txn_count_1h_by_user": unknown}).outcome == "none"
    assert one(velocity(on_unknown="error"), {"txn_count_1h_by_user": unknown}).outcome == "error"


@pytest.mark.parametrize("bad", ["12", [1], {"a": 1}, object()])
def test_non_numeric_feature_is_an_error(bad: Any) -> None:
    hit = one(velocity(), {"txn_count_1h_by_user": bad})
    assert hit.outcome == "error" and "not a number" in hit.reason


def test_numeric_types_are_accepted() -> None:
    for value in (True, 30, 30.0, Decimal("30")):
        assert one(velocity(), {"txn_count_1h_by_user": value}).outcome in {"none", "block"}
    assert one(velocity(), {"txn_count_1h_by_user": np.int64(30)}).outcome == "block"
    assert one(velocity(), {"txn_count_1h_by_user": np.float32(12)}).outcome == "review"


def test_shadow_rules_report_with_the_shadow_flag() -> None:
    hit = one(velocity(mode="shadow"), {"txn_count_1h_by_user": 30})
    assert hit.outcome == "block" and hit.shadow


def test_as_dict_is_json_safe() -> None:
    d = one(velocity(), {"txn_count_1h_by_user": math.inf}).as_dict()
    assert d["value"] is None and d["outcome"] == "block" and d["code"] == "VELOCITY_1H_EXTREME"
    assert set(d) == {"rule_id", "outcome", "code", "reason", "value", "shadow"}


# --- blacklist -------------------------------------------------------------------------------

BLACKLIST_RULE: dict[str, Any] = {"id": "blacklist-entities@1.0.0", "kind": "blacklist"}


def test_blacklist_hit_names_the_entity_and_reason() -> None:
    bl = Blacklist.from_rows([{"kind": "device", "value": "70", "reason": "device farm"}])
    hit = one(BLACKLIST_RULE, blacklist=bl)
    assert (hit.outcome, hit.code, hit.value) == ("block", "BLACKLIST_HIT", 1.0)
    assert "device 70 (device farm)" in hit.reason


def test_blacklist_counts_every_listed_kind_and_matches_beneficiary_on_merchant_id() -> None:
    bl = Blacklist.from_rows(
        [
            {"kind": "user", "value": 7, "reason": "x"},
            {"kind": "beneficiary", "value": "700", "reason": "mule"},
            {"kind": "ip", "value": "10.0.0.2", "reason": "other ip"},
        ]
    )
    assert one(BLACKLIST_RULE, blacklist=bl).value == 2.0
    only_ip = {**BLACKLIST_RULE, "lists": ["ip"], "outcome": "review", "code": "IP_LISTED"}
    assert one(only_ip, blacklist=bl).outcome == "none"


def test_blacklist_ip_matches_in_canonical_form() -> None:
    bl = Blacklist.from_rows([{"kind": "ip", "value": "2001:DB8:0:0::1", "reason": "tor"}])
    assert one(BLACKLIST_RULE, tx={**TX, "ip": "2001:db8::1"}, blacklist=bl).outcome == "block"


def test_blacklist_expiry_is_checked_at_event_time() -> None:
    item = BlacklistItem("user", "7", "temp", added_at=AT - timedelta(days=1), expires_at=AT)
    bl = Blacklist([item])
    rules = RuleSet.from_dict({"version": "t", "rules": [BLACKLIST_RULE]})
    assert rules.evaluate(TX, {}, bl, at=AT - timedelta(seconds=1))[0].outcome == "block"
    assert rules.evaluate(TX, {}, bl, at=AT)[0].outcome == "none"  # expires_at is exclusive
    assert rules.evaluate(TX, {}, bl, at=AT - timedelta(days=2))[0].outcome == "none"  # not yet added


def test_blacklist_accepts_nanosecond_times_and_refuses_naive_ones() -> None:
    ns = int((AT - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 10**9
    bl = Blacklist.from_rows([{"kind": "user", "value": "7", "expires_at": ns}])
    assert bl.match("user", 7, AT - timedelta(seconds=1)) is not None
    assert bl.match("user", 7, AT) is None
    with pytest.raises(ValueError, match="timezone"):
        Blacklist.from_rows([{"kind": "user", "value": "7", "expires_at": datetime(2026, 1, 1)}])
    with pytest.raises(ValueError, match="unknown blacklist kind"):
        Blacklist.from_rows([{"kind": "card", "value": "1"}])


def test_blacklist_add_applies_a_new_entry_once() -> None:
    ns = int((AT - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 10**9
    bl = Blacklist()
    item = BlacklistItem("merchant", 700, "fraud ring", added_at=ns - 10**9, expires_at=None)
    assert item.added_at == AT - timedelta(seconds=1)
    bl.add(item)
    bl.add(BlacklistItem("merchant", "700", "fraud ring", added_at=AT - timedelta(seconds=1)))  # same entry
    assert len(bl) == 1
    assert one(BLACKLIST_RULE, blacklist=bl).outcome == "block"
    with pytest.raises(ValueError, match="unknown blacklist kind"):
        bl.add(BlacklistItem("card", "1"))


def test_without_a_snapshot_the_blacklist_rule_errors() -> None:
    assert one(BLACKLIST_RULE, blacklist=None).outcome == "error"


def test_a_failing_rule_reports_an_error() -> None:
    class Exploding:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("boom")

    hit = one(BLACKLIST_RULE, tx=Exploding(), blacklist=Blacklist())
    assert hit.outcome == "error" and "boom" in hit.reason


# --- structuring ------------------------------------------------------------------------------


def structuring(**source: Any) -> dict[str, Any]:
    return {
        "id": "structuring-24h@1.0.0",
        "kind": "structuring",
        "threshold": 10000,
        "margin": 0.1,
        "currencies": ["EUR", "usd"],
        "bands": [
            {
                "at_least": 2,
                "below": 3,
                "outcome": "review",
                "code": "STRUCTURING_SUSPECTED",
                "reason": "{detail}",
            },
            {"at_least": 3, "outcome": "block", "code": "STRUCTURING", "reason": "{detail}"},
        ],
        **source,
    }


@pytest.mark.parametrize(
    ("amount", "prior", "outcome", "value"),
    [
        ("9500", 0, "none", 1.0),  # one just-under payment alone is not structuring
        ("9500", 1, "review", 2.0),
        ("9000", 2, "block", 3.0),  # near band is [9000, 10000)
        ("8999.99", 5, "none", 0.0),  # not just under: this payment is not screened
        ("10000", 5, "none", 0.0),  # at the threshold: it gets reported anyway
    ],
)
def test_structuring_by_near_threshold_count(amount: str, prior: float, outcome: str, value: float) -> None:
    rule = structuring(count_feature="txn_count_near_threshold_24h_by_user")
    hit = one(rule, {"txn_count_near_threshold_24h_by_user": prior}, tx={**TX, "amount": Decimal(amount)})
    assert (hit.outcome, hit.value) == (outcome, value)


def test_structuring_by_window_sum() -> None:
    rule = structuring(sum_feature="amount_sum_24h_by_user")
    hit = one(rule, {"amount_sum_24h_by_user": 19000.0}, tx={**TX, "amount": 9500})
    assert hit.outcome == "review" and hit.value == pytest.approx(2.85)
    assert "28500" in hit.reason
    unknown = one(rule, {"amount_sum_24h_by_user": math.nan}, tx={**TX, "amount": 9500})
    assert unknown.outcome == "none" and unknown.value == pytest.approx(0.95)


def test_structuring_currency_filter_and_missing_inputs() -> None:
    rule = structuring(count_feature="near_count")
    assert one(rule, {"near_count": 5}, tx={**TX, "amount": 9500, "currency": "GBP"}).outcome == "none"
    assert one(rule, {"near_count": 5}, tx={**TX, "amount": 9500, "currency": "usd"}).outcome == "block"
    assert one(rule, {"near_count": 5}, tx={"amount": 9500}).outcome == "error"  # no currency
    assert one(rule, {"near_count": 5}, tx={"currency": "EUR"}).outcome == "error"  # no amount
    assert one(rule, {}, tx={**TX, "amount": 9500}).outcome == "error"  # no feature


# --- configuration ---------------------------------------------------------------------------


def test_default_rules_load_and_read_only_known_features() -> None:
    rules = RuleSet.default()
    assert rules.version
    assert all("@" in rule_id for rule_id in rules.rule_ids)
    assert rules.missing_features(spec.FEATURE_NAMES) == []


def test_missing_features_lists_what_the_features_lack() -> None:
    rules = RuleSet.from_dict(
        {"version": "t", "rules": [velocity(), structuring(count_feature="near_count")]}
    )
    assert rules.features_read == {"txn_count_1h_by_user", "near_count"}
    assert rules.missing_features(["txn_count_1h_by_user"]) == ["near_count"]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ({**velocity(), "id": "velocity"}, "must be a lower-case dashed name and a version"),
        (
            {
                **velocity(),
                "bands": [
                    {"at_least": 0, "below": 11, "outcome": "review", "code": "A"},
                    *velocity()["bands"],
                ],
            },
            "bands overlap",
        ),
        ({**velocity(), "bands": []}, "at least one band"),
        (
            {**velocity(), "bands": [{"at_least": 5, "below": 5, "outcome": "review", "code": "A"}]},
            "band is empty",
        ),
        ({**velocity(), "bands": [{"at_least": 5, "outcome": "block"}]}, "needs a reason code"),
        ({**velocity(), "bands": [{"at_least": 5, "outcome": "block", "code": "lower"}]}, "pattern"),
        (
            {**velocity(), "bands": [{"at_least": 5, "outcome": "block", "code": "A", "reason": "{user}"}]},
            "only {value}",
        ),
        (
            {
                **velocity(),
                "bands": [{"at_least": 5, "outcome": "block", "code": "A", "reason": "{value:q}"}],
            },
            "format",
        ),
        ({**velocity(), "bands": [{"at_least": 5, "outcome": "allow", "code": "A"}]}, "outcome"),
        ({**velocity(), "threshold": 3}, "Extra inputs are not permitted"),
        ({**velocity(), "kind": "magic"}, "does not match any of the expected tags"),
        (structuring(), "exactly one of count_feature or sum_feature"),
        (structuring(count_feature="a", sum_feature="b"), "exactly one of count_feature or sum_feature"),
        ({**structuring(count_feature="a"), "currencies": ["XXX"]}, "unknown currency"),
        ({**BLACKLIST_RULE, "lists": ["user", "user"]}, "repeat"),
        ({**BLACKLIST_RULE, "lists": ["card"]}, "lists.0"),
    ],
)
def test_bad_rule_config_is_refused_with_a_clear_message(rule: dict[str, Any], message: str) -> None:
    with pytest.raises(RuleConfigError, match=message) as info:
        RuleSet.from_dict({"version": "t", "rules": [rule]})
    assert "rules.0" in str(info.value)  # the message says where


def test_duplicate_rule_names_are_refused_whatever_the_version() -> None:
    with pytest.raises(RuleConfigError, match="appears twice"):
        RuleSet.from_dict(
            {"version": "t", "rules": [velocity(), {**velocity(), "id": "velocity-count-1h@2.0.0"}]}
        )


def test_bad_yaml_and_missing_version() -> None:
    with pytest.raises(RuleConfigError, match="not valid YAML"):
        RuleSet.from_yaml("rules: [unclosed")
    with pytest.raises(RuleConfigError, match="mapping"):
        RuleSet.from_yaml("- a\n- b\n")
    with pytest.raises(RuleConfigError, match="version"):
        RuleSet.from_dict({"rules": []})


def test_rule_config_error_is_a_422_value_error() -> None:
    with pytest.raises(ValueError) as info:
        RuleSet.from_dict({"version": "", "rules": []})
    assert isinstance(info.value, RuleConfigError) and info.value.status == 422


def test_reconfigure_builds_an_independent_rule_set() -> None:
    old = RuleSet.from_dict({"version": "v1", "rules": [velocity()]})
    raised = velocity()
    raised["bands"][0]["at_least"] = 5
    new = RuleSet.from_dict({"version": "v2", "rules": [raised]})
    assert old.evaluate(TX, {"txn_count_1h_by_user": 6}, at=AT)[0].outcome == "none"
    assert new.evaluate(TX, {"txn_count_1h_by_user": 6}, at=AT)[0].outcome == "review"


# --- evaluation ------------------------------------------------------------------------------


def test_evaluate_returns_one_hit_per_rule_in_order_and_refuses_naive_time() -> None:
    rules = RuleSet.default()
    hits = rules.evaluate(TX, {}, Blacklist(), at=AT)
    assert [h.rule_id for h in hits] == list(rules.rule_ids)
    with pytest.raises(ValueError, match="timezone"):
        rules.evaluate(TX, {}, Blacklist(), at=datetime(2026, 1, 1))


def test_evaluate_batch_matches_single_evaluation() -> None:
    rules = RuleSet.from_dict({"version": "t", "rules": [velocity(), BLACKLIST_RULE]})
    bl = Blacklist.from_rows([{"kind": "user", "value": "8"}])
    txs = [TX, {**TX, "user_id": 8}]
    rows = [{"txn_count_1h_by_user": 12}, {"txn_count_1h_by_user": 1}]
    batch = rules.evaluate_batch(txs, rows, bl, at=[AT, AT])
    assert batch == [rules.evaluate(t, r, bl, at=AT) for t, r in zip(txs, rows, strict=True)]
    assert [h.outcome for h in batch[1]] == ["none", "block"]
    with pytest.raises(ValueError, match="lengths differ"):
        rules.evaluate_batch(txs, rows[:1], bl, at=[AT, AT])


def test_transaction_objects_work_like_mappings() -> None:
    from vigil.schemas import TransactionCreate

    tx = TransactionCreate(
        idempotency_key="key-00001",
        user_id=7,
        account_id=1,
        merchant_id=700,
        amount=Decimal("9500.00"),
        currency="EUR",
        channel="transfer",
        country="DE",
    )
    rules = RuleSet.from_dict({"version": "t", "rules": [BLACKLIST_RULE, structuring(count_feature="near")]})
    hits = rules.evaluate(tx, {"near": 2}, Blacklist.from_rows([{"kind": "merchant", "value": "700"}]), at=AT)
    assert [h.outcome for h in hits] == ["block", "block"]


feature_values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.none(),
    st.text(max_size=5),
    st.decimals(allow_nan=True),
    st.lists(st.integers(), max_size=2),
)
FEATURE_NAMES = st.sampled_from(
    [
        "txn_count_1h_by_user",
        "amount_sum_24h_by_user",
        "amount_ratio_mean_all_by_user",
        "speed_kmh_prev_by_user",
        "users_distinct_24h_by_device",
        "users_distinct_24h_by_ip",
        "kyc_risk_level_by_user",
        "other",
    ]
)
tx_values = st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=8), st.decimals())


DEFAULT_RULES = RuleSet.default()
ARBITRARY_BLACKLIST = Blacklist.from_rows([{"kind": "user", "value": "1"}, {"kind": "ip", "value": "::1"}])


@settings(max_examples=150, deadline=None)
@given(
    features=st.dictionaries(FEATURE_NAMES, feature_values, max_size=8),
    tx=st.dictionaries(
        st.sampled_from(["user_id", "device_id", "ip", "merchant_id", "amount", "currency"]), tx_values
    ),
)
def test_rules_never_raise_on_arbitrary_inputs(features: dict[str, Any], tx: dict[str, Any]) -> None:
    rules, bl = DEFAULT_RULES, ARBITRARY_BLACKLIST
    hits = rules.evaluate(tx, features, bl, at=AT)
    assert len(hits) == len(rules.rule_ids)
    for hit in hits:
        assert hit.outcome in {"none", "review", "block", "error"}
        assert isinstance(hit.reason, str) and hit.reason
        assert (hit.code is None) == (hit.outcome == "none")
