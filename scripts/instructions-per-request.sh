#!/usr/bin/env bash
# User-space instructions each server spends per request, counted with
# valgrind's callgrind (a figure that does not move with the load of a shared
# machine), for this workspace's HTTP, FastCGI and SCGI servers and a bare
# hyper server answering the same `Hello, world!` (examples/instructions.rs).
#
# Each server runs under callgrind, serves N requests from a client process
# that is not measured, and exits; it is run with N = BASE and N = 2 * BASE,
# and the difference of the two totals divided by BASE is the figure per
# request, with start-up and shutdown cancelled out. HTTP and FastCGI use one
# keep-alive connection (as nginx with keep-alive to its upstream); SCGI one
# connection per request, its only mode; `fastcgi-close` FastCGI with a
# connection per request (nginx's default, without fastcgi_keep_conn). Requests carry what nginx sends
# (fastcgi_params, scgi_params) or a browser-sized header (HTTP).
#
# The peer for every line is bare hyper: for HTTP the same server without the
# gateway; for FastCGI, the backend behind nginx that a reverse proxy
# (proxy_pass to hyper, keep-alive) would have; for SCGI and fastcgi-close,
# bare hyper with a connection per request (`Connection: close`). Bare hyper
# accepts and serves each connection on a task of its own, as hyper's own
# server examples (and any real server) do.
#
# Usage: scripts/instructions-per-request.sh [KIND...]
#   KIND: http, fastcgi, fastcgi-close, scgi (default: http fastcgi scgi)
#   BASE=N    requests of the smaller run (default 1000)
#   CARGO_TARGET_DIR is honoured by the build, as usual.
# Needs valgrind and python3.
set -euo pipefail

die() { echo "instructions-per-request: error: $*" >&2; exit 1; }
BASE=${BASE:-1000}
[[ "$BASE" =~ ^[0-9]+$ ]] && [ "$BASE" -ge 1 ] || die "BASE must be a positive number, got '$BASE'"
KINDS=("$@")
[ ${#KINDS[@]} -gt 0 ] || KINDS=(http fastcgi scgi)
for k in "${KINDS[@]}"; do
    case "$k" in http | fastcgi | fastcgi-close | scgi) ;; *) die "unknown kind '$k' (http, fastcgi, fastcgi-close, scgi)" ;; esac
done
command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

(cd "$ROOT" && cargo build --release --example instructions >&2) || die "cargo build failed"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/instructions"
[ -x "$BIN" ] || die "$BIN is missing"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# total KIND N: the instructions the server process executed for N requests.
total() {
    local kind=$1 n=$2 out="$TMP/cg.$1.$2" port_file="$TMP/port.$1.$2" pid port
    valgrind --tool=callgrind --callgrind-out-file="$out" \
        "$BIN" serve "$kind" "$n" "$port_file" >/dev/null 2>"$TMP/vg.log" &
    pid=$!
    for _ in $(seq 600); do
        [ -s "$port_file" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$TMP/vg.log" >&2; die "the $kind server did not start"; }
        sleep 0.1
    done
    port=$(cat "$port_file")
    "$BIN" client "$kind" "$n" "$port" || { kill "$pid" 2>/dev/null; die "the $kind client failed"; }
    wait "$pid" || { cat "$TMP/vg.log" >&2; die "the $kind server failed"; }
    awk '$1 == "summary:" || $1 == "totals:" {print $2; exit}' "$out"
}

per_request() {
    local a b
    a=$(total "$1" "$BASE")
    b=$(total "$1" $((2 * BASE)))
    python3 -c "print(round(($b - $a) / $BASE))"
}

printf '%-13s %12s %12s %7s\n' protocol ours hyper ratio
HYPER=
HYPER_CLOSE=
for kind in "${KINDS[@]}"; do
    OURS=$(per_request "$kind")
    case "$kind" in
        scgi | fastcgi-close)
            [ -n "$HYPER_CLOSE" ] || HYPER_CLOSE=$(per_request hyper-close)
            PEER=$HYPER_CLOSE
            ;;
        *)
            [ -n "$HYPER" ] || HYPER=$(per_request hyper)
            PEER=$HYPER
            ;;
    esac
    printf '%-13s %12s %12s %7s\n' "$kind" "$OURS" "$PEER" \
        "$(python3 -c "print(f'{$OURS / $PEER:.2f}')")"
done
