#!/usr/bin/env bash
# stripe-mock (github.com/stripe/stripe-mock) for the backfill tests and for trying backfill locally.
#
#   eval "$(scripts/stripe-mock.sh up)"   # install when missing, start (or reuse), export the base
#   scripts/stripe-mock.sh status         # running or not, on which port (always exits 0)
#   scripts/stripe-mock.sh down           # stop what `up` started (by its pid file)
#   scripts/stripe-mock.sh env            # print the export without starting anything
#
# STDOUT of `up` is exactly one line:
#   export STRIPE_API_BASE=http://127.0.0.1:<port>
# Everything else (progress, errors) goes to STDERR. `up` is idempotent: a running stripe-mock
# started by this script is reused.
#
# Install: `go install github.com/stripe/stripe-mock@$STRIPE_MOCK_VERSION` with GOBIN in the
# state dir (outside the repository, nothing to .gitignore). Go is taken from PATH, else
# /usr/local/go/bin/go.
#
# Environment knobs:
#   STRIPE_MOCK_DIR       state dir (bin/, pid file, log)   [/var/tmp/stripe-ledger-stripe-mock]
#   STRIPE_MOCK_PORT      HTTP port on 127.0.0.1            [12111]
#   STRIPE_MOCK_HTTPS_PORT  its HTTPS listener, also 127.0.0.1  [STRIPE_MOCK_PORT + 1]
#   STRIPE_MOCK_VERSION   module version to install         [v0.203.0]
#   STRIPE_MOCK_START_TIMEOUT  bounded wait in seconds      [60]
set -euo pipefail

STATE_DIR="${STRIPE_MOCK_DIR:-/var/tmp/stripe-ledger-stripe-mock}"
PORT="${STRIPE_MOCK_PORT:-12111}"
HTTPS_PORT="${STRIPE_MOCK_HTTPS_PORT:-$((PORT + 1))}"
VERSION="${STRIPE_MOCK_VERSION:-v0.203.0}"
START_TIMEOUT="${STRIPE_MOCK_START_TIMEOUT:-60}"
BIN_DIR="$STATE_DIR/bin"
BIN="$BIN_DIR/stripe-mock"
PID_FILE="$STATE_DIR/stripe-mock.pid"
LOG_FILE="$STATE_DIR/stripe-mock.log"
VERSION_FILE="$BIN_DIR/.version"
BASE="http://127.0.0.1:$PORT"

say() { echo "stripe-mock.sh: $*" >&2; }
die() { say "error: $*"; exit 1; }

go_bin() {
    if command -v go >/dev/null 2>&1; then command -v go
    elif [ -x /usr/local/go/bin/go ]; then echo /usr/local/go/bin/go
    else die "no Go toolchain (go on PATH or /usr/local/go/bin/go) to install stripe-mock"
    fi
}

install() {
    if [ -x "$BIN" ] && [ "$(cat "$VERSION_FILE" 2>/dev/null)" = "$VERSION" ]; then
        return 0
    fi
    mkdir -p "$BIN_DIR"
    say "installing github.com/stripe/stripe-mock@$VERSION into $BIN_DIR (go install)"
    GOBIN="$BIN_DIR" GOFLAGS="${GOFLAGS:-} -mod=mod" "$(go_bin)" install \
        "github.com/stripe/stripe-mock@$VERSION" >&2 || die "go install failed"
    echo "$VERSION" >"$VERSION_FILE"
}

running_pid() {
    [ -f "$PID_FILE" ] || return 1
    local pid
    pid="$(cat "$PID_FILE")"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    # Only our own process: the pid must still run the stripe-mock binary of this state dir.
    [ "$(readlink "/proc/$pid/exe" 2>/dev/null || true)" = "$(readlink -f "$BIN")" ] || return 1
    echo "$pid"
}

answers() {
    # stripe-mock wants an API key of any shape; 200 on a list endpoint means "ready".
    curl -fsS -o /dev/null --max-time 2 -H "Authorization: Bearer sk_test_123" \
        "$BASE/v1/events?limit=1" 2>/dev/null
}

up() {
    install
    if running_pid >/dev/null && answers; then
        say "already running on $BASE (pid $(cat "$PID_FILE"))"
        echo "export STRIPE_API_BASE=$BASE"
        return 0
    fi
    if answers; then
        die "port $PORT already answers but not with our stripe-mock; set STRIPE_MOCK_PORT"
    fi
    mkdir -p "$STATE_DIR"
    say "starting stripe-mock on $BASE (log $LOG_FILE)"
    # Loopback only: -http-port would listen on every interface, and stripe-mock also starts an
    # HTTPS listener (on every interface unless told otherwise), so both get a loopback address.
    nohup "$BIN" -http-addr "127.0.0.1:$PORT" -https-addr "127.0.0.1:$HTTPS_PORT" \
        >"$LOG_FILE" 2>&1 </dev/null &
    echo $! >"$PID_FILE"
    local waited=0
    until answers; do
        if ! running_pid >/dev/null; then
            tail -20 "$LOG_FILE" >&2 || true
            die "stripe-mock exited during start"
        fi
        if [ "$waited" -ge $((START_TIMEOUT * 10)) ]; then
            die "stripe-mock did not answer on $BASE within ${START_TIMEOUT}s"
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
    say "ready on $BASE (pid $(cat "$PID_FILE"))"
    echo "export STRIPE_API_BASE=$BASE"
}

down() {
    local pid
    if pid="$(running_pid)"; then
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
        say "stopped (pid $pid)"
    else
        say "not running"
    fi
    rm -f "$PID_FILE"
}

status() {
    local pid
    if pid="$(running_pid)"; then
        say "running on $BASE (pid $pid)"
    else
        say "not running"
    fi
    return 0
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    env) echo "export STRIPE_API_BASE=$BASE" ;;
    *) echo "usage: $0 up | down | status | env" >&2; exit 2 ;;
esac
