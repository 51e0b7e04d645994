#!/usr/bin/env bash
# Installs what tests/observability needs beyond Python: Prometheus' `prometheus` and `promtool`
# binaries (Debian/Ubuntu package `prometheus`). Idempotent: does nothing when both are on PATH.
# Exit 0 when they are there afterwards; 1 with instructions when they cannot be installed here.
set -euo pipefail

have_all() { command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; }

if have_all; then
  echo "prometheus and promtool already installed: $(promtool --version 2>&1 | head -n1)"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "promtool/prometheus not found, and not running as root: cannot install them." >&2
  echo "Install Prometheus 2.x (Debian/Ubuntu: sudo apt-get install -y prometheus," >&2
  echo "elsewhere: https://prometheus.io/download/) so that 'prometheus' and 'promtool' are on PATH." >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "promtool/prometheus not found and apt-get is not available: install Prometheus 2.x" >&2
  echo "(https://prometheus.io/download/) so that 'prometheus' and 'promtool' are on PATH." >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
# The package's postinst may try to start a system Prometheus on :9090; the tests run their own
# on a free 127.0.0.1 port, so forbid service starts during the install (as Docker images do).
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod +x "$policy"
  created_policy=1
fi
cleanup() { if [ "$created_policy" -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

apt-get update -qq
apt-get install -y -q --no-install-recommends prometheus

# A system service may still have been started (no policy-rc.d honoured, systemd present): stop it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
  systemctl stop prometheus || true
  systemctl disable prometheus || true
elif command -v service >/dev/null 2>&1; then
  service prometheus stop >/dev/null 2>&1 || true
fi

if have_all; then
  echo "installed: $(promtool --version 2>&1 | head -n1)"
  exit 0
fi
echo "the prometheus package was installed but prometheus/promtool are still not on PATH" >&2
exit 1
