"""Operator monitoring computed from the database: model performance on label-matured windows,
data drift against reference bins, business KPIs, exported as Prometheus metrics; and operator
alerts from Alertmanager. Pure core: SQL through the async session, pandas and NumPy, no Ray
(the Serve wrapper is :mod:`deployments.monitor`).

- :mod:`vigil.monitoring.monitor` — windows, :func:`load_frames`, :func:`compute`, :class:`Monitor`.
- :mod:`vigil.monitoring.drift` — reference bins, PSI, binned KS.
- :mod:`vigil.monitoring.metrics` — the exported names and labels (a contract with ``dashboards/``).
- :mod:`vigil.monitoring.exposition` — the snapshot as a Prometheus collector.
- :mod:`vigil.monitoring.alerts` — Alertmanager notifications to operator alerts.
"""
