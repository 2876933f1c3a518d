#!/usr/bin/env bash
# Toxiproxy (a TCP fault proxy) for the fault-injection tests.
#
#   scripts/services/toxiproxy.sh build     build once (go install, pinned) and print the binary path
#
# The tests start the binary themselves on a free loopback port for one test session and stop it
# at the end; they drive it through its HTTP API (proxies, toxics). The binary is cached outside
# the repository like the S3 server's.
#
# Environment:
#   DOMAINRAG_SERVICES_CACHE  cache root (default: $HOME/.cache/domainrag/services)
set -euo pipefail

MODULE="github.com/Shopify/toxiproxy/v2"
VERSION="v2.5.0"
CACHE_DIR="${DOMAINRAG_SERVICES_CACHE:-$HOME/.cache/domainrag/services}"
BIN_DIR="$CACHE_DIR/bin"
BIN="$BIN_DIR/toxiproxy-server"
STAMP="$BIN_DIR/toxiproxy.version"

log() { printf 'toxiproxy.sh: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

build() {
    if [[ -x "$BIN" && -f "$STAMP" && "$(cat "$STAMP")" == "$VERSION" ]]; then
        printf '%s\n' "$BIN"
        return 0
    fi
    command -v go >/dev/null 2>&1 || die "Go toolchain not found; install Go to build toxiproxy $VERSION"
    mkdir -p "$BIN_DIR"
    log "building toxiproxy $VERSION into $BIN_DIR ..."
    local tmp
    tmp="$(mktemp -d)"
    GOBIN="$tmp" go install "$MODULE/cmd/server@$VERSION" || die "go install $MODULE/cmd/server@$VERSION failed"
    mv "$tmp/server" "$BIN"
    rmdir "$tmp"
    printf '%s\n' "$VERSION" >"$STAMP"
    printf '%s\n' "$BIN"
}

case "${1:-}" in
    build) build ;;
    *) echo "usage: $0 build" >&2; exit 2 ;;
esac
