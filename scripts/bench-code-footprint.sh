#!/usr/bin/env bash
# What running more distinct code per request costs on the machine it runs
# on, apart from the instructions it adds: a bare hyper hello server
# (HTTP/1.1, a current-thread runtime, the workspace's release profile)
# that also runs K small functions per request, either K different ones,
# each called from a place of its own ("spread": straight-line code, about
# 80 bytes of it per function with its call and test) or the same one K
# times from one place ("loop"). Both run about the same instructions (a
# test, a call and a few arithmetic steps per function); only how much
# distinct code, and how many distinct branches, they run differs. wrk
# drives every (K, mode) server in interleaved rounds, and the script
# prints each one's user-space CPU time per request and the difference
# spread - loop: the price of that much more code per request.
#
# The bare server alone runs about 43 KiB of distinct code per request
# (`FOOTPRINT=1 scripts/instructions-per-request.sh`). Where the difference
# grows from nothing to a large part of a request is how much code per
# request this machine's instruction caches hold (the kernel's code for
# the request's system calls shares the level-1 cache with it).
#
# Usage: scripts/bench-code-footprint.sh [--quick] [--help]
#   KS="..."       the K to measure (default "0 150 300 450 600")
#   ROUNDS=N       rounds (default 3; 2 with --quick)
#   DURATION=S     seconds per wrk run (default 3; 2 with --quick)
#   CONNECTIONS=N  wrk connections (default 32)
#   PRIORITY=N     autogroup nice value while measuring (see scripts/lib.sh)
#   KEEP_TMP=1     keep the temporary directory
#
# Needs wrk (installed with apt-get when missing and run as root) and
# python3.
set -euo pipefail

BENCH=bench-code-footprint
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_args "$@"
if [ "$QUICK" = 1 ]; then
    ROUNDS=${ROUNDS:-2} DURATION=${DURATION:-2}
else
    ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-3}
fi
CONNECTIONS=${CONNECTIONS:-32}
positive ROUNDS DURATION CONNECTIONS
read -r -a KS <<<"${KS:-0 150 300 450 600}"
MAX=0
for k in "${KS[@]}"; do
    [[ "$k" =~ ^[0-9]+$ ]] || die "KS holds '$k', not a number"
    [ "$k" -le 4096 ] || die "K at most 4096, got $k"
    [ "$k" -gt "$MAX" ] && MAX=$k
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
need_pkg wrk wrk
command -v python3 >/dev/null || die "python3 is missing"
bench_tmp

say "building the hello server with $MAX functions"
hyper_package "$TMP/fp" footprint-hello
cp "$ROOT/Cargo.lock" "$TMP/fp/Cargo.lock"
# The functions: each a short chain of arithmetic on its argument, with
# constants of its own, so that none is folded into another.
python3 - "$MAX" >"$TMP/fp/src/funcs.rs" <<'PY'
import sys
n = max(int(sys.argv[1]), 1)
for i in range(n):
    print(f"#[inline(never)] fn f{i}(x: u64) -> u64 {{ let y = x.wrapping_mul({(0x9E3779B97F4A7C15 ^ i * 7919) | 1}).rotate_left({i % 61 + 1}); "
          f"let z = y ^ (y >> {i % 29 + 3}); z.wrapping_add({i * 104729 + 17}) ^ (z << {i % 13 + 1}) }}")
# spread: f0 to f(k-1), each from a call site of its own, as code that
# does k different things runs.
print("#[inline(never)] pub fn spread(k: usize, mut x: u64) -> u64 {")
for i in range(n):
    print(f"    if k == {i} {{ return x; }}\n    x = f{i}(black_box(x));")
print("    x\n}")
# looped: f0 k times from one call site, with the same test and call per
# step.
print("#[inline(never)] pub fn looped(k: usize, mut x: u64) -> u64 {")
print("    for i in 0..usize::MAX {\n        if k == black_box(i) { return x; }\n        x = f0(black_box(x));\n    }\n    x\n}")
print("use std::hint::black_box;")
PY
cat >"$TMP/fp/src/main.rs" <<'RS'
use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;

mod funcs;

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().expect("address");
    let k: usize = args.next().and_then(|k| k.parse().ok()).expect("K");
    let spread = args.next().as_deref() == Some("spread");
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(move |_req: Request<Incoming>| async move {
                let x = black_box(7);
                black_box(if spread { funcs::spread(k, x) } else { funcs::looped(k, x) });
                let mut res = Response::new(Full::new(Bytes::from_static(b"Hello, world!\n")));
                res.headers_mut()
                    .insert("content-type", hyper::header::HeaderValue::from_static("text/plain"));
                Ok::<_, Infallible>(res)
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
RS
FP_TARGET="${CARGO_TARGET_DIR:-$TMP}/bench-code-footprint"
(cd "$TMP/fp" && CARGO_TARGET_DIR="$FP_TARGET" cargo build --release --quiet) || die "building the server failed"
BIN=$FP_TARGET/release/footprint-hello

declare -A PORT PID
NAMES=()
for k in "${KS[@]}"; do
    for mode in spread loop; do
        n="$k-$mode"
        NAMES+=("$n")
        PORT[$n]=$(free_port)
        "$BIN" "127.0.0.1:${PORT[$n]}" "$k" "$mode" >"$TMP/$n.out" 2>&1 &
        PID[$n]=$!
        PIDS+=($!)
    done
done
for n in "${NAMES[@]}"; do wait_port "${PORT[$n]}"; done
say "warming up"
for n in "${NAMES[@]}"; do wrk -t1 -c"$CONNECTIONS" -d1s "http://127.0.0.1:${PORT[$n]}/" >/dev/null; done
for r in $(seq "$ROUNDS"); do
    say "round $r/$ROUNDS"
    for n in "${NAMES[@]}"; do
        u0=$(utime "${PID[$n]}")
        wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "http://127.0.0.1:${PORT[$n]}/" >"$TMP/$n.$r.txt"
        echo $(($(utime "${PID[$n]}") - u0)) >>"$TMP/$n.user"
    done
done

# The functions' addresses, for the size of the code K of them span.
nm -S "$BIN" >"$TMP/symbols" 2>/dev/null || : >"$TMP/symbols"
python3 - "$TMP" "$ROUNDS" "$DURATION" "$(getconf CLK_TCK)" "${KS[@]}" <<'PY'
import re, statistics, sys
tmp, rounds, duration, hz, ks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
# The code per function: the functions' own, apart from one another, and
# spread's, over all of them (mangled names end in "funcs<len><name>17h").
starts, spread, n = {}, 0, max(int(k) for k in ks) or 1
for line in open(f"{tmp}/symbols"):
    m = re.match(r"([0-9a-f]+) ([0-9a-f]+) [tT] (\S+)", line)
    if not m:
        continue
    f = re.search(r"funcs\d*f(\d+)17h", m.group(3))
    if f:
        starts[int(f.group(1))] = int(m.group(1), 16)
    elif re.search(r"funcs6spread17h", m.group(3)):
        spread = int(m.group(2), 16)
addrs = sorted(starts.values())
stride = (addrs[-1] - addrs[0]) / (len(addrs) - 1) if len(addrs) > 1 else 48
per_k = stride + spread / n

def requests(name, r):
    text = open(f"{tmp}/{name}.{r}.txt").read()
    return int(re.search(r"(\d+) requests in", text).group(1))

def per_request(name):
    """Median user-space microseconds per request, and median req/s."""
    user = [int(x) for x in open(f"{tmp}/{name}.user").read().split()]
    reqs = [requests(name, r) for r in range(1, rounds + 1)]
    us = [u / hz * 1e6 / q for u, q in zip(user, reqs)]
    return statistics.median(us), statistics.median(q // duration for q in reqs)

print(f"about {per_k:.0f} bytes of code per function with its call; the server alone runs about 43 KiB of code per request")
print(f"{'K':>5} {'extra code':>11} {'user us/req spread':>19} {'loop':>8} {'spread - loop':>14} {'req/s spread':>13} {'loop':>9}")
for k in ks:
    s_us, s_rq = per_request(f"{k}-spread")
    l_us, l_rq = per_request(f"{k}-loop")
    print(f"{k:>5} {int(int(k) * per_k) // 1024:>7} KiB {s_us:>19.2f} {l_us:>8.2f} {s_us - l_us:>14.2f} {s_rq:>13} {l_rq:>9}")
PY
