#!/usr/bin/env bash
# Local S3-compatible server for integration tests (versitygw, posix backend).
#
#   scripts/services/s3.sh {start|stop|restart|status|url|env|build|reset}
#
# The server binary is built from source with the Go toolchain (go install,
# pinned version) and cached outside the repository, together with the data
# directory, pid file and log file. See scripts/services/S3.md.
#
# Environment:
#   DOMAINRAG_SERVICES_CACHE  cache root (default: $HOME/.cache/domainrag/services)
#   DOMAINRAG_S3_ACCESS_KEY   root access key (default: domainrag)
#   DOMAINRAG_S3_SECRET_KEY   root secret key (default: domainrag-secret-key)
#   DOMAINRAG_S3_PORT         listen port on 127.0.0.1 (default: 19000)
#   DOMAINRAG_S3_START_TIMEOUT seconds to wait for readiness (default: 30)
set -euo pipefail

VGW_MODULE="github.com/versity/versitygw"
VGW_VERSION="v1.8.0"

CACHE_DIR="${DOMAINRAG_SERVICES_CACHE:-$HOME/.cache/domainrag/services}"
BIN_DIR="$CACHE_DIR/bin"
BIN="$BIN_DIR/versitygw"
BIN_STAMP="$BIN_DIR/versitygw.version"
STATE_DIR="$CACHE_DIR/s3"
DATA_DIR="$STATE_DIR/data"
IAM_DIR="$STATE_DIR/iam"
PID_FILE="$STATE_DIR/s3.pid"
LOG_FILE="$STATE_DIR/s3.log"
CREDS_FILE="$STATE_DIR/s3.creds.sha256"
LOCK_FILE="$STATE_DIR/s3.lock"

HOST="127.0.0.1"
PORT="${DOMAINRAG_S3_PORT:-19000}"
URL="http://$HOST:$PORT"
ACCESS_KEY="${DOMAINRAG_S3_ACCESS_KEY:-domainrag}"
SECRET_KEY="${DOMAINRAG_S3_SECRET_KEY:-domainrag-secret-key}"
REGION="us-east-1"
START_TIMEOUT="${DOMAINRAG_S3_START_TIMEOUT:-30}"

log() { printf 's3.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

creds_fingerprint() {
    printf '%s:%s:%s' "$ACCESS_KEY" "$SECRET_KEY" "$PORT" | sha256sum | cut -d' ' -f1
}

# Prints the pid of our running server, or returns 1.
running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    # Guard against pid reuse: the process must be our binary.
    if [[ -r "/proc/$pid/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$BIN" || return 1
    fi
    printf '%s\n' "$pid"
}

# True if something answers HTTP on the port (any status code counts).
answers() {
    local code
    code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$URL/" 2>/dev/null || true)"
    [[ -n "$code" && "$code" != "000" ]]
}

port_in_use() {
    if command -v ss >/dev/null 2>&1; then
        ss -Hltn "sport = :$PORT" 2>/dev/null | grep -q .
    else
        answers
    fi
}

build() {
    if [[ -x "$BIN" && -f "$BIN_STAMP" && "$(cat "$BIN_STAMP")" == "$VGW_VERSION" ]]; then
        return 0
    fi
    command -v go >/dev/null 2>&1 || die "Go toolchain not found; install Go >= 1.25 to build versitygw $VGW_VERSION"
    mkdir -p "$BIN_DIR"
    log "building versitygw $VGW_VERSION into $BIN_DIR (cold build takes ~2.5 min on 2 cores)..."
    local start=$SECONDS
    # GOPATH/GOMODCACHE/GOCACHE stay at their defaults so caches are reused.
    (
        cd "$BIN_DIR"
        GOBIN="$BIN_DIR" go install \
            -ldflags "-X main.Version=$VGW_VERSION -X main.Build=go-install -X main.BuildTime=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
            "$VGW_MODULE/cmd/versitygw@$VGW_VERSION"
    ) || die "go install $VGW_MODULE/cmd/versitygw@$VGW_VERSION failed"
    printf '%s\n' "$VGW_VERSION" >"$BIN_STAMP"
    log "built versitygw $VGW_VERSION in $((SECONDS - start))s"
}

start() {
    mkdir -p "$STATE_DIR"
    local pid
    if pid="$(running_pid)"; then
        if [[ -f "$CREDS_FILE" && "$(cat "$CREDS_FILE")" != "$(creds_fingerprint)" ]]; then
            die "server already running (pid $pid) with different credentials/port; run '$0 stop' first"
        fi
        if answers; then
            log "already running (pid $pid) at $URL"
            return 0
        fi
        log "pid $pid exists but $URL does not answer; waiting..."
    else
        rm -f "$PID_FILE"
        if port_in_use; then
            die "port $PORT is already in use by another process (not started by this script)"
        fi
        build
        mkdir -p "$DATA_DIR" "$IAM_DIR"
        : >"$LOG_FILE"
        # Credentials go through the environment, not argv (not visible in ps).
        ROOT_ACCESS_KEY_ID="$ACCESS_KEY" ROOT_SECRET_ACCESS_KEY="$SECRET_KEY" \
            setsid "$BIN" \
            --port "$HOST:$PORT" \
            --region "$REGION" \
            --iam-dir "$IAM_DIR" \
            --quiet \
            posix "$DATA_DIR" \
            </dev/null >>"$LOG_FILE" 2>&1 9>&- &
        pid=$!
        printf '%s\n' "$pid" >"$PID_FILE"
        creds_fingerprint >"$CREDS_FILE"
    fi

    local deadline=$((SECONDS + START_TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            rm -f "$PID_FILE"
            log "server process exited during startup; last log lines ($LOG_FILE):"
            tail -n 30 "$LOG_FILE" >&2 || true
            exit 1
        fi
        if answers; then
            log "started versitygw $VGW_VERSION (pid $pid) at $URL, data in $DATA_DIR"
            return 0
        fi
        sleep 0.2
    done
    log "server did not answer at $URL within ${START_TIMEOUT}s; last log lines ($LOG_FILE):"
    tail -n 30 "$LOG_FILE" >&2 || true
    stop_pid "$pid"
    exit 1
}

stop_pid() {
    local pid="$1" i
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not exit after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 50; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
    fi
    rm -f "$PID_FILE"
}

stop() {
    local pid
    if pid="$(running_pid)"; then
        stop_pid "$pid"
        log "stopped (pid $pid)"
    else
        rm -f "$PID_FILE"
        log "not running"
    fi
}

status() {
    local pid
    if pid="$(running_pid)"; then
        if answers; then
            echo "running pid=$pid url=$URL version=$VGW_VERSION data=$DATA_DIR log=$LOG_FILE"
            return 0
        fi
        echo "unhealthy pid=$pid url=$URL (process alive, not answering) log=$LOG_FILE"
        return 1
    fi
    echo "stopped"
    return 3
}

print_env() {
    cat <<EOF
export AWS_ACCESS_KEY_ID=$ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$SECRET_KEY
export AWS_ENDPOINT_URL=$URL
export AWS_DEFAULT_REGION=$REGION
EOF
}

# Delete all data (buckets, objects, IAM accounts). Server must be stopped.
reset() {
    if running_pid >/dev/null; then
        die "server is running; run '$0 stop' first"
    fi
    rm -rf "$DATA_DIR" "$IAM_DIR" "$LOG_FILE" "$CREDS_FILE"
    log "removed data under $STATE_DIR"
}

with_lock() {
    mkdir -p "$STATE_DIR"
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$LOCK_FILE"
        flock -w 600 9 || die "could not acquire $LOCK_FILE"
    fi
    "$@"
}

case "${1:-}" in
    start) with_lock start ;;
    stop) with_lock stop ;;
    restart) with_lock stop && with_lock start ;;
    status) status ;;
    url) echo "$URL" ;;
    env) print_env ;;
    build) with_lock build ;;
    reset) with_lock reset ;;
    *)
        echo "usage: $0 {start|stop|restart|status|url|env|build|reset}" >&2
        exit 2
        ;;
esac
