"""The monitor's figures as Prometheus metrics, on a :class:`CollectorRegistry` of their own.

:class:`SnapshotCollector` serves the latest :class:`~vigil.monitoring.monitor.Snapshot` at each
scrape (a scrape never computes anything); before the first snapshot it exports nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from vigil.monitoring.metrics import BY_NAME, DEFINITIONS
from vigil.monitoring.monitor import Snapshot


class SnapshotCollector(Collector):
    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def collect(self) -> Iterator[Metric]:
        snapshot = self.snapshot
        if snapshot is None:
            return
        by_name: dict[str, list[tuple[list[str], float]]] = {}
        for sample in snapshot.samples:
            definition = BY_NAME[sample.name]
            labels = dict(sample.labels)
            if set(labels) != set(definition.labels):
                raise ValueError(f"{sample.name}: labels {sorted(labels)}, expected {definition.labels}")
            by_name.setdefault(sample.name, []).append(([labels[k] for k in definition.labels], sample.value))
        for definition in DEFINITIONS:
            if definition.name not in by_name:
                continue
            family: GaugeMetricFamily | CounterMetricFamily
            if definition.kind == "counter":
                family = CounterMetricFamily(definition.name, definition.help, labels=definition.labels)
            else:
                family = GaugeMetricFamily(definition.name, definition.help, labels=definition.labels)
            for values, value in by_name[definition.name]:
                family.add_metric(values, value)
            yield family


def monitor_registry() -> tuple[CollectorRegistry, SnapshotCollector]:
    """A new registry holding one :class:`SnapshotCollector` (set its ``snapshot`` to publish)."""
    registry = CollectorRegistry(auto_describe=False)
    collector = SnapshotCollector()
    registry.register(collector)
    return registry, collector


def render(registry: CollectorRegistry) -> bytes:
    """The text exposition format (``text/plain; version=0.0.4``)."""
    return generate_latest(registry)
