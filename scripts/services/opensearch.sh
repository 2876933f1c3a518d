#!/usr/bin/env bash
# Single-node OpenSearch (+ k-NN, neural-search) on 127.0.0.1 for integration tests.
# Usage: scripts/services/opensearch.sh {start|stop|status|url|wipe}
# See scripts/services/README.md.
# shellcheck disable=SC2034 # used by _lib.sh
SVC_NAME=opensearch
# shellcheck source=_lib.sh source-path=SCRIPTDIR
. "$(dirname "${BASH_SOURCE[0]}")/_lib.sh"

# Pinned versions: plugins must match the core version exactly.
OS_VERSION=3.6.0
OS_PLUGIN_VERSION=3.6.0.0
OS_CORE_COORD="org.opensearch.distribution.integ-test-zip:opensearch:${OS_VERSION}:zip"
# Install order matters: ml-plugin extends job-scheduler, neural-search extends k-NN/ml.
# "name=artifactId" pairs (groupId org.opensearch.plugin).
OS_PLUGINS_ALL="job-scheduler=opensearch-job-scheduler ml=opensearch-ml-plugin knn=opensearch-knn neural=neural-search"
# Which plugins to install. knn: knn_vector + knn query (Lucene engine only, see
# README: the Maven k-NN zip ships no native faiss/nmslib libraries).
# neural: `hybrid` query, normalization-processor / score-ranker-processor
# search pipelines (needs knn only). ml: ml-commons (+ job-scheduler), 385 MB,
# only needed for model-backed features (neural query, ingest embeddings).
OS_PLUGINS="${DOMAINRAG_OPENSEARCH_PLUGINS:-knn neural}"
case " $OS_PLUGINS " in *" ml "*) OS_PLUGINS="job-scheduler $OS_PLUGINS" ;; esac
case " $OS_PLUGINS " in *" neural "*) OS_PLUGINS="knn $OS_PLUGINS" ;; esac
# Guard against native-engine k-NN indices killing the node (see README).
OS_FAISS_GUARD="${DOMAINRAG_OPENSEARCH_FAISS_GUARD:-1}"

OS_HTTP_PORT="${DOMAINRAG_OPENSEARCH_PORT:-19200}"
OS_TRANSPORT_PORT="${DOMAINRAG_OPENSEARCH_TRANSPORT_PORT:-19300}"
OS_URL="http://127.0.0.1:${OS_HTTP_PORT}"

OS_DIR="$SVC_CACHE_ROOT/opensearch"
OS_HOME="$OS_DIR/opensearch-${OS_VERSION}"
OS_DATA="$OS_DIR/data-${OS_VERSION}"
OS_LOGS="$OS_DIR/logs"
OS_RUN="$OS_DIR/run"
OS_PIDFILE="$OS_RUN/opensearch.pid"
OS_CONSOLE="$OS_LOGS/console.log"
OS_CLUSTER="domainrag-test-os"
OS_MARKER="$OS_HOME/"

os_wanted_plugins() {
    local pair name want
    for pair in $OS_PLUGINS_ALL; do
        name="${pair%%=*}"
        for want in $OS_PLUGINS; do
            if [ "$want" = "$name" ]; then
                echo "$pair"
                break
            fi
        done
    done
}

os_install() {
    local java_home="$1" want stamp
    want="$(os_wanted_plugins | tr '\n' ' ')"
    stamp="$OS_VERSION plugins: $want"
    if [ -f "$OS_HOME/.domainrag-installed" ] && [ "$(cat "$OS_HOME/.domainrag-installed")" = "$stamp" ]; then
        return 0
    fi
    local dl="$OS_DIR/downloads" pair name art zip tmp t0
    t0=$SECONDS
    svc_fetch "$OS_CORE_COORD" "$dl/opensearch-${OS_VERSION}.zip"
    for pair in $want; do
        art="${pair#*=}"
        svc_fetch "org.opensearch.plugin:${art}:${OS_PLUGIN_VERSION}:zip" "$dl/${art}-${OS_PLUGIN_VERSION}.zip"
    done
    svc_log "unpacking OpenSearch $OS_VERSION into $OS_HOME"
    rm -rf "$OS_HOME" "$OS_HOME.tmp"
    mkdir -p "$OS_HOME.tmp"
    unzip -q "$dl/opensearch-${OS_VERSION}.zip" -d "$OS_HOME.tmp"
    tmp="$OS_HOME.tmp/opensearch-${OS_VERSION}"
    for pair in $want; do
        art="${pair#*=}"
        zip="$dl/${art}-${OS_PLUGIN_VERSION}.zip"
        svc_log "installing plugin $art"
        OPENSEARCH_JAVA_HOME="$java_home" JAVA_HOME="$java_home" \
            "$tmp/bin/opensearch-plugin" install --batch "file://$zip" >"$OS_DIR/plugin-install.log" 2>&1 || {
            tail -n 30 "$OS_DIR/plugin-install.log" >&2
            svc_die "installing plugin $art failed"
        }
    done
    mv "$tmp" "$OS_HOME"
    rm -rf "$OS_HOME.tmp"
    echo "$stamp" >"$OS_HOME/.domainrag-installed"
    svc_log "installed in $((SECONDS - t0))s (incl. downloads)"
}

os_write_config() {
    cat >"$OS_HOME/config/opensearch.yml" <<EOF
# Written by scripts/services/opensearch.sh; regenerated on every start.
cluster.name: $OS_CLUSTER
node.name: domainrag-os-1
network.host: 127.0.0.1
http.port: $OS_HTTP_PORT
transport.port: $OS_TRANSPORT_PORT
discovery.type: single-node
path.data: $OS_DATA
path.logs: $OS_LOGS
cluster.routing.allocation.disk.threshold_enabled: false
action.auto_create_index: true
EOF
}

# The k-NN zip on Maven has no JNI libraries, so building a faiss/nmslib graph
# (engine faiss is the default when a knn_vector mapping has no method) throws
# UnsatisfiedLinkError and the node exits. A low-order legacy template sets
# index.knn.advanced.approximate_threshold=-1 on every new index: native engines
# then skip graph building and answer knn queries by exact search (correct
# results, no crash). The Lucene engine is unaffected. An index may override it.
os_apply_guard() {
    local tpl="$OS_URL/_template/domainrag-knn-native-guard"
    if [ "$OS_FAISS_GUARD" = "1" ] && [ -d "$OS_HOME/plugins/opensearch-knn" ]; then
        curl -sf --max-time 30 -XPUT "$tpl" -H 'Content-Type: application/json' \
            -d '{"index_patterns":["*"],"order":-1000,"settings":{"index.knn.advanced.approximate_threshold":-1}}' \
            >/dev/null || svc_die "could not install the k-NN native-engine guard template"
    else
        curl -s --max-time 30 -XDELETE "$tpl" >/dev/null || true
    fi
}

os_start() {
    local pid java_home
    if pid="$(svc_live_pid "$OS_PIDFILE" "$OS_MARKER")"; then
        svc_mark_logs_whole "$OS_CONSOLE" "$OS_LOGS/$OS_CLUSTER.log"
        svc_wait_health "$OS_URL" "$OS_PIDFILE" "$OS_MARKER"
        svc_log "already running (pid $pid) at $OS_URL"
        return 0
    fi
    if svc_port_busy "$OS_HTTP_PORT"; then
        svc_die "port $OS_HTTP_PORT is in use by another process (not ours); stop it or set DOMAINRAG_OPENSEARCH_PORT"
    fi
    if svc_port_busy "$OS_TRANSPORT_PORT"; then
        svc_die "transport port $OS_TRANSPORT_PORT is in use; set DOMAINRAG_OPENSEARCH_TRANSPORT_PORT"
    fi
    java_home="$(svc_pick_java)"
    svc_ensure_user
    mkdir -p "$OS_DIR"
    svc_ensure_traversable "$OS_DIR"
    os_install "$java_home"
    os_write_config
    mkdir -p "$OS_DATA" "$OS_LOGS" "$OS_RUN"
    rm -f "$OS_PIDFILE"
    svc_chown "$OS_HOME" "$OS_DATA" "$OS_LOGS" "$OS_RUN"
    svc_log "starting OpenSearch $OS_VERSION (java $(svc_java_major "$java_home"): $java_home) on $OS_URL"
    # k-NN looks for its JNI libraries here (the Maven zip ships none; see README)
    local t0=$SECONDS knn_lib="$OS_HOME/plugins/opensearch-knn/lib"
    : >"$OS_CONSOLE"
    svc_mark_logs "$OS_CONSOLE" "$OS_LOGS/$OS_CLUSTER.log"
    svc_run_as env -u JAVA_HOME \
        OPENSEARCH_JAVA_HOME="$java_home" \
        OPENSEARCH_PATH_CONF="$OS_HOME/config" \
        OPENSEARCH_JAVA_OPTS="-Xms$SVC_HEAP -Xmx$SVC_HEAP ${DOMAINRAG_OPENSEARCH_JAVA_OPTS:-}" \
        LD_LIBRARY_PATH="$knn_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        "$OS_HOME/bin/opensearch" -d -p "$OS_PIDFILE" >>"$OS_CONSOLE" 2>&1 </dev/null 9>&- ||
        {
            svc_dump_logs
            svc_die "bin/opensearch failed to launch"
        }
    svc_wait_health "$OS_URL" "$OS_PIDFILE" "$OS_MARKER"
    os_apply_guard
    pid="$(svc_live_pid "$OS_PIDFILE" "$OS_MARKER")"
    svc_log "up in $((SECONDS - t0))s: pid $pid, RSS $(svc_rss_mib "$pid") MiB, $OS_URL"
}

os_status() {
    local pid health
    if pid="$(svc_live_pid "$OS_PIDFILE" "$OS_MARKER")"; then
        health="$(curl -s --max-time 5 "$OS_URL/_cluster/health" | sed -n 's/.*"status":"\([a-z]*\)".*/\1/p')"
        echo "running pid=$pid url=$OS_URL health=${health:-unreachable} rss_mib=$(svc_rss_mib "$pid") version=$OS_VERSION"
        return 0
    fi
    echo "stopped"
    return 3
}

case "${1:-}" in
start | stop | wipe) svc_lock "$OS_DIR" ;;
esac
case "${1:-}" in
start) os_start ;;
stop) svc_stop_pid "$OS_PIDFILE" "$OS_MARKER" ;;
status) os_status ;;
url) echo "$OS_URL" ;;
wipe)
    svc_stop_pid "$OS_PIDFILE" "$OS_MARKER"
    rm -rf "$OS_DATA"
    svc_log "data dir removed"
    ;;
*)
    echo "usage: $0 {start|stop|status|url|wipe}" >&2
    exit 2
    ;;
esac
