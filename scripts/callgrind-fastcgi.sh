#!/usr/bin/env bash
# Instructions per FastCGI keep-alive request, counted by callgrind: runs
# gateway-fastcgi's keepalive_requests example (N requests for "/" with
# nginx's parameters through one kept-alive connection, an in-memory pipe,
# single-threaded runtime; the client's side is a fixed byte string and a
# scan for FCGI_END_REQUEST) for N1 and N2 requests, and prints
# (Ir(N2) - Ir(N1)) / (N2 - N1): the start-up cost cancels out. Stable
# where wall-clock figures on a shared machine are not.
#
# Usage: scripts/callgrind-fastcgi.sh [adaptive|in-task|spawned ...]
#   N1=N, N2=N   request counts (default 200 and 2200)
# Needs valgrind.
set -euo pipefail
die() { echo "callgrind-fastcgi: error: $*" >&2; exit 1; }
command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N1=${N1:-200} N2=${N2:-2200}
(cd "$ROOT" && cargo build --release --quiet -p gateway-fastcgi --example keepalive_requests)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/keepalive_requests"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
ir() { # requests dispatch
    valgrind --tool=callgrind --callgrind-out-file="$TMP/cg.out" "$BIN" "$1" "$2" >/dev/null 2>"$TMP/vg.err" \
        || die "valgrind failed: $(tail -3 "$TMP/vg.err")"
    awk '/^summary:/ {print $2}' "$TMP/cg.out"
}
[ $# -gt 0 ] || set -- adaptive in-task spawned
printf '%-10s %16s\n' dispatch 'Ir/request'
for d in "$@"; do
    a=$(ir "$N1" "$d") b=$(ir "$N2" "$d")
    printf '%-10s %16.0f\n' "$d" "$(echo "($b - $a) / ($N2 - $N1)" | bc -l)"
done
