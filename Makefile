# One target per job. Every target bootstraps .venv first (fast when nothing changed).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export PYTHONUNBUFFERED := 1

.PHONY: help setup run run-monitoring test test-unit test-integration lint format bench bench-generate bench-train bench-restart \
        bench-serve bench-kyc bench-features bench-explain clean

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

setup:  ## Create .venv and install Vigil with its dev tools.
	@scripts/bootstrap.sh

run: setup  ## Start Vigil (local Ray on 127.0.0.1, SQLite, in-process bus); Ctrl-C stops it.
	@$(VENV)/bin/vigil up

run-monitoring: setup  ## Prometheus and Alertmanager on 127.0.0.1 against a running `make run`.
	@scripts/install-monitoring.sh
	@scripts/run-monitoring.sh

test: setup  ## Run every test tier (unit, then integration with real Ray/PostgreSQL/Redis/Prometheus).
	@scripts/install-monitoring.sh
	@$(PY) -m pytest tests/unit -q
	@$(PY) -m pytest tests/integration -q

test-unit: setup  ## Unit tier only (no Ray, no network).
	@$(PY) -m pytest tests/unit -q

test-integration: setup  ## Integration tier only.
	@scripts/install-monitoring.sh
	@$(PY) -m pytest tests/integration -q

lint: setup  ## ruff, import-linter (layers point down) and mypy.
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/lint-imports
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy vigil actors deployments training kyc cli dashboards benchmarks
	@$(PY) -m dashboards.build --check

format: setup  ## Apply ruff's fixes and formatting.
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/lint-imports-fix .
	@$(VENV)/bin/ruff format .

bench: bench-generate bench-features bench-train bench-explain bench-serve bench-restart bench-kyc  ## Every benchmark.

bench-generate: setup  ## Synthetic data: 5M transactions / 50K users; rows/s and peak RSS.
	@$(PY) benchmarks/bench_generate.py --users 50000 --transactions 5000000

bench-features: setup  ## Offline feature computation on 5M rows.
	@$(PY) benchmarks/bench_features.py

BENCH_DATA ?= data/bench-5m

bench-train: setup  ## Features + XGBoost (plain and Ray Train) on the generated 5M-row dataset.
	@test -f $(BENCH_DATA)/manifest.json || $(VENV)/bin/vigil generate --users 50000 --transactions 5000000 --seed 7 --out $(BENCH_DATA)
	@$(PY) benchmarks/bench_train.py --dataset $(BENCH_DATA)

bench-explain: setup  ## TreeSHAP per scoring batch: XGBoost's own against the lookup tables.
	@$(PY) benchmarks/bench_explain.py

bench-serve: setup  ## Load test (wrk, loopback) of the Serve graph vs the one-process uvicorn baseline.
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	@$(PY) benchmarks/bench_serve.py

bench-restart: setup  ## Latency at 300/s around a killed velocity shard (Ray restarts it).
	@$(PY) benchmarks/bench_restart.py

bench-kyc: setup  ## One full KYC submission, p50/p95, and liveness APCER/BPCER.
	@$(PY) benchmarks/bench_kyc.py

clean:  ## Remove the virtualenv, caches and local state (var/).
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache var
