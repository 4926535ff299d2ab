#!/usr/bin/env bash
# Throughput and tail latency of the HTTP server against a bare hyper server,
# both answering GET / with "Hello, world!\n" on loopback, measured with wrk
# in interleaved rounds (ours, bare, ours, bare, ...):
#
#   ours  examples/http_hello (gateway_http::serve), cargo build --release
#   bare  a hyper 1.x hello world built by this script in a temporary
#         directory, with the hyper and hyper-util versions of Cargo.lock, the
#         same auto (HTTP/1 + HTTP/2) connection builder, the same
#         current-thread tokio runtime and the workspace's release profile
#
# It also prints each server's CPU time per request (user + system, from
# /proc/PID/stat over the timed runs), which moves less with the machine's
# load than req/s, and the user-space part of it: both servers make the
# same system calls per request, so the difference between them is there.
#
# Targets: median req/s(ours) / req/s(bare) >= 1.0 and
#          median p99(ours) / p99(bare) <= 1.0 (no worse than bare hyper).
#
# Usage: scripts/bench-http.sh [--quick] [--help]
#   ROUNDS=N       rounds (default 7; 3 with --quick)
#   DURATION=S     seconds per wrk run (default 5; 2 with --quick)
#   CONNECTIONS=N  wrk connections (default 32)
#   THREADS=N      wrk threads (default 1)
#   BODY=N         answer with N bytes instead of "Hello, world!\n" (both
#                  servers; HELLO_BYTES for the programs)
#   VECTORED=1     ours with Server::vectored_writes(true) (hyper writes the
#                  body's buffers with writev instead of copying them into
#                  its write buffer; HTTP_VECTORED_WRITES for the program)
#   STRICT=1       exit 1 when a target is missed (default: report only)
#   INSTR=1        also count the user-space instructions each server spends
#                  per request (valgrind's callgrind, instrumentation switched
#                  on only while wrk runs): a figure that does not move with
#                  the load of a shared machine
#   KEEP_TMP=1     keep the temporary directory
#   CARGO_TARGET_DIR is honoured by the build of ours, as usual.
#
# Needs wrk (Debian package wrk; installed with apt-get when missing and run
# as root) and python3 for the arithmetic.
set -euo pipefail

BENCH=bench-http
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_args "$@"
if [ "$QUICK" = 1 ]; then
    ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-2}
else
    ROUNDS=${ROUNDS:-7} DURATION=${DURATION:-5}
fi
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-1}
positive ROUNDS DURATION CONNECTIONS THREADS

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

need_pkg wrk wrk
command -v python3 >/dev/null || die "python3 is missing"

bench_tmp

lock_version() {
    python3 - "$ROOT/Cargo.lock" "$1" <<'PY'
import sys, re
text = open(sys.argv[1]).read()
m = re.search(r'name = "%s"\nversion = "([^"]+)"' % re.escape(sys.argv[2]), text)
print(m.group(1) if m else "")
PY
}
HYPER=$(lock_version hyper)
HYPER_UTIL=$(lock_version hyper-util)
TOKIO=$(lock_version tokio)
[ -n "$HYPER" ] && [ -n "$HYPER_UTIL" ] && [ -n "$TOKIO" ] || die "hyper, hyper-util or tokio not in Cargo.lock"

say "building ours (examples/http_hello, release)"
(cd "$ROOT" && cargo build --release --quiet --example http_hello)
OURS="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/http_hello"
[ -x "$OURS" ] || die "no $OURS"

say "building bare hyper $HYPER (hyper-util $HYPER_UTIL, tokio $TOKIO)"
mkdir -p "$TMP/bare/src"
cat >"$TMP/bare/Cargo.toml" <<TOML
[package]
name = "bare-hyper-hello"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
hyper = { version = "=$HYPER", features = ["server", "http1", "http2"] }
hyper-util = { version = "=$HYPER_UTIL", features = ["server", "server-auto", "tokio", "http1", "http2"] }
http-body-util = "0.1"
bytes = "1"
tokio = { version = "=$TOKIO", features = ["rt", "net", "macros"] }

[workspace]
TOML
# Built with the workspace's profiles, as ours is.
workspace_profiles >>"$TMP/bare/Cargo.toml"
cat >"$TMP/bare/src/main.rs" <<'RS'
use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, body::Incoming, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;

async fn hello(body: Bytes) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut res = Response::new(Full::new(body));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, header::HeaderValue::from_static("text/plain"));
    Ok(res)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:8001".into());
    let body = match std::env::var("HELLO_BYTES").ok().and_then(|n| n.parse().ok()) {
        Some(n) => Bytes::from(vec![b'x'; n]),
        None => Bytes::from_static(b"Hello, world!\n"),
    };
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!("serving on http://{addr}/");
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let mut b = auto::Builder::new(TokioExecutor::new());
            b.http1().timer(TokioTimer::new());
            let _ = b
                .serve_connection(
                    TokioIo::new(stream),
                    hyper::service::service_fn(move |_req: Request<Incoming>| hello(body.clone())),
                )
                .await;
        });
    }
}
RS
(cd "$TMP/bare" && CARGO_TARGET_DIR="$TMP/bare/target" cargo build --release --quiet)
BARE="$TMP/bare/target/release/bare-hyper-hello"

start() { # name binary; sets URL (not in a subshell, so PIDS is kept)
    local port; port=$(free_port)
    "$2" "127.0.0.1:$port" >"$TMP/$1.out" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 50); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break
        sleep 0.1
    done
    URL="http://127.0.0.1:$port/"
}
instructions() { # name binary; prints instructions per request
    need_pkg valgrind valgrind
    local port vpid reqs ir
    port=$(free_port)
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$TMP/$1.cg" \
        "$2" "127.0.0.1:$port" >/dev/null 2>"$TMP/$1.vg" &
    vpid=$!
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break
        sleep 0.1
    done
    wrk -t1 -c4 -d1s "http://127.0.0.1:$port/" >/dev/null
    callgrind_control -i on "$vpid" >/dev/null 2>&1
    reqs=$(wrk -t1 -c4 -d3s "http://127.0.0.1:$port/" | awk '/requests in/ {print $1}')
    callgrind_control -i off "$vpid" >/dev/null 2>&1
    kill -TERM "$vpid" 2>/dev/null || true
    wait "$vpid" 2>/dev/null || true
    ir=$(awk '/Collected :/ {print $NF}' "$TMP/$1.vg")
    [ -n "$ir" ] && [ "${reqs:-0}" -gt 0 ] || die "no instruction count for $1"
    echo $((ir / reqs))
}
# The response body of both servers, and ours' write strategy.
[ -z "${BODY:-}" ] || positive BODY
export HELLO_BYTES=${BODY:-}
ours_env() {
    if [ "${VECTORED:-0}" = 1 ]; then export HTTP_VECTORED_WRITES=1; fi
}
if [ "${INSTR:-0}" = 1 ]; then
    say "counting instructions per request (valgrind)"
    OURS_IR=$(ours_env; instructions ours "$OURS")
    BARE_IR=$(instructions bare "$BARE")
fi

say "response body: ${BODY:-14} bytes; ours with vectored writes: ${VECTORED:-0}"
ours_env # (see above)
start ours "$OURS"; OURS_URL=$URL; OURS_PID=${PIDS[-1]}
unset HTTP_VECTORED_WRITES
start bare "$BARE"; BARE_URL=$URL; BARE_PID=${PIDS[-1]}

run_wrk() { # name url round pid; also notes the server's CPU time over the run
    local before user
    before=$(ticks "$4") user=$(utime "$4")
    wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$2" >"$TMP/$1.$3.txt"
    echo $(($(ticks "$4") - before)) >"$TMP/$1.$3.cpu"
    echo $(($(utime "$4") - user)) >"$TMP/$1.$3.user"
}
say "warming up"
wrk -t1 -c8 -d1s "$OURS_URL" >/dev/null
wrk -t1 -c8 -d1s "$BARE_URL" >/dev/null
for r in $(seq "$ROUNDS"); do
    say "round $r/$ROUNDS"
    run_wrk ours "$OURS_URL" "$r" "$OURS_PID"
    run_wrk bare "$BARE_URL" "$r" "$BARE_PID"
done

if [ -n "${OURS_IR:-}" ]; then
    python3 -c "import sys; o, b = int(sys.argv[1]), int(sys.argv[2]); print(f'instructions/request: ours {o}, bare {b}, ours - bare {o - b}, ratio {o / b:.2f}')" "$OURS_IR" "$BARE_IR"
fi
python3 - "$TMP" "$ROUNDS" "${STRICT:-0}" "$(getconf CLK_TCK)" <<'PY'
import re, statistics, sys
tmp, rounds, strict, hz = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
def parse(name):
    rps, p99, errs, cpu, user = [], [], 0, [], []
    for r in range(1, rounds + 1):
        t = open(f"{tmp}/{name}.{r}.txt").read()
        rps.append(float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)))
        n = int(re.search(r"(\d+) requests in", t).group(1))
        ticks = int(open(f"{tmp}/{name}.{r}.cpu").read())
        cpu.append(ticks / hz * 1e6 / max(n, 1))
        ticks = int(open(f"{tmp}/{name}.{r}.user").read())
        user.append(ticks / hz * 1e6 / max(n, 1))
        m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
        p99.append(ms(*m.groups()))
        e = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
        errs += int(e.group(1)) if e else 0
        s = re.search(r"Socket errors: (.*)", t)
        if s: print(f"{name} round {r}: socket errors: {s.group(1)}")
    return rps, p99, errs, cpu, user
o_rps, o_p99, o_err, o_cpu, o_user = parse("ours")
b_rps, b_p99, b_err, b_cpu, b_user = parse("bare")
med = statistics.median
print(f"{'':8}{'req/s (median)':>16}{'p99 ms (median)':>18}{'CPU us/req':>12}{'user us/req':>13}   per round req/s")
print(f"{'ours':8}{med(o_rps):>16.0f}{med(o_p99):>18.3f}{med(o_cpu):>12.2f}{med(o_user):>13.2f}   {' '.join(f'{x:.0f}' for x in o_rps)}")
print(f"{'bare':8}{med(b_rps):>16.0f}{med(b_p99):>18.3f}{med(b_cpu):>12.2f}{med(b_user):>13.2f}   {' '.join(f'{x:.0f}' for x in b_rps)}")
rr, pr = med(o_rps) / med(b_rps), med(o_p99) / med(b_p99)
ok = rr >= 1.0 and pr <= 1.0
print(f"ratio   req/s {rr:.2f} (target >= 1.00)   p99 {pr:.2f} (target <= 1.00)   "
      f"CPU/req {med(o_cpu) / med(b_cpu):.2f} (user {med(o_user) / med(b_user):.2f})   "
      f"{'met' if ok else 'MISSED'}")
if o_err or b_err:
    print(f"non-2xx responses: ours {o_err}, bare {b_err}")
sys.exit(1 if strict and not ok else 0)
PY
