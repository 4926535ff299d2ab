#!/usr/bin/env bash
# Throughput, tail latency and memory of the FastCGI server behind nginx,
# against other FastCGI servers and against nginx proxying plain HTTP, all
# answering "Hello, world!\n", with wrk on loopback in interleaved rounds:
#
#   ours     examples/fastcgi_hello (gateway_fastcgi), cargo build --release,
#            on its default runtime
#            (a single-threaded runtime on each of half the CPUs, at least
#            one, each serving the connections it accepts)
#   oursws   ours on one multi-threaded, work-stealing runtime
#            (FASTCGI_WORK_STEALING=1: the default before the runtime per
#            CPU); not run by default
#   ours1    the same on a single-threaded runtime (FASTCGI_WORKER_THREADS=1)
#   ourscpu  the same on a thread per CPU (FASTCGI_WORKER_THREADS=nproc, the
#            default before half the CPUs); not run by default
#   oursrun  examples/hello (gateway::run with its defaults: an axum
#            Router, the log subscriber with the request span) on a
#            listening socket handed over on file descriptor 0, as
#            spawn-fcgi and lighttpd's bin-path start a FastCGI program
#            (the protocol told per connection); not run by default
#   oursm    ours with metrics on (FASTCGI_METRICS=1: a gateway_core::Metrics
#            counts every connection and request); not run by default, its
#            "ours/this" column is the cost of the metrics
#   libfcgi  the C hello-world loop over libfcgi's FCGX_Accept_r (one request
#            at a time, as libfcgi applications are), gcc -O2
#   libfcgi128  the same loop on 128 threads, each taking the next connection
#            from the one listening socket (the strongest libfcgi set-up: a
#            thread per upstream connection, so nginx's kept-alive
#            connections are served in parallel)
#   go       Go's net/http/fcgi with a hello handler, go build
#   hyper    a bare hyper HTTP/1.1 hello server behind proxy_pass: the cost
#            of nginx plus a Rust server without FastCGI (built with the
#            workspace's release profile, as ours is), on a current-thread
#            tokio runtime: its strongest set-up behind one nginx worker
#            (on a 2-CPU machine, about 60,000 req/s at 5.3 us of CPU per
#            request, against about 53,000 at 7.0 us on the multi-threaded
#            runtime #[tokio::main] makes by default, which wakes a second
#            thread; HYPER_RUNTIME=multi measures that one)
#   floor    the least a FastCGI backend on the same tokio runtime can do
#            (built with the hyper hello, current-thread runtime): it reads
#            records, skips the parameters unread and writes a canned
#            answer once a request's stdin ends. No application could
#            work this way; it is the ceiling of what nginx's FastCGI side
#            lets any backend reach on this machine
#
# Each backend is measured through nginx twice: "keep" reuses connections
# (fastcgi_keep_conn on / proxy keep-alive, upstream keepalive 32) and
# "close" opens one per request (nginx's defaults). One nginx (1 worker
# process) fronts all of them on separate ports. After the runs it prints
# req/s and p99 medians, the ratio ours/this in the same mode, each
# backend's peak RSS, its CPU time per request (user + system, from
# /proc/PID/stat over the timed runs; the user-space part in brackets), nginx's CPU time per request while it
# fronted that backend (the web server's share of the cost: a backend whose
# threads must be woken for every request costs nginx more too, as the
# wake-ups are done in nginx's writes), and how often per request its threads
# went to sleep waiting (voluntary context switches: each one is a wake-up
# later, the cost a hand-over between threads adds). Every backend and mode runs as its own process (a
# libfcgi program serves one connection at a time, so kept-alive idle
# connections would starve a second front end).
#
# Usage: scripts/bench-fastcgi.sh [--quick] [--help]
#   ROUNDS=N       rounds (default 5; 2 with --quick)
#   DURATION=S     seconds per wrk run (default 5; 2 with --quick)
#   CONNECTIONS=N  wrk connections (default 16)
#   BACKENDS="..." which backends to run (default "ours ours1 libfcgi
#                  libfcgi128 go hyper floor";
#                  "oursm" is ours with metrics on)
#   HYPER_RUNTIME=current|multi
#                  the runtime of the hyper backend (default current: a
#                  current-thread runtime, its strongest set-up here)
#   BROWSER=1      every request carries the header fields a browser sends
#                  on a page load (Firefox's: User-Agent, Accept,
#                  Accept-Language, Accept-Encoding, Upgrade-Insecure-Requests,
#                  Sec-Fetch-Dest/Mode/Site/User, Priority) instead of wrk's
#                  Host alone; nginx passes them on as HTTP_* parameters
#   INSTR=1        also count the user-space instructions ours spends per
#                  request behind nginx with keep-alive, with metrics off and
#                  on (valgrind's callgrind on a single-threaded runtime,
#                  instrumentation switched on only while wrk runs): a figure
#                  that does not move with the load of a shared machine
#   PRIORITY=N     while measuring, run the bench's processes at autogroup
#                  nice N (-20..19; Linux with kernel autogroups, root for
#                  N < 0): on a machine other users' sessions keep busy,
#                  each session's autogroup gets an equal share of the CPUs
#                  whatever its threads, so a negative N gives the bench
#                  most of the machine and steadies its figures (default:
#                  unchanged)
#   KEEP_TMP=1     keep the temporary directory
#   CARGO_TARGET_DIR is honoured by the builds, as usual.
#
# Needs nginx, wrk, gcc with libfcgi-dev, go, python3 (Debian packages
# nginx, wrk, gcc, libfcgi-dev, golang-go; missing ones are installed with
# apt-get when run as root), and access to crates.io for hyper.
set -euo pipefail

BENCH=bench-fastcgi
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_args "$@"
if [ "$QUICK" = 1 ]; then
    ROUNDS=${ROUNDS:-2} DURATION=${DURATION:-2}
else
    ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-5}
fi
CONNECTIONS=${CONNECTIONS:-16}
positive ROUNDS DURATION CONNECTIONS

need_pkg wrk wrk
# wrk's header options (BROWSER=1).
WRK_HEADERS=()
if [ "${BROWSER:-0}" = 1 ]; then
    WRK_HEADERS=(
        -H "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
        -H "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        -H "Accept-Language: en-US,en;q=0.5"
        -H "Accept-Encoding: gzip, deflate, br, zstd"
        -H "Upgrade-Insecure-Requests: 1"
        -H "Sec-Fetch-Dest: document"
        -H "Sec-Fetch-Mode: navigate"
        -H "Sec-Fetch-Site: none"
        -H "Sec-Fetch-User: ?1"
        -H "Priority: u=0, i"
    )
fi
need_pkg gcc gcc
need_pkg /usr/include/fcgiapp.h libfcgi-dev
need_pkg go golang-go
command -v python3 >/dev/null || die "python3 is missing"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "nginx is missing (apt-get install nginx)"

bench_tmp


say "building ours (examples/fastcgi_hello and hello, release)"
(cd "$ROOT" && cargo build --release --quiet --example fastcgi_hello --example hello)
OURS="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/fastcgi_hello"
OURS_RUN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/hello"
[ -x "$OURS" ] && [ -x "$OURS_RUN" ] || die "no $OURS or $OURS_RUN"
# fd0 ADDR PROGRAM: PROGRAM with a socket listening on ADDR as its stdin,
# in the place of the (background) shell that calls it, so that $! is its
# process.
fd0() {
    exec python3 - "$@" <<'PY'
import os, socket, sys
host, port = sys.argv[1].rsplit(":", 1)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, int(port)))
s.listen(1024)
os.dup2(s.fileno(), 0)
os.execv(sys.argv[2], sys.argv[2:])
PY
}

say "building the libfcgi hello (gcc)"
cat >"$TMP/hello.c" <<'C'
#include <fcgiapp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* hello ADDR [THREADS]: THREADS threads (default 1) each take the next
   connection with FCGX_Accept_r on the one listening socket and serve it. */
static int sock;

static void *serve(void *arg) {
    (void)arg;
    FCGX_Request req;
    if (FCGX_InitRequest(&req, sock, 0) != 0) return NULL;
    while (FCGX_Accept_r(&req) >= 0) {
        FCGX_PutS("Status: 200 OK\r\nContent-Type: text/plain\r\n"
                  "Content-Length: 14\r\n\r\nHello, world!\n", req.out);
        FCGX_Finish_r(&req);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2 || FCGX_Init() != 0) return 1;
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    if (threads < 1) return 1;
    sock = FCGX_OpenSocket(argv[1], 1024);
    if (sock < 0) return 1;
    pthread_t *t = calloc(threads, sizeof *t);
    for (int i = 1; i < threads; i++) pthread_create(&t[i], NULL, serve, NULL);
    serve(NULL);
    return 0;
}
C
gcc -O2 -pthread -o "$TMP/libfcgi_hello" "$TMP/hello.c" -lfcgi || die "building the libfcgi hello failed"

say "building the Go net/http/fcgi hello"
mkdir -p "$TMP/gohello"
cat >"$TMP/gohello/main.go" <<'GO'
package main

import (
	"net"
	"net/http"
	"net/http/fcgi"
	"os"
)

func main() {
	l, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		panic(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("Hello, world!\n"))
	})
	panic(fcgi.Serve(l, h))
}
GO
(cd "$TMP/gohello" && GOCACHE="$TMP/gocache" go mod init gohello >/dev/null 2>&1 \
    && GOCACHE="$TMP/gocache" go build -o "$TMP/go_hello" .) || die "building the Go hello failed"

say "building the bare hyper hello (release)"
hyper_package "$TMP/hyperhello" hyperhello
cat >"$TMP/hyperhello/src/main.rs" <<'RS'
use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, body::Incoming, server::conn::http1, service::service_fn};
use hyper_util::rt::TokioIo;

HYPER_RUNTIME_ATTRIBUTE
async fn main() {
    let addr = std::env::args().nth(1).expect("address");
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let svc = service_fn(|_req: Request<Incoming>| async {
                let mut res = Response::new(Full::new(Bytes::from_static(b"Hello, world!\n")));
                res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                Ok::<_, Infallible>(res)
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
RS
case "${HYPER_RUNTIME:-current}" in
    current) attr='#[tokio::main(flavor = "current_thread")]' ;;
    multi) attr='#[tokio::main]' ;;
    *) die "HYPER_RUNTIME must be current or multi, got '${HYPER_RUNTIME}'" ;;
esac
sed -i "s/^HYPER_RUNTIME_ATTRIBUTE\$/$attr/" "$TMP/hyperhello/src/main.rs"
# The floor (see above): a second program of the same package.
mkdir -p "$TMP/hyperhello/src/bin"
cat >"$TMP/hyperhello/src/bin/fcgifloor.rs" <<'RS'
use std::io::ErrorKind::WouldBlock;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, ReadBuf};

const ANSWER: &[u8] =
    b"Status: 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 14\r\n\r\nHello, world!\n";

/// Appends the records that answer request `id`: its stdout, the end of
/// it, and FCGI_END_REQUEST (status 0, FCGI_REQUEST_COMPLETE).
fn answer(out: &mut Vec<u8>, id: [u8; 2]) {
    out.extend_from_slice(&[1, 6, id[0], id[1], 0, ANSWER.len() as u8, 0, 0]);
    out.extend_from_slice(ANSWER);
    out.extend_from_slice(&[1, 6, id[0], id[1], 0, 0, 0, 0]);
    out.extend_from_slice(&[1, 3, id[0], id[1], 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = std::env::args().nth(1).expect("address");
    let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
    loop {
        let Ok((mut s, _)) = listener.accept().await else { continue };
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let (mut buf, mut len, mut out) = (vec![0u8; 16384], 0, Vec::new());
            let mut keep = true;
            loop {
                if len == buf.len() {
                    buf.resize(len * 2, 0);
                }
                // tokio's poll_read, which (unlike try_read) takes a short
                // read as the end of what is ready: no read that would
                // block follows each request.
                let read = std::future::poll_fn(|cx| {
                    let mut rb = ReadBuf::new(&mut buf[len..]);
                    match Pin::new(&mut s).poll_read(cx, &mut rb) {
                        Poll::Ready(r) => Poll::Ready(r.map(|()| rb.filled().len())),
                        Poll::Pending => Poll::Pending,
                    }
                });
                match read.await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => len += n,
                }
                let mut at = 0;
                while len - at >= 8 {
                    let h = &buf[at..at + 8];
                    let total = 8 + usize::from(u16::from_be_bytes([h[4], h[5]])) + usize::from(h[6]);
                    if len - at < total {
                        break;
                    }
                    match (h[1], h[4], h[5]) {
                        // FCGI_BEGIN_REQUEST: its flags say whether the
                        // connection stays open.
                        (1, _, _) if total >= 11 => keep = buf[at + 10] & 1 == 1,
                        // The empty FCGI_STDIN record: the request is whole.
                        (5, 0, 0) => answer(&mut out, [h[2], h[3]]),
                        _ => {}
                    }
                    at += total;
                }
                buf.copy_within(at..len, 0);
                len -= at;
                let mut sent = 0;
                while sent < out.len() {
                    match s.try_write(&out[sent..]) {
                        Ok(n) => sent += n,
                        Err(e) if e.kind() == WouldBlock => {
                            if s.writable().await.is_err() {
                                return;
                            }
                        }
                        Err(_) => return,
                    }
                }
                if sent > 0 && !keep {
                    return;
                }
                out.clear();
            }
        });
    }
}
RS
HYPER_TARGET="${CARGO_TARGET_DIR:-$TMP}/bench-hyper"
(cd "$TMP/hyperhello" && CARGO_TARGET_DIR="$HYPER_TARGET" cargo build --release --quiet) \
    || die "building the hyper hello failed"

# A process per backend and mode: libfcgi serves one connection at a time,
# so idle kept-alive connections from one run would starve the next.
read -r -a BACKENDS <<<"${BACKENDS:-ours ours1 libfcgi libfcgi128 go hyper floor}"
declare -A CMD BACKEND PID FRONT
CMD[ours]=$OURS
CMD[oursrun]=$OURS_RUN
CMD[ours1]=$OURS
CMD[ourscpu]=$OURS
CMD[oursws]=$OURS
CMD[oursm]=$OURS
CMD[libfcgi]=$TMP/libfcgi_hello
CMD[libfcgi128]=$TMP/libfcgi_hello
CMD[go]=$TMP/go_hello
CMD[hyper]=$HYPER_TARGET/release/hyperhello
CMD[floor]=$HYPER_TARGET/release/fcgifloor
NAMES=()
for b in "${BACKENDS[@]}"; do for m in keep close; do NAMES+=("$b-$m"); done; done
for n in "${NAMES[@]}"; do
    BACKEND[$n]=$(free_port)
    threads=0 metrics=0 stealing=0
    [ "${n%-*}" = ours1 ] && threads=1
    [ "${n%-*}" = ourscpu ] && threads=$(nproc)
    [ "${n%-*}" = oursws ] && stealing=1
    [ "${n%-*}" = oursm ] && metrics=1
    extra=()
    [ "${n%-*}" = libfcgi128 ] && extra=(128)
    if [ "${n%-*}" = oursrun ]; then
        fd0 "127.0.0.1:${BACKEND[$n]}" "$OURS_RUN" >"$TMP/$n.out" 2>&1 &
    else
        FASTCGI_WORKER_THREADS=$threads FASTCGI_WORK_STEALING=$stealing FASTCGI_METRICS=$metrics "${CMD[${n%-*}]}" "127.0.0.1:${BACKEND[$n]}" "${extra[@]}" >"$TMP/$n.out" 2>&1 &
    fi
    PID[$n]=$!
    PIDS+=($!)
    FRONT[$n]=$(free_port)
done
# INSTR=1: ours under callgrind, metrics off (cg) and on (cgm), kept alive.
CG=()
if [ "${INSTR:-0}" = 1 ]; then
    need_pkg valgrind valgrind
    for c in cg cgm; do
        BACKEND[$c]=$(free_port)
        FRONT[$c]=$(free_port)
        FASTCGI_WORKER_THREADS=1 FASTCGI_METRICS=$([ "$c" = cgm ] && echo 1 || echo 0) \
            valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$TMP/$c.cg" \
            "$OURS" "127.0.0.1:${BACKEND[$c]}" >"$TMP/$c.out" 2>"$TMP/$c.vg" &
        PID[$c]=$!
        PIDS+=($!)
        CG+=("$c")
    done
fi
for n in "${NAMES[@]}" "${CG[@]}"; do wait_port "${BACKEND[$n]}"; done

{
    echo "worker_processes 1;"
    echo "pid $TMP/nginx.pid;"
    echo "error_log $TMP/error.log warn;"
    echo "events { worker_connections 4096; }"
    echo "http {"
    echo "    access_log off;"
    for d in client_body proxy fastcgi uwsgi scgi; do echo "    ${d}_temp_path $TMP/$d;"; done
    for n in "${NAMES[@]}"; do
        echo "    upstream up_${n//-/_} { server 127.0.0.1:${BACKEND[$n]}; keepalive 32; }"
    done
    for c in "${CG[@]}"; do
        echo "    upstream up_$c { server 127.0.0.1:${BACKEND[$c]}; keepalive 32; }"
        echo "    server {"
        echo "        listen 127.0.0.1:${FRONT[$c]};"
        echo "        location / {"
        echo "            include /etc/nginx/fastcgi_params;"
        echo "            fastcgi_keep_conn on;"
        echo "            fastcgi_pass up_$c;"
        echo "        }"
        echo "    }"
    done
    for n in "${NAMES[@]}"; do
        b=${n%-*} m=${n##*-}
        echo "    server {"
        echo "        listen 127.0.0.1:${FRONT[$n]};"
        echo "        location / {"
        if [ "$b" = hyper ]; then
            if [ "$m" = keep ]; then
                echo "            proxy_http_version 1.1;"
                echo "            proxy_set_header Connection \"\";"
                echo "            proxy_pass http://up_${n//-/_};"
            else
                echo "            proxy_pass http://127.0.0.1:${BACKEND[$n]};"
            fi
        else
            echo "            include /etc/nginx/fastcgi_params;"
            if [ "$m" = keep ]; then
                echo "            fastcgi_keep_conn on;"
                echo "            fastcgi_pass up_${n//-/_};"
            else
                echo "            fastcgi_pass 127.0.0.1:${BACKEND[$n]};"
            fi
        fi
        echo "        }"
        echo "    }"
    done
    echo "}"
} >"$TMP/nginx.conf"
[ -f /etc/nginx/fastcgi_params ] || die "/etc/nginx/fastcgi_params is missing"
"$NGINX" -p "$TMP" -e "$TMP/error.log" -c "$TMP/nginx.conf" -g 'daemon off;' >"$TMP/nginx.out" 2>&1 &
NGINX_MASTER=$!
PIDS+=($!)
for n in "${NAMES[@]}"; do wait_port "${FRONT[$n]}"; done
NGINX_WORKER=$(pgrep -P "$NGINX_MASTER" | head -n1)
[ -n "$NGINX_WORKER" ] || die "no nginx worker process (see $TMP/error.log)"
for n in "${NAMES[@]}"; do
    body=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:${FRONT[$n]}/').read().decode(), end='')") \
        || die "$n does not answer through nginx (see $TMP)"
    [ "$body" = "Hello, world!" ] || die "$n answered '$body'"
done

say "warming up"
for n in "${NAMES[@]}"; do wrk -t1 -c4 -d1s "${WRK_HEADERS[@]}" "http://127.0.0.1:${FRONT[$n]}/" >/dev/null; done
for r in $(seq "$ROUNDS"); do
    say "round $r/$ROUNDS"
    for n in "${NAMES[@]}"; do
        t0=$(ticks "${PID[$n]}") u0=$(utime "${PID[$n]}") s0=$(sleeps "${PID[$n]}") g0=$(ticks "$NGINX_WORKER")
        wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "${WRK_HEADERS[@]}" "http://127.0.0.1:${FRONT[$n]}/" >"$TMP/$n.$r.txt"
        echo $(( $(ticks "${PID[$n]}") - t0 )) >>"$TMP/$n.cpu"
        echo $(( $(utime "${PID[$n]}") - u0 )) >>"$TMP/$n.user"
        echo $(( $(ticks "$NGINX_WORKER") - g0 )) >>"$TMP/$n.ngcpu"
        echo $(( $(sleeps "${PID[$n]}") - s0 )) >>"$TMP/$n.sleeps"
    done
done
for n in "${NAMES[@]}"; do
    awk '/VmHWM/ {print $2}' "/proc/${PID[$n]}/status" >"$TMP/$n.rss" 2>/dev/null || echo 0 >"$TMP/$n.rss"
done

# Instructions per request under callgrind: counted only while wrk runs.
declare -A IR
for c in "${CG[@]}"; do
    say "counting instructions per request ($c, valgrind)"
    wrk -t1 -c4 -d2s "${WRK_HEADERS[@]}" "http://127.0.0.1:${FRONT[$c]}/" >/dev/null
    callgrind_control -i on "${PID[$c]}" >/dev/null 2>&1
    reqs=$(wrk -t1 -c4 -d5s "${WRK_HEADERS[@]}" "http://127.0.0.1:${FRONT[$c]}/" | awk '/requests in/ {print $1}')
    callgrind_control -i off "${PID[$c]}" >/dev/null 2>&1
    kill -TERM "${PID[$c]}" 2>/dev/null || true
    wait "${PID[$c]}" 2>/dev/null || true
    ir=$(awk '/Collected :/ {print $NF}' "$TMP/$c.vg")
    [ -n "$ir" ] && [ "${reqs:-0}" -gt 0 ] || die "no instruction count for $c (see $TMP/$c.vg)"
    IR[$c]=$((ir / reqs))
done

python3 - "$TMP" "$ROUNDS" "$(getconf CLK_TCK)" "${NAMES[@]}" <<'PY'
import re, statistics, sys
tmp, rounds, hz, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
res = {}
for name in names:
    rps, p99, errs, reqs = [], [], 0, 0
    for r in range(1, rounds + 1):
        t = open(f"{tmp}/{name}.{r}.txt").read()
        reqs += int(re.search(r"(\d+) requests in", t).group(1))
        rps.append(float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)))
        m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
        p99.append(ms(*m.groups()))
        e = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
        errs += int(e.group(1)) if e else 0
        s = re.search(r"Socket errors: (.*)", t)
        if s: print(f"{name} round {r}: socket errors: {s.group(1)}")
    ticks = sum(int(x) for x in open(f"{tmp}/{name}.cpu").read().split())
    cpu_us = ticks * 1_000_000 / hz / reqs if reqs else 0.0
    uticks = sum(int(x) for x in open(f"{tmp}/{name}.user").read().split())
    user_us = uticks * 1_000_000 / hz / reqs if reqs else 0.0
    ngticks = sum(int(x) for x in open(f"{tmp}/{name}.ngcpu").read().split())
    ng_us = ngticks * 1_000_000 / hz / reqs if reqs else 0.0
    sleeps = sum(int(x) for x in open(f"{tmp}/{name}.sleeps").read().split())
    res[name] = (statistics.median(rps), statistics.median(p99), rps, errs, cpu_us, sleeps / reqs if reqs else 0.0, ng_us, user_us)
one = any(n.startswith("ours1-") for n in names)
col = f"{'ours1/this':>12}" if one else ""
print(f"{'':18}{'req/s (median)':>16}{'p99 ms (median)':>18}{'ours/this req/s':>18}{col}{'peak RSS MiB':>14}{'CPU us/req':>12}{'(user)':>8}{'nginx us/req':>14}{'sleeps/req':>12}   per round req/s")
for name in names:
    m, p, rps, errs, cpu_us, sl, ng_us, user_us = res[name]
    mode = name.rsplit("-", 1)[1]
    base = res["ours-" + mode][0] if "ours-" + mode in res else 0.0
    ratio = f"{base / m:.2f}" if m > 0 and base > 0 else "-"
    r1 = ""
    if one:
        b1 = res.get("ours1-" + mode, (0.0,))[0]
        r1 = f"{(f'{b1 / m:.2f}' if m > 0 and b1 > 0 else '-'):>12}"
    kib = open(f"{tmp}/{name}.rss").read().strip() or "0"
    extra = f"   non-2xx: {errs}" if errs else ""
    print(f"{name:18}{m:>16.0f}{p:>18.3f}{ratio:>18}{r1}{int(kib) / 1024:>14.1f}{cpu_us:>12.1f}{user_us:>8.1f}{ng_us:>14.1f}{sl:>12.2f}   {' '.join(f'{x:.0f}' for x in rps)}{extra}")
PY
if [ -n "${IR[cg]:-}" ]; then
    python3 -c "import sys; o, m = int(sys.argv[1]), int(sys.argv[2]); print(f'instructions/request (callgrind, keep-alive, 1 thread): metrics off {o}, on {m}, delta {m - o:+d} ({(m - o) / o * 100:+.2f} %)')" "${IR[cg]}" "${IR[cgm]}"
fi
