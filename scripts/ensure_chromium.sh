#!/usr/bin/env bash
# Make sure Debian's chromium and chromium-driver are installed: the portal's browser tests
# (tests/portal/test_browser.py) drive the real headless Chromium through Selenium.
# Fails loudly (non-zero exit) when they are missing and cannot be installed.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
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
