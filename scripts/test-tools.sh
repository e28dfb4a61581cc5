#!/usr/bin/env bash
# Tools the test suite needs beyond Python packages, installed when missing (fresh machines, CI).
# - a compose implementation, so that docker-compose.yml is checked wherever the docker client is.
# - hledger (Debian), whose `hledger check` validates `stripe-ledger export --format hledger`
#   (bean-check comes with the beancount package of the [test] extra).
set -euo pipefail

have_compose() {
    { command -v docker >/dev/null && docker compose version >/dev/null 2>&1; } ||
        { command -v docker-compose >/dev/null && docker-compose version >/dev/null 2>&1; }
}

if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
UPDATED=0
apt_install() {  # apt-get update once, then install the named Debian packages quietly
    if [ "$UPDATED" -eq 0 ]; then
        $SUDO apt-get update -qq >/dev/null
        UPDATED=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

if command -v docker >/dev/null && ! have_compose; then
    echo "test-tools: installing docker-compose (Debian) to validate docker-compose.yml" >&2
    apt_install docker-compose
fi
if ! command -v hledger >/dev/null; then
    echo "test-tools: installing hledger (Debian) to validate the hledger export" >&2
    apt_install hledger
fi

# - headless Chromium and its driver (Debian's), for the dashboard's browser tests: Selenium is
#   pointed at /usr/bin/chromedriver, since no driver or browser download works offline.
if ! command -v chromium >/dev/null || ! [ -x /usr/bin/chromedriver ]; then
    echo "test-tools: installing chromium and chromium-driver (Debian) for the browser tests" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
