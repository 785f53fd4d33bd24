"""The monitor: PSI on hand-checkable cases, the figures against an independent recomputation on a
database filled through the real service (SQLite; PostgreSQL in tests/integration), the
Prometheus exposition, and the Alertmanager webhook."""

from __future__ import annotations

import math
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from vigil.db.engine import create_engine, session_factory
from vigil.db.migrate import upgrade_async
from vigil.gateway.api import create_api, install_service
from vigil.gateway.auth import InMemoryKeyStore, install_key_store
from vigil.monitoring.drift import FeatureBins, ReferenceProfile, fit_categorical, fit_numeric, psi
from vigil.monitoring.exposition import monitor_registry, render
from vigil.monitoring.metrics import DEFINITIONS
from vigil.monitoring.monitor import Monitor, Snapshot
from vigil.service import VigilService

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # --import-mode=importlib: tests/ is no package
from monitoring_scenario import MODEL, config, fill, raw_tables, recompute

# --------------------------------------------------------------------------------------------
# PSI and bins


def test_psi_of_a_hand_computed_case() -> None:
    # (0.25 - 0.5) ln(0.25/0.5) + (0.75 - 0.5) ln(0.75/0.5) = 0.25 ln 2 + 0.25 ln 1.5
    assert psi([0.5, 0.5], [0.25, 0.75]) == pytest.approx(0.25 * math.log(2) + 0.25 * math.log(1.5))
    assert psi([0.2, 0.3, 0.5], [0.2, 0.3, 0.5]) == 0.0
    bins = fit_categorical("channel", ["pos", "atm", "pos", "atm"])
    assert bins.reference == (0.5, 0.5, 0.0)  # atm, pos, other
    live = ["atm", "pos", "pos", "pos"]
    expected = 0.25 * math.log(2) + 0.25 * math.log(1.5)  # the "other" bin: 0 vs 0, floored both
    assert bins.psi(live) == pytest.approx(expected)


def test_numeric_bins_put_edge_values_below_and_outliers_in_the_open_bins() -> None:
    bins = fit_numeric("amount", range(1, 101), n_bins=4)
    assert bins.edges == pytest.approx((25.75, 50.5, 75.25))
    assert bins.reference == pytest.approx((0.25, 0.25, 0.25, 0.25))
    assert list(bins.counts([25.75, 25.76, -1e9, 1e9, float("nan")])) == [2, 1, 0, 1]
    shifted = [200.0] * 10  # everything in the top bin
    floor = 1e-4
    expected = 3 * (floor - 0.25) * math.log(floor / 0.25) + (1 - 0.25) * math.log(1 / 0.25)
    assert bins.psi(shifted) == pytest.approx(expected)
    assert bins.ks(shifted) == pytest.approx(0.75)
    assert bins.ks(range(1, 101)) == pytest.approx(0.0)


def test_reference_profile_round_trips_through_json() -> None:
    profile = ReferenceProfile(
        {
            "amount": fit_numeric("amount", [1, 2, 3, 4, 5]),
            "channel_code": fit_categorical("channel_code", [0.0, 1.0]),
        }
    )
    back = ReferenceProfile.from_json(profile.to_json())
    assert back.bins == profile.bins
    with pytest.raises(ValueError, match="reference shares"):
        FeatureBins.from_dict("x", {"kind": "numeric", "edges": [1.0], "reference": [1.0]})


# --------------------------------------------------------------------------------------------
# The monitor against a recomputation


async def monitor_snapshot(url: str, now: datetime) -> Snapshot:
    engine = create_engine(url)
    try:
        return await Monitor(session_factory(engine), config(now)).snapshot(now)
    finally:
        await engine.dispose()


def check_against_recomputation(snapshot: Snapshot, expected: dict[str, float]) -> None:
    model, version = MODEL.split(":")
    mv = {"model": model, "version": version, "window": "7d"}
    assert snapshot.get("vigil_model_precision", **mv) == pytest.approx(expected["precision"])
    assert snapshot.get("vigil_model_recall", **mv) == pytest.approx(expected["recall"])
    assert snapshot.get("vigil_model_labelled_fraction", **mv) == pytest.approx(expected["labelled"])
    assert snapshot.get("vigil_model_roc_auc", **mv) == pytest.approx(expected["roc_auc"])
    assert snapshot.get("vigil_model_pr_auc", **mv) is not None
    assert snapshot.get("vigil_fraud_caught_transactions", window="24h") == expected["caught"]
    assert snapshot.get("vigil_fraud_caught_amount", window="24h", currency="EUR") == pytest.approx(
        expected["caught_amount"]
    )
    assert snapshot.get("vigil_false_positive_rate", window="24h") == pytest.approx(expected["fpr"])
    assert snapshot.get("vigil_outcome_share", outcome="review", window="24h") == pytest.approx(
        expected["share_review"]
    )
    assert snapshot.get("vigil_review_queue_cases") == expected["queue"]
    assert snapshot.get("vigil_review_queue_oldest_age_seconds") == pytest.approx(expected["oldest"])
    assert snapshot.get("vigil_review_turnaround_seconds", quantile="0.5", window="24h") == pytest.approx(
        expected["turnaround_p50"]
    )
    assert snapshot.get("vigil_labels_received") == expected["labels"]
    drift = {"model": model, "version": version, "feature": "amount", "window": "1h"}
    assert snapshot.get("vigil_feature_psi", **drift) == pytest.approx(expected["amount_psi"])
    assert expected["amount_psi"] > 0.25  # the matured rows' large amounts are unlike the reference


async def test_monitor_figures_equal_a_recomputation_from_raw_rows(
    sqlite_url: str, open_shop: Callable[[VigilService], Awaitable[Any]]
) -> None:
    await fill(sqlite_url, open_shop)
    now = datetime.now(UTC) + timedelta(seconds=1)
    snapshot = await monitor_snapshot(sqlite_url, now)
    expected = recompute(await raw_tables(sqlite_url), now)
    assert 0 < expected["labelled"] < 1 and expected["queue"] > 0 and expected["caught"] > 0
    check_against_recomputation(snapshot, expected)


async def test_exposition_has_the_contract_names_and_labels(
    sqlite_url: str, open_shop: Callable[[VigilService], Awaitable[Any]]
) -> None:
    registry, collector = monitor_registry()
    assert render(registry) == b""  # nothing before the first computation
    await fill(sqlite_url, open_shop)
    now = datetime.now(UTC) + timedelta(seconds=1)
    collector.snapshot = await monitor_snapshot(sqlite_url, now)
    families = {f.name: f for f in text_string_to_metric_families(render(registry).decode())}
    labels = {d.name: set(d.labels) for d in DEFINITIONS}
    for name in (
        "vigil_model_precision",
        "vigil_model_recall",
        "vigil_model_f1",
        "vigil_model_roc_auc",
        "vigil_model_pr_auc",
        "vigil_model_labelled_fraction",
        "vigil_feature_psi",
        "vigil_feature_ks",
        "vigil_score_psi",
        "vigil_review_queue_cases",
        "vigil_review_queue_oldest_age_seconds",
        "vigil_review_turnaround_seconds",
        "vigil_fraud_caught_transactions",
        "vigil_fraud_caught_amount",
        "vigil_false_positive_rate",
        "vigil_outcome_share",
        "vigil_kyc_submissions",
    ):
        assert name in families, name
        for sample in families[name].samples:
            assert set(sample.labels) == labels[name], (name, sample.labels)
    assert families["vigil_labels_received"].type == "counter"
    assert families["vigil_labels_received"].samples[0].name == "vigil_labels_received_total"
    psi_labels = {s.labels["feature"] for s in families["vigil_feature_psi"].samples}
    assert {"amount", "hour_utc", "channel_code", "country"} <= psi_labels


# --------------------------------------------------------------------------------------------
# Alertmanager's webhook

OPS_KEY, ANALYST_KEY = "ops-" + "o" * 32, "ana-" + "n" * 32


@pytest.fixture
async def ops_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'vigil.db'}"
    await upgrade_async(url)
    async with webhook_client(url) as client:
        yield client


def webhook_client(url: str) -> Any:
    import contextlib

    @contextlib.asynccontextmanager
    async def make() -> AsyncIterator[httpx.AsyncClient]:
        api = create_api()
        service = VigilService(url)
        install_service(api, service)
        keys = InMemoryKeyStore()
        keys.add("alertmanager", "operator", OPS_KEY)
        keys.add("ana", "analyst", ANALYST_KEY)
        install_key_store(api, keys)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api),
            base_url="http://test",
            headers={"Authorization": f"Bearer {OPS_KEY}"},
        ) as client:
            yield client
        await service.close()

    return make()


def notification(status: str, *alerts: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="VigilFeatureDrift"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "vigil-ticket",
        "groupLabels": {"alertname": "VigilFeatureDrift"},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": list(alerts),
    }


def am_alert(status: str, fingerprint: str, feature: str, severity: str = "critical") -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": "VigilFeatureDrift",
            "severity": severity,
            "feature": feature,
            "window": "1h",
        },
        "annotations": {"summary": f"Feature {feature} has shifted"},
        "startsAt": "2026-03-01T12:00:00.123Z",
        "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else "2026-03-01T13:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": fingerprint,
    }


async def feed(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    answer = await client.get("/v1/alerts", headers={"Authorization": f"Bearer {ANALYST_KEY}"})
    assert answer.status_code == 200, answer.text
    return list(answer.json())


async def exercise_webhook(client: httpx.AsyncClient) -> None:
    """Firing (twice: a repeat), then resolved (twice), as Alertmanager would send them."""
    firing = notification("firing", am_alert("firing", "a1b2c3d4e5f60718", "amount"),
                          am_alert("firing", "0f0f0f0f0f0f0f0f", "country", "warning"))  # fmt: skip
    first = await client.post("/v1/ops/alertmanager", json=firing)
    assert first.status_code == 200, first.text
    assert len(first.json()["created"]) == 2 and first.json()["unchanged"] == 0
    again = await client.post("/v1/ops/alertmanager", json=firing)
    assert again.json() == {"created": [], "resolved": [], "unchanged": 2}
    rows = await feed(client)
    assert [(r["kind"], r["severity"]) for r in rows] == [("operator", "high"), ("operator", "medium")]
    assert rows[0]["message"].startswith("[FIRING] VigilFeatureDrift: Feature amount has shifted")
    assert "feature=amount" in rows[0]["message"] and rows[0]["transaction_id"] is None

    resolved = notification("resolved", am_alert("resolved", "a1b2c3d4e5f60718", "amount"))
    done = await client.post("/v1/ops/alertmanager", json=resolved)
    assert done.status_code == 200, done.text
    assert done.json()["resolved"] == [rows[0]["id"]] and len(done.json()["created"]) == 1
    repeat = await client.post("/v1/ops/alertmanager", json=resolved)
    assert repeat.json() == {"created": [], "resolved": [], "unchanged": 1}
    after = await feed(client)
    assert [r["kind"] for r in after] == ["operator_resolved", "operator", "operator_resolved"]
    assert after[2]["message"].startswith("[RESOLVED] VigilFeatureDrift")


async def test_alertmanager_alerts_become_operator_alerts_and_resolve_once(
    ops_client: httpx.AsyncClient,
) -> None:
    await exercise_webhook(ops_client)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"version": "3", "status": "firing", "alerts": [am_alert("firing", "ab", "x")]}, "version"),
        (notification("firing"), "alerts"),
        (
            notification("firing", {**am_alert("firing", "ab", "x"), "labels": {"severity": "page"}}),
            "alertname",
        ),
        (notification("firing", {**am_alert("firing", "a/b", "x")}), "fingerprint"),
        (
            notification("firing", {**am_alert("firing", "ab", "x"), "startsAt": "2026-03-01T12:00:00"}),
            "zone",
        ),
        (notification("bogus", am_alert("firing", "ab", "x")), "status"),
    ],
)
async def test_bad_notifications_are_422_with_a_reason(
    ops_client: httpx.AsyncClient, body: dict[str, Any], reason: str
) -> None:
    answer = await ops_client.post("/v1/ops/alertmanager", json=body)
    assert answer.status_code == 422, answer.text
    assert reason in answer.json()["detail"]
    assert await feed(ops_client) == []


async def test_the_webhook_needs_an_operator_or_admin_key(ops_client: httpx.AsyncClient) -> None:
    body = notification("firing", am_alert("firing", "ab", "x"))
    anonymous = await ops_client.post("/v1/ops/alertmanager", json=body, headers={"Authorization": ""})
    analyst = await ops_client.post(
        "/v1/ops/alertmanager", json=body, headers={"Authorization": f"Bearer {ANALYST_KEY}"}
    )
    assert (anonymous.status_code, analyst.status_code) == (401, 403)
