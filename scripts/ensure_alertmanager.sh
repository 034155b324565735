#!/usr/bin/env bash
# Make sure Debian's prometheus-alertmanager is installed: the Alertmanager integration test
# (tests/integration/test_alertmanager.py, marker `slow`) runs the real thing on loopback.
# Fails loudly (non-zero exit) when it is missing and cannot be installed.
set -euo pipefail

if command -v prometheus-alertmanager >/dev/null 2>&1 || [ -x /usr/bin/prometheus-alertmanager ]; then
    exit 0
fi
echo "prometheus-alertmanager is not installed; installing it with apt-get" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends prometheus-alertmanager
if ! [ -x /usr/bin/prometheus-alertmanager ] && ! command -v prometheus-alertmanager >/dev/null; then
    echo "prometheus-alertmanager is still missing after apt-get install" >&2
    exit 1
fi
