#!/usr/bin/env sh
# Install headless Chromium and its chromedriver (Debian/Ubuntu packages) for the browser test
# (tests/test_web_page.py). Idempotent: returns at once when both are already installed.
#
#   scripts/install-browser.sh          # as root, or with sudo available
set -eu

have() { command -v "$1" >/dev/null 2>&1; }

if have chromium && have chromedriver; then
    echo "install-browser: $(chromedriver --version 2>/dev/null | head -n 1) already installed"
    exit 0
fi

if ! have apt-get; then
    echo "install-browser: no apt-get here; install chromium and chromedriver yourself" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if have sudo; then
        SUDO="sudo"
    else
        echo "install-browser: need root or sudo to install packages" >&2
        exit 1
    fi
fi

# Debian names the driver package chromium-driver; Ubuntu's chromium is a snap, so on Ubuntu
# prefer a Debian-based image (or install Google Chrome + a matching chromedriver yourself).
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    chromium chromium-driver fonts-dejavu-core

have chromium && have chromedriver || {
    echo "install-browser: chromium or chromedriver still missing after apt-get" >&2
    exit 1
}
echo "install-browser: installed $(chromedriver --version | head -n 1)"
