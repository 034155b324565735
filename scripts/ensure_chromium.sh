#!/usr/bin/env bash
# Make sure Debian's chromium and chromium-driver are installed: the portal's browser tests
# (tests/portal/test_browser.py) drive the real headless Chromium through Selenium.
# Fails loudly (non-zero exit) when they are missing and cannot be installed.
set -euo pipefail

if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then
    echo "chromium or chromium-driver is not installed; installing them with apt-get" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        SUDO="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update
    $SUDO apt-get install -y --no-install-recommends chromium chromium-driver
    if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ]; then
        echo "chromium or chromedriver is still missing after apt-get install" >&2
        exit 1
    fi
fi

# axe-core (npm) checks the pages' accessibility inside the browser; the test loads it from
# this local file (.cache/axe). Without npm, the accessibility test says so and skips axe.
AXE_DIR="$(cd "$(dirname "$0")/.." && pwd)/.cache/axe"
if [ ! -f "$AXE_DIR/node_modules/axe-core/axe.min.js" ] && command -v npm >/dev/null 2>&1; then
    echo "installing axe-core into $AXE_DIR" >&2
    npm install --silent --no-audit --no-fund --prefix "$AXE_DIR" axe-core@4 >&2 \
        || echo "axe-core could not be installed; the accessibility test will skip it" >&2
fi
