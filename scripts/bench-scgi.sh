#!/usr/bin/env bash
# Throughput and tail latency of the SCGI server behind nginx, against a
# Python flup SCGI server and (when the example exists) our FastCGI server
# without keep-alive, all answering "Hello, world!\n", with wrk on loopback
# in interleaved rounds (ours, flup, fastcgi, ours, ...):
#
#   ours     examples/scgi_hello (gateway_scgi), cargo build --release, on
#            its default runtime
#   ours1    the same on one serving thread (SCGI_WORKER_THREADS=1); not run
#            by default
#   ourscpu  the same on a thread per CPU (SCGI_WORKER_THREADS=nproc); not
#            run by default
#   flup     flup's threaded SCGI WSGIServer with a hello-world WSGI app, in a
#            Python virtual environment made in a temporary directory
#   fastcgi  examples/fastcgi_hello (on its default runtime) behind
#            fastcgi_pass without fastcgi_keep_conn: one connection per
#            request, like SCGI; nginx sends its stock fastcgi_params, as
#            it sends its scgi_params to the SCGI backends
#
# One nginx (1 worker process) fronts all of them on separate ports, so the
# front end is the same for every backend. After the runs it prints req/s
# and p99 medians, the ratio ours/this, each backend's CPU time per request
# (user + system, from /proc/PID/stat over the timed runs: steadier than the
# rate on a shared machine; the user-space part in brackets), nginx's CPU
# time per request while it fronted
# that backend, and how often per request the backend's threads went to
# sleep waiting (voluntary context switches: each one a wake-up later).
#
# Usage: scripts/bench-scgi.sh [--quick] [--help]
#   ROUNDS=N       rounds (default 5; 2 with --quick)
#   DURATION=S     seconds per wrk run (default 5; 2 with --quick)
#   CONNECTIONS=N  wrk connections (default 16)
#   BACKENDS="..." which backends to run, in this order (default "ours flup
#                  fastcgi"; "ours" is always run, first)
#   PRIORITY=N     while measuring, run the bench's processes at autogroup
#                  nice N (-20..19; Linux with kernel autogroups, root for
#                  N < 0): on a machine other users' sessions keep busy,
#                  each session's autogroup gets an equal share of the CPUs
#                  whatever its threads, so a negative N gives the bench
#                  most of the machine and steadies its figures (default:
#                  unchanged)
#   KEEP_TMP=1     keep the temporary directory
#   CARGO_TARGET_DIR is honoured by the build of ours, as usual.
#
# Needs nginx, wrk and python3 with venv (Debian packages nginx, wrk,
# python3-venv; wrk is installed with apt-get when missing and run as root),
# and network access to PyPI for flup.
set -euo pipefail

BENCH=bench-scgi
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

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "nginx is missing (apt-get install nginx)"
need_pkg wrk wrk
command -v python3 >/dev/null || die "python3 is missing"

bench_tmp


say "building ours (examples/scgi_hello, release)"
(cd "$ROOT" && cargo build --release --quiet --example scgi_hello)
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples"
OURS="$BIN/scgi_hello"
[ -x "$OURS" ] || die "no $OURS"
FASTCGI=""
if [ -f "$ROOT/examples/fastcgi_hello.rs" ]; then
    say "building examples/fastcgi_hello (release)"
    if (cd "$ROOT" && cargo build --release --quiet --example fastcgi_hello); then
        FASTCGI="$BIN/fastcgi_hello"
    else
        say "fastcgi_hello does not build; leaving it out"
    fi
else
    say "examples/fastcgi_hello.rs is missing; leaving the FastCGI comparison out"
fi

read -r -a WANTED <<<"${BACKENDS:-ours flup fastcgi}"
case " ${WANTED[*]} " in *" flup "*) FLUP=1 ;; *) FLUP=0 ;; esac
if [ "$FLUP" = 1 ]; then
    say "installing flup in a virtual environment"
    python3 -m venv "$TMP/venv" || die "python3 -m venv failed (apt-get install python3-venv)"
    "$TMP/venv/bin/pip" install --quiet flup || die "pip install flup failed"
    cat >"$TMP/flup_hello.py" <<'PY'
import sys
from flup.server.scgi import WSGIServer

def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"Hello, world!\n"]

WSGIServer(app, bindAddress=("127.0.0.1", int(sys.argv[1]))).run()
PY
fi

NAMES=(ours)
for b in "${WANTED[@]}"; do
    case "$b" in
        ours) ;;
        ours1 | ourscpu | flup) NAMES+=("$b") ;;
        fastcgi) [ -n "$FASTCGI" ] && NAMES+=(fastcgi) ;;
        *) die "unknown backend '$b' (ours, ours1, ourscpu, flup, fastcgi)" ;;
    esac
done
declare -A BACKEND FRONT PID
for n in "${NAMES[@]}"; do
    BACKEND[$n]=$(free_port)
    case "$n" in
        ours) "$OURS" "127.0.0.1:${BACKEND[$n]}" >"$TMP/$n.out" 2>&1 & ;;
        ours1) SCGI_WORKER_THREADS=1 "$OURS" "127.0.0.1:${BACKEND[$n]}" >"$TMP/$n.out" 2>&1 & ;;
        ourscpu) SCGI_WORKER_THREADS=$(nproc) "$OURS" "127.0.0.1:${BACKEND[$n]}" >"$TMP/$n.out" 2>&1 & ;;
        flup) "$TMP/venv/bin/python" "$TMP/flup_hello.py" "${BACKEND[$n]}" >"$TMP/$n.out" 2>&1 & ;;
        fastcgi) "$FASTCGI" "127.0.0.1:${BACKEND[$n]}" >"$TMP/$n.out" 2>&1 & ;;
    esac
    PID[$n]=$!
    PIDS+=($!)
done
for n in "${NAMES[@]}"; do wait_port "${BACKEND[$n]}"; FRONT[$n]=$(free_port); done

{
    echo "worker_processes 1;"
    echo "pid $TMP/nginx.pid;"
    echo "error_log $TMP/error.log warn;"
    echo "events { worker_connections 1024; }"
    echo "http {"
    echo "    access_log off;"
    for d in client_body proxy fastcgi uwsgi scgi; do echo "    ${d}_temp_path $TMP/$d;"; done
    for n in "${NAMES[@]}"; do
        echo "    server {"
        echo "        listen 127.0.0.1:${FRONT[$n]};"
        echo "        location / {"
        if [ "$n" = fastcgi ]; then
            # nginx's stock parameters for each protocol, as deployed: a
            # request of about the same size either way.
            echo "            include /etc/nginx/fastcgi_params;"
            echo "            fastcgi_pass 127.0.0.1:${BACKEND[$n]};"
        else
            echo "            include /etc/nginx/scgi_params;"
            echo "            scgi_pass 127.0.0.1:${BACKEND[$n]};"
        fi
        echo "        }"
        echo "    }"
    done
    echo "}"
} >"$TMP/nginx.conf"
for f in scgi_params fastcgi_params; do [ -f "/etc/nginx/$f" ] || die "/etc/nginx/$f is missing"; done
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
for n in "${NAMES[@]}"; do wrk -t1 -c4 -d1s "http://127.0.0.1:${FRONT[$n]}/" >/dev/null; done
for r in $(seq "$ROUNDS"); do
    say "round $r/$ROUNDS"
    for n in "${NAMES[@]}"; do
        t0=$(ticks "${PID[$n]}") u0=$(utime "${PID[$n]}") s0=$(sleeps "${PID[$n]}") g0=$(ticks "$NGINX_WORKER")
        wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:${FRONT[$n]}/" >"$TMP/$n.$r.txt"
        echo $(( $(ticks "${PID[$n]}") - t0 )) >>"$TMP/$n.cpu"
        echo $(( $(utime "${PID[$n]}") - u0 )) >>"$TMP/$n.user"
        echo $(( $(ticks "$NGINX_WORKER") - g0 )) >>"$TMP/$n.ngcpu"
        echo $(( $(sleeps "${PID[$n]}") - s0 )) >>"$TMP/$n.sleeps"
    done
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
    def per_req(what):
        ticks = sum(int(x) for x in open(f"{tmp}/{name}.{what}").read().split())
        return ticks * 1_000_000 / hz / reqs if reqs else 0.0
    sleeps = sum(int(x) for x in open(f"{tmp}/{name}.sleeps").read().split())
    res[name] = (statistics.median(rps), statistics.median(p99), rps, errs,
                 per_req("cpu"), per_req("user"), per_req("ngcpu"), sleeps / reqs if reqs else 0.0)
print(f"{'':9}{'req/s (median)':>16}{'p99 ms (median)':>18}{'ours/this req/s':>18}"
      f"{'CPU us/req':>12}{'(user)':>8}{'nginx us/req':>14}{'sleeps/req':>12}   per round req/s")
base = res["ours"][0]
for name in names:
    m, p, rps, errs, cpu_us, user_us, ng_us, sl = res[name]
    ratio = f"{base / m:.2f}" if m > 0 else "-"
    extra = f"   non-2xx: {errs}" if errs else ""
    print(f"{name:9}{m:>16.0f}{p:>18.3f}{ratio:>18}{cpu_us:>12.1f}{user_us:>8.1f}{ng_us:>14.1f}{sl:>12.2f}"
          f"   {' '.join(f'{x:.0f}' for x in rps)}{extra}")
PY
