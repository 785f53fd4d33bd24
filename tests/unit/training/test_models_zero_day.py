"""Zero-day check on synthetic data: the held-out type is invisible to the supervised model but
not to the anomaly scorer."""

from __future__ import annotations

import pytest

from training.models.data import make_synthetic_matrix
from training.models.zero_day import zero_day_check


def test_zero_day_bust_out_caught_by_anomaly_scorer() -> None:
    m = make_synthetic_matrix(20_000, 12, fraud_rate=0.04, days=60, seed=8)
    result = zero_day_check(
        m,
        "bust_out",
        supervised_params={"num_boost_round": 40},
        detector="autoencoder",
        detector_params={"epochs": 4},
    )
    assert result.n_held_out_test > 20
    assert result.anomaly_recall >= 0.5
    assert result.anomaly_recall > result.supervised_recall
    assert "bust_out" in result.as_markdown()


def test_zero_day_unknown_type() -> None:
    with pytest.raises(ValueError, match="not among"):
        zero_day_check(make_synthetic_matrix(2000, 9, days=20), "phishing")
