#!/usr/bin/env bash
# Single-node Elasticsearch (integ-test distribution, plain http, no security)
# on 127.0.0.1 for integration tests.
# Usage: scripts/services/elasticsearch.sh {start|stop|status|url|wipe}
# See scripts/services/README.md.
# shellcheck disable=SC2034 # used by _lib.sh
SVC_NAME=elasticsearch
# shellcheck source=_lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

ES_VERSION=9.5.4
ES_CORE_COORD="org.elasticsearch.distribution.integ-test-zip:elasticsearch:${ES_VERSION}:zip"

ES_HTTP_PORT="${DOMAINRAG_ELASTICSEARCH_PORT:-19201}"
ES_TRANSPORT_PORT="${DOMAINRAG_ELASTICSEARCH_TRANSPORT_PORT:-19301}"
ES_URL="http://127.0.0.1:${ES_HTTP_PORT}"

ES_DIR="$SVC_CACHE_ROOT/elasticsearch"
ES_HOME="$ES_DIR/elasticsearch-${ES_VERSION}"
ES_DATA="$ES_DIR/data-${ES_VERSION}"
ES_LOGS="$ES_DIR/logs"
ES_RUN="$ES_DIR/run"
ES_PIDFILE="$ES_RUN/elasticsearch.pid"
ES_CONSOLE="$ES_LOGS/console.log"
ES_CLUSTER="domainrag-test-es"
ES_MARKER="$ES_HOME/"

es_install() {
    local stamp="$ES_VERSION"
    if [ -f "$ES_HOME/.domainrag-installed" ] && [ "$(cat "$ES_HOME/.domainrag-installed")" = "$stamp" ]; then
        return 0
    fi
    local dl="$ES_DIR/downloads" t0=$SECONDS
    svc_fetch "$ES_CORE_COORD" "$dl/elasticsearch-${ES_VERSION}.zip"
    svc_log "unpacking Elasticsearch $ES_VERSION into $ES_HOME"
    rm -rf "$ES_HOME" "$ES_HOME.tmp"
    mkdir -p "$ES_HOME.tmp"
    unzip -q "$dl/elasticsearch-${ES_VERSION}.zip" -d "$ES_HOME.tmp"
    mv "$ES_HOME.tmp/elasticsearch-${ES_VERSION}" "$ES_HOME"
    rm -rf "$ES_HOME.tmp"
    echo "$stamp" >"$ES_HOME/.domainrag-installed"
    svc_log "installed in $((SECONDS - t0))s (incl. download)"
}

es_write_config() {
    cat >"$ES_HOME/config/elasticsearch.yml" <<EOF
# Written by scripts/services/elasticsearch.sh; regenerated on every start.
cluster.name: $ES_CLUSTER
node.name: domainrag-es-1
network.host: 127.0.0.1
http.port: $ES_HTTP_PORT
transport.port: $ES_TRANSPORT_PORT
discovery.type: single-node
path.data: $ES_DATA
path.logs: $ES_LOGS
cluster.routing.allocation.disk.threshold_enabled: false
xpack.security.enabled: false
action.destructive_requires_name: false
EOF
}

es_start() {
    local pid java_home
    if pid="$(svc_live_pid "$ES_PIDFILE" "$ES_MARKER")"; then
        svc_mark_logs_whole "$ES_CONSOLE" "$ES_LOGS/$ES_CLUSTER.log"
        svc_wait_health "$ES_URL" "$ES_PIDFILE" "$ES_MARKER"
        svc_log "already running (pid $pid) at $ES_URL"
        return 0
    fi
    if svc_port_busy "$ES_HTTP_PORT"; then
        svc_die "port $ES_HTTP_PORT is in use by another process (not ours); stop it or set DOMAINRAG_ELASTICSEARCH_PORT"
    fi
    if svc_port_busy "$ES_TRANSPORT_PORT"; then
        svc_die "transport port $ES_TRANSPORT_PORT is in use; set DOMAINRAG_ELASTICSEARCH_TRANSPORT_PORT"
    fi
    java_home="$(svc_pick_java)"
    svc_ensure_user
    mkdir -p "$ES_DIR"
    svc_ensure_traversable "$ES_DIR"
    es_install
    es_write_config
    mkdir -p "$ES_DATA" "$ES_LOGS" "$ES_RUN"
    rm -f "$ES_PIDFILE"
    svc_chown "$ES_HOME" "$ES_DATA" "$ES_LOGS" "$ES_RUN"
    svc_log "starting Elasticsearch $ES_VERSION (java $(svc_java_major "$java_home"): $java_home) on $ES_URL"
    local t0=$SECONDS
    : >"$ES_CONSOLE"
    svc_mark_logs "$ES_CONSOLE" "$ES_LOGS/$ES_CLUSTER.log"
    svc_run_as env -u JAVA_HOME \
        ES_JAVA_HOME="$java_home" \
        ES_PATH_CONF="$ES_HOME/config" \
        ES_JAVA_OPTS="-Xms$SVC_HEAP -Xmx$SVC_HEAP ${DOMAINRAG_ELASTICSEARCH_JAVA_OPTS:-}" \
        "$ES_HOME/bin/elasticsearch" -d -p "$ES_PIDFILE" >>"$ES_CONSOLE" 2>&1 </dev/null 9>&- ||
        {
            svc_dump_logs
            svc_die "bin/elasticsearch failed to start"
        }
    svc_wait_health "$ES_URL" "$ES_PIDFILE" "$ES_MARKER"
    pid="$(svc_live_pid "$ES_PIDFILE" "$ES_MARKER")"
    svc_log "up in $((SECONDS - t0))s: pid $pid, RSS $(svc_rss_mib "$pid") MiB, $ES_URL"
}

es_status() {
    local pid health
    if pid="$(svc_live_pid "$ES_PIDFILE" "$ES_MARKER")"; then
        health="$(curl -s --max-time 5 "$ES_URL/_cluster/health" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')"
        echo "running pid=$pid url=$ES_URL health=${health:-unreachable} rss_mib=$(svc_rss_mib "$pid") version=$ES_VERSION"
        return 0
    fi
    echo "stopped"
    return 3
}

case "${1:-}" in
start | stop | wipe) svc_lock "$ES_DIR" ;;
esac
case "${1:-}" in
start) es_start ;;
stop) svc_stop_pid "$ES_PIDFILE" "$ES_MARKER" ;;
status) es_status ;;
url) echo "$ES_URL" ;;
wipe)
    svc_stop_pid "$ES_PIDFILE" "$ES_MARKER"
    rm -rf "$ES_DATA"
    svc_log "data dir removed"
    ;;
*)
    echo "usage: $0 {start|stop|status|url|wipe}" >&2
    exit 2
    ;;
esac
