"""The process metrics that are not exercised by a request (the request path's are in test_api)."""

from __future__ import annotations

import gc

from vigil import metrics


def _count(generation: str) -> float:
    for family in metrics.REGISTRY.collect():
        if family.name == "vigil_gc_pause_seconds":
            for sample in family.samples:
                if sample.name.endswith("_count") and sample.labels.get("generation") == generation:
                    return sample.value
    return 0.0


def test_gc_pauses_are_recorded_once_per_collection_even_if_tracking_is_installed_twice() -> None:
    metrics.track_gc_pauses()
    metrics.track_gc_pauses()  # idempotent: one callback, one observation per collection
    before = _count("2")
    gc.collect()
    assert _count("2") == before + 1
    sums = [
        s.value
        for f in metrics.REGISTRY.collect()
        if f.name == "vigil_gc_pause_seconds"
        for s in f.samples
        if s.name.endswith("_sum") and s.labels.get("generation") == "2"
    ]
    assert sums and sums[0] > 0


def test_the_scorer_unavailable_series_exist_before_any_outage() -> None:
    """An alert on ``rate(vigil_scorer_unavailable_total[5m]) > 0`` needs the series at 0, not absent."""
    text = metrics.render_metrics().decode()
    for scorer in ("supervised", "anomaly"):
        assert f'vigil_scorer_unavailable_total{{scorer="{scorer}"}}' in text
