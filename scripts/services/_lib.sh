# shellcheck shell=bash
# Shared helpers for scripts/services/{opensearch,elasticsearch}.sh.
# Sourced, not executed. Callers set SVC_NAME before sourcing.

set -euo pipefail

SVC_CACHE_ROOT="${DOMAINRAG_SERVICES_CACHE:-$HOME/.cache/domainrag/services}"
SVC_USER="${DOMAINRAG_SERVICES_USER:-domainrag-svc}"
SVC_START_TIMEOUT="${DOMAINRAG_SERVICES_START_TIMEOUT:-240}"
SVC_STOP_TIMEOUT="${DOMAINRAG_SERVICES_STOP_TIMEOUT:-60}"
# shellcheck disable=SC2034 # used by the service scripts
SVC_HEAP="${DOMAINRAG_SERVICES_HEAP:-512m}"

svc_log() { printf '[%s] %s\n' "$SVC_NAME" "$*" >&2; }
svc_die() { printf '[%s] ERROR: %s\n' "$SVC_NAME" "$*" >&2; exit 1; }

svc_is_root() { [ "$(id -u)" -eq 0 ]; }

# --- Java -------------------------------------------------------------------

# Major version of a JDK home (from its `release` file, else by running java).
svc_java_major() {
    local home="$1" v=""
    if [ -r "$home/release" ]; then
        v="$(sed -n 's/^JAVA_VERSION="\([^"]*\)".*/\1/p' "$home/release" | head -n1)"
    fi
    if [ -z "$v" ] && [ -x "$home/bin/java" ]; then
        v="$("$home/bin/java" -XshowSettings:properties -version 2>&1 |
            sed -n 's/^ *java.specification.version = //p' | head -n1)"
    fi
    v="${v#1.}"
    v="${v%%[.+-]*}"
    case "$v" in '' | *[!0-9]*) echo 0 ;; *) echo "$v" ;; esac
}

# Print a JDK home with Java >= 21. DOMAINRAG_SERVICES_JAVA_HOME wins if set.
# Otherwise scan /usr/lib/jvm: prefer the newest in [21, 25] (versions both
# servers are tested on), else the newest above 25.
svc_pick_java() {
    if [ -n "${DOMAINRAG_SERVICES_JAVA_HOME:-}" ]; then
        [ -x "$DOMAINRAG_SERVICES_JAVA_HOME/bin/java" ] ||
            svc_die "DOMAINRAG_SERVICES_JAVA_HOME=$DOMAINRAG_SERVICES_JAVA_HOME has no bin/java"
        echo "$DOMAINRAG_SERVICES_JAVA_HOME"
        return
    fi
    local d m best="" best_m=0 hi="" hi_m=0
    for d in /usr/lib/jvm/*; do
        if [ ! -d "$d" ] || [ ! -x "$d/bin/java" ]; then continue; fi
        m="$(svc_java_major "$d")"
        [ "$m" -ge 21 ] || continue
        if [ "$m" -le 25 ]; then
            if [ "$m" -gt "$best_m" ]; then best="$d"; best_m="$m"; fi
        elif [ "$m" -gt "$hi_m" ]; then
            hi="$d"; hi_m="$m"
        fi
    done
    [ -n "$best" ] || best="$hi"
    [ -n "$best" ] || svc_die "no JDK >= 21 under /usr/lib/jvm (install one, e.g. apt-get install openjdk-21-jdk-headless, or set DOMAINRAG_SERVICES_JAVA_HOME)"
    readlink -f "$best"
}

# --- unprivileged user ---------------------------------------------------------

# OpenSearch / Elasticsearch refuse to run as root. When we are root, run the
# server as $SVC_USER (created if missing). Otherwise run as ourselves.
svc_ensure_user() {
    svc_is_root || return 0
    if ! id -u "$SVC_USER" >/dev/null 2>&1; then
        svc_log "creating system user $SVC_USER"
        useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$SVC_USER" ||
            svc_die "useradd $SVC_USER failed"
    fi
}

# The service user must be able to traverse every ancestor of the cache dir
# (e.g. /root is usually 0700). Add only the search (x) bit for "other" on the
# ancestors that lack it; this does not allow listing them.
svc_ensure_traversable() {
    svc_is_root || return 0
    local dir
    dir="$(readlink -f "$1")"
    while [ "$dir" != "/" ]; do
        dir="$(dirname "$dir")"
        if ! runuser -u "$SVC_USER" -- test -x "$dir" 2>/dev/null; then
            svc_log "granting traverse permission (o+x) on $dir so $SVC_USER can reach the cache"
            chmod o+x "$dir"
        fi
    done
}

svc_chown() {
    svc_is_root || return 0
    chown -R "$SVC_USER:$SVC_USER" "$@"
}

# Run a command as the service user (or as ourselves when not root).
svc_run_as() {
    if svc_is_root; then
        runuser -u "$SVC_USER" -- "$@"
    else
        "$@"
    fi
}

# --- downloads ------------------------------------------------------------------

# svc_fetch GROUP:ARTIFACT:VERSION:zip DEST_FILE
# Downloads through Maven's default repository (no host names here), caches the
# file at DEST_FILE, and prints the time taken. A cached file is reused.
svc_fetch() {
    local coord="$1" dest="$2"
    if [ -s "$dest" ]; then
        return 0
    fi
    command -v mvn >/dev/null 2>&1 ||
        svc_die "mvn not found (apt-get install maven); needed to download $coord"
    local dl_dir tmp t0 t1
    dl_dir="$(dirname "$dest")"
    mkdir -p "$dl_dir" "$SVC_CACHE_ROOT/m2"
    tmp="$(mktemp -d "$dl_dir/.fetch.XXXXXX")"
    t0="$(date +%s.%N)"
    svc_log "downloading $coord"
    if ! mvn -B -q dependency:copy \
        -Dartifact="$coord" \
        -DoutputDirectory="$tmp" \
        -Dmdep.overWriteReleases=true \
        -Dmaven.repo.local="$SVC_CACHE_ROOT/m2" >"$tmp/mvn.log" 2>&1; then
        tail -n 30 "$tmp/mvn.log" >&2
        rm -rf "$tmp"
        svc_die "download of $coord failed"
    fi
    local f
    f="$(find "$tmp" -maxdepth 1 -name '*.zip' | head -n1)"
    [ -n "$f" ] || { rm -rf "$tmp"; svc_die "download of $coord produced no zip"; }
    mv "$f" "$dest"
    rm -rf "$tmp"
    # drop the duplicate copy from the private maven repo (keep maven's own plugins)
    local g a v
    IFS=: read -r g a v _ <<<"$coord"
    rm -rf "$SVC_CACHE_ROOT/m2/${g//.//}/$a/$v"
    t1="$(date +%s.%N)"
    svc_log "downloaded $(basename "$dest") ($(du -h "$dest" | cut -f1)) in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}')s"
}

# Serialise start/stop/wipe of one service (parallel test jobs may race).
svc_lock() {
    mkdir -p "$1"
    exec 9>"$1/.lock"
    if command -v flock >/dev/null 2>&1; then
        flock -w "$((SVC_START_TIMEOUT + 600))" 9 || svc_die "could not lock $1/.lock"
    fi
}

# --- process handling -----------------------------------------------------------

# Print the pid from PIDFILE if it is alive and its command line mentions MARKER.
svc_live_pid() {
    local pidfile="$1" marker="$2" pid
    [ -s "$pidfile" ] || return 1
    pid="$(tr -dc '0-9' <"$pidfile")"
    [ -n "$pid" ] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker" || return 1
    echo "$pid"
}

# True if something listens on 127.0.0.1:PORT.
svc_port_busy() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

svc_rss_mib() {
    local kb
    kb="$(ps -o rss= -p "$1" 2>/dev/null | tr -d ' ')"
    [ -n "$kb" ] && echo $((kb / 1024)) || echo "?"
}

# svc_stop_pid PIDFILE MARKER
svc_stop_pid() {
    local pidfile="$1" marker="$2" pid i
    if ! pid="$(svc_live_pid "$pidfile" "$marker")"; then
        rm -f "$pidfile"
        svc_log "not running"
        return 0
    fi
    svc_log "stopping pid $pid"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < SVC_STOP_TIMEOUT * 4; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
        svc_log "pid $pid still alive after ${SVC_STOP_TIMEOUT}s, sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        for ((i = 0; i < 40; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
    fi
    rm -f "$pidfile"
    svc_log "stopped"
}

# Remember the current size of log files so that failures show only new lines.
SVC_LOG_MARKS=()
svc_mark_logs() {
    local f
    SVC_LOG_MARKS=()
    for f in "$@"; do
        SVC_LOG_MARKS+=("$(stat -c %s "$f" 2>/dev/null || echo 0):$f")
    done
}

# Same, but failures show the end of the whole files.
svc_mark_logs_whole() {
    local f
    SVC_LOG_MARKS=()
    for f in "$@"; do
        SVC_LOG_MARKS+=("0:$f")
    done
}

# Print the last lines written to the marked logs since svc_mark_logs.
svc_dump_logs() {
    local m f off tail_text
    for m in "${SVC_LOG_MARKS[@]}"; do
        off="${m%%:*}"
        f="${m#*:}"
        [ -s "$f" ] || continue
        tail_text="$(tail -c +"$((off + 1))" "$f" | tail -n 40)"
        [ -n "$tail_text" ] || continue
        printf -- '--- tail of %s ---\n%s\n' "$f" "$tail_text" >&2
    done
}

# svc_wait_health URL PIDFILE MARKER
# Poll URL/_cluster/health until yellow/green. On timeout or early death print
# the tail of the logs marked by svc_mark_logs and fail.
svc_wait_health() {
    local url="$1" pidfile="$2" marker="$3"
    local t_start=$SECONDS deadline=$((SECONDS + SVC_START_TIMEOUT)) body
    while ((SECONDS < deadline)); do
        body="$(curl -s --max-time 5 "$url/_cluster/health?wait_for_status=yellow&timeout=2s" 2>/dev/null || true)"
        case "$body" in
        *'"status":"green"'* | *'"status":"yellow"'*) return 0 ;;
        esac
        if ! svc_live_pid "$pidfile" "$marker" >/dev/null; then
            # the pid file may not be written yet right after launch
            if ((SECONDS - t_start > 20)) || [ -s "$pidfile" ]; then
                svc_dump_logs
                svc_die "server process exited during startup (log tail above)"
            fi
        fi
        sleep 1
    done
    svc_dump_logs
    svc_die "not healthy (yellow/green) at $url within ${SVC_START_TIMEOUT}s (log tail above; server left running, use '$0 stop')"
}
