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
# With FOOTPRINT=1 it also prints each server's hot code: the distinct
# 64-byte lines of machine code that run at least once per request (from
# the same runs, with callgrind's per-instruction counts), in KiB. Every
# request fetches them again from the level-1 instruction cache; once they
# outgrow it (its size is printed beside them), each request also pays for
# refetching the part that did not stay, which the instruction count does
# not show.
#
# Usage: scripts/instructions-per-request.sh [KIND...]
#   KIND: http, fastcgi, fastcgi-close, scgi, run-http, run-fastcgi
#         (default: http fastcgi scgi). run-http and run-fastcgi serve the
#         same answer through gateway::Builder::run, the entry point
#         applications use, with its default log subscriber (the request
#         span and the error-log layer at info level): what an application
#         started that way pays per request. Their peer is bare hyper too.
#   BASE=N    requests of the smaller run (default 1000)
#   FOOTPRINT=1  also print the hot code per request
#   BROWSER=1    every request also carries six header fields a browser
#                sends on a page load (Upgrade-Insecure-Requests,
#                Sec-Fetch-Dest/Mode/Site/User, Priority), for every kind
#   CARGO_TARGET_DIR is honoured by the build, as usual.
# Needs valgrind and python3.
set -euo pipefail

die() { echo "instructions-per-request: error: $*" >&2; exit 1; }
BASE=${BASE:-1000}
FOOTPRINT=${FOOTPRINT:-0}
if [ "${BROWSER:-0}" = 1 ]; then export INSTRUCTIONS_HEADERS=browser; else unset INSTRUCTIONS_HEADERS; fi
DUMP=()
[ "$FOOTPRINT" = 1 ] && DUMP=(--dump-instr=yes --compress-pos=no --compress-strings=no)
[[ "$BASE" =~ ^[0-9]+$ ]] && [ "$BASE" -ge 1 ] || die "BASE must be a positive number, got '$BASE'"
KINDS=("$@")
[ ${#KINDS[@]} -gt 0 ] || KINDS=(http fastcgi scgi)
for k in "${KINDS[@]}"; do
    case "$k" in
        http | fastcgi | fastcgi-close | scgi | run-http | run-fastcgi) ;;
        *) die "unknown kind '$k' (http, fastcgi, fastcgi-close, scgi, run-http, run-fastcgi)" ;;
    esac
done
command -v valgrind >/dev/null || die "valgrind is missing (apt-get install valgrind)"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

(cd "$ROOT" && cargo build --release --example instructions --example instructions_run >&2) \
    || die "cargo build failed"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/instructions"
RUN_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/instructions_run"
[ -x "$BIN" ] && [ -x "$RUN_BIN" ] || die "$BIN or $RUN_BIN is missing"

TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

# total KIND N: the instructions the server process executed for N requests.
total() {
    local kind=$1 n=$2 out="$TMP/cg.$1.$2" port_file="$TMP/port.$1.$2" pid port server=$BIN
    # run-*: gateway::Builder::run's server (a program of its own), with the
    # client of the protocol after the dash.
    case "$kind" in run-*) server=$RUN_BIN ;; esac
    valgrind --tool=callgrind --callgrind-out-file="$out" "${DUMP[@]}" \
        "$server" serve "$kind" "$n" "$port_file" >/dev/null 2>"$TMP/vg.log" &
    pid=$!
    for _ in $(seq 600); do
        [ -s "$port_file" ] && break
        kill -0 "$pid" 2>/dev/null || { cat "$TMP/vg.log" >&2; die "the $kind server did not start"; }
        sleep 0.1
    done
    port=$(cat "$port_file")
    "$BIN" client "${kind#run-}" "$n" "$port" || { kill "$pid" 2>/dev/null; die "the $kind client failed"; }
    wait "$pid" || { cat "$TMP/vg.log" >&2; die "the $kind server failed"; }
    awk '$1 == "summary:" || $1 == "totals:" {print $2; exit}' "$out"
}

per_request() {
    local a b
    a=$(total "$1" "$BASE")
    b=$(total "$1" $((2 * BASE)))
    python3 -c "print(round(($b - $a) / $BASE))"
}

# hot_kib KIND: the KiB of 64-byte code lines holding an instruction that
# ran at least once per request (0.9 * BASE more times in the larger run),
# from the two runs' per-instruction counts.
hot_kib() {
    python3 - "$TMP/cg.$1.$BASE" "$TMP/cg.$1.$((2 * BASE))" "$BASE" <<'PY'
import re, sys
def counts(path):
    # Lines "address line count" (--compress-pos=no); a "calls=" line is
    # followed by the inclusive cost of the call, which is not the
    # instruction's own count. Addresses are per object file.
    seen, obj, call = {}, "", False
    for line in open(path, errors="replace"):
        if line.startswith("ob="):
            obj = line[3:].strip()
        elif line.startswith("calls="):
            call = True
        else:
            m = re.match(r"0x([0-9a-f]+) \d+ (\d+)", line)
            if m:
                if not call:
                    key = (obj, int(m.group(1), 16))
                    seen[key] = seen.get(key, 0) + int(m.group(2))
                call = False
    return seen
a, b, n = counts(sys.argv[1]), counts(sys.argv[2]), int(sys.argv[3])
hot = {(o, x >> 6) for (o, x), c in b.items() if c - a.get((o, x), 0) >= 0.9 * n}
print(len(hot) * 64 // 1024)
PY
}

if [ "$FOOTPRINT" = 1 ]; then
    l1i=unknown
    for c in /sys/devices/system/cpu/cpu0/cache/index*; do
        if [ "$(cat "$c/level" 2>/dev/null)" = 1 ] && [ "$(cat "$c/type" 2>/dev/null)" = Instruction ]; then
            l1i=$(cat "$c/size")
        fi
    done
    echo "hot code: KiB of code lines run at least once per request (level-1 instruction cache: $l1i)"
    printf '%-13s %12s %12s %7s %13s %13s\n' protocol ours hyper ratio "hot KiB ours" "hot KiB hyper"
else
    printf '%-13s %12s %12s %7s\n' protocol ours hyper ratio
fi
HYPER=
HYPER_CLOSE=
for kind in "${KINDS[@]}"; do
    OURS=$(per_request "$kind")
    case "$kind" in
        scgi | fastcgi-close)
            peer=hyper-close
            [ -n "$HYPER_CLOSE" ] || HYPER_CLOSE=$(per_request hyper-close)
            PEER=$HYPER_CLOSE
            ;;
        *)
            peer=hyper
            [ -n "$HYPER" ] || HYPER=$(per_request hyper)
            PEER=$HYPER
            ;;
    esac
    ratio=$(python3 -c "print(f'{$OURS / $PEER:.2f}')")
    if [ "$FOOTPRINT" = 1 ]; then
        printf '%-13s %12s %12s %7s %13s %13s\n' "$kind" "$OURS" "$PEER" "$ratio" \
            "$(hot_kib "$kind")" "$(hot_kib "$peer")"
    else
        printf '%-13s %12s %12s %7s\n' "$kind" "$OURS" "$PEER" "$ratio"
    fi
done
