#!/usr/bin/env bash
# Install Debian's Prometheus and Alertmanager (prometheus, promtool; prometheus-alertmanager,
# amtool) when any of them is missing: tests/integration/test_monitoring_config.py and
# dashboards/README.md use them. Idempotent: with every binary present it does nothing.
#
# Debian's packages enable and start system services that listen on every interface (:9090,
# :9093) and would hold the ports the local monitoring uses; this script keeps them from
# starting while it installs and disables them afterwards. Vigil runs its own instances on
# 127.0.0.1 (dashboards/README.md). Recommended packages (node exporter) are not installed.
set -euo pipefail

packages=()
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  packages+=(prometheus)
fi
if ! command -v amtool >/dev/null \
  || ! { command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null; }; then
  packages+=(prometheus-alertmanager)
fi
if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-monitoring: missing ${packages[*]}; run as root, or: sudo apt-get install --no-install-recommends ${packages[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "install-monitoring: missing ${packages[*]} and no apt-get here: install Prometheus and Alertmanager (with promtool and amtool) by other means" >&2
  exit 1
fi

# invoke-rc.d asks /usr/sbin/policy-rc.d whether to start a service; 101 means no. Only a file
# this script created is removed again.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi

echo "install-monitoring: apt-get install ${packages[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}"

if command -v systemctl >/dev/null; then
  for unit in prometheus.service prometheus-alertmanager.service; do
    systemctl disable "$unit" >/dev/null 2>&1 || true
    if [ -d /run/systemd/system ]; then
      systemctl stop "$unit" >/dev/null 2>&1 || true
    fi
  done
fi

for binary in prometheus promtool amtool; do
  if ! command -v "$binary" >/dev/null; then
    echo "install-monitoring: $binary is still missing after installing ${packages[*]}" >&2
    exit 1
  fi
done
