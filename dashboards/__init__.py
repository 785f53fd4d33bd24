"""Operators' monitoring configuration as code: Grafana dashboards generated from Python
(:mod:`dashboards.specs`, written by ``python -m dashboards.build``), beside the Prometheus and
Alertmanager files in this directory. Importable without a Grafana or Prometheus server.
"""
