#!/usr/bin/env bash
# Tools the test suite needs beyond Python packages, installed when missing (fresh machines, CI).
# - a compose implementation, so that docker-compose.yml is checked wherever the docker client is.
set -euo pipefail

have_compose() {
    { command -v docker >/dev/null && docker compose version >/dev/null 2>&1; } ||
        { command -v docker-compose >/dev/null && docker-compose version >/dev/null 2>&1; }
}

if command -v docker >/dev/null && ! have_compose; then
    echo "test-tools: installing docker-compose (Debian) to validate docker-compose.yml" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq docker-compose >/dev/null
fi

# - headless Chromium and its driver (Debian's), for the dashboard's browser tests: Selenium is
#   pointed at /usr/bin/chromedriver, since no driver or browser download works offline.
if ! command -v chromium >/dev/null || ! [ -x /usr/bin/chromedriver ]; then
    echo "test-tools: installing chromium and chromium-driver (Debian) for the browser tests" >&2
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
fi
