#!/usr/bin/env bash
# Make sure `promtool` (Debian's prometheus package) is installed: tests/deploy/test_manifests.py
# checks and unit-tests deploy/prometheus/quorum.rules.yaml with it (`promtool check rules`,
# `promtool test rules`). Fails loudly (non-zero exit) when it is missing and cannot be installed.
set -euo pipefail

if command -v promtool >/dev/null 2>&1; then
    exit 0
fi
echo "promtool is not installed; installing Debian's prometheus package with apt-get" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends prometheus
if ! command -v promtool >/dev/null 2>&1; then
    echo "promtool is still missing after apt-get install" >&2
    exit 1
fi
