#!/usr/bin/env bash
# Prometheus (127.0.0.1:9090) and Alertmanager (127.0.0.1:9093) with Vigil's rules and routes,
# scraping a running `make run` on 127.0.0.1; data under $VIGIL_HOME (var/). Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
home=${VIGIL_HOME:-var}
mkdir -p "$home/prometheus" "$home/alertmanager"
alertmanager=$(command -v prometheus-alertmanager || command -v alertmanager)

# --cluster.listen-address= (empty) turns off Alertmanager's gossip port (every interface).
"$alertmanager" --config.file=dashboards/alertmanager/alertmanager.yml \
  --web.listen-address=127.0.0.1:9093 --cluster.listen-address= --storage.path="$home/alertmanager" \
  --log.level=warn &
am=$!
prometheus --config.file=dashboards/prometheus/prometheus.yml --web.listen-address=127.0.0.1:9090 \
  --storage.tsdb.path="$home/prometheus" --log.level=warn &
prom=$!
trap 'kill "$prom" "$am" 2>/dev/null; wait' INT TERM EXIT
echo "Prometheus: http://127.0.0.1:9090 (Status > Targets, Alerts)  Alertmanager: http://127.0.0.1:9093"
echo "Press Ctrl-C to stop."
wait -n "$prom" "$am"
