#!/usr/bin/env bash
# Throughput and tail latency of the SCGI server behind nginx, against a
# Python flup SCGI server and (when the example exists) our FastCGI server
# without keep-alive, all answering "Hello, world!\n", with wrk on loopback
# in interleaved rounds (ours, flup, fastcgi, ours, ...):
#
#   ours     examples/scgi_hello (gateway_scgi), cargo build --release
#   flup     flup's threaded SCGI WSGIServer with a hello-world WSGI app, in a
#            Python virtual environment made in a temporary directory
#   fastcgi  examples/fastcgi_hello behind fastcgi_pass without
#            fastcgi_keep_conn: one connection per request, like SCGI
#
# One nginx (1 worker process) fronts all of them on separate ports, so the
# front end is the same for every backend.
#
# Usage: scripts/bench-scgi.sh [--quick] [--help]
#   ROUNDS=N       rounds (default 5; 2 with --quick)
#   DURATION=S     seconds per wrk run (default 5; 2 with --quick)
#   CONNECTIONS=N  wrk connections (default 16)
#   KEEP_TMP=1     keep the temporary directory
#   CARGO_TARGET_DIR is honoured by the build of ours, as usual.
#
# Needs nginx, wrk and python3 with venv (Debian packages nginx, wrk,
# python3-venv; wrk is installed with apt-get when missing and run as root),
# and network access to PyPI for flup.
set -euo pipefail

die() { echo "bench-scgi: error: $*" >&2; exit 1; }
say() { echo "bench-scgi: $*" >&2; }

QUICK=0
for arg in "$@"; do
    case "$arg" in
        --quick) QUICK=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$arg' (try --help)" ;;
    esac
done
if [ "$QUICK" = 1 ]; then
    ROUNDS=${ROUNDS:-2} DURATION=${DURATION:-2}
else
    ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-5}
fi
CONNECTIONS=${CONNECTIONS:-16}
for v in ROUNDS DURATION CONNECTIONS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] && [ "${!v}" -ge 1 ] || die "$v must be a positive number, got '${!v}'"
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || die "nginx is missing (apt-get install nginx)"
if ! command -v wrk >/dev/null; then
    [ "$(id -u)" -eq 0 ] || die "wrk is missing (apt-get install wrk)"
    say "installing wrk"
    apt-get install -y wrk >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y wrk >/dev/null; }
fi
command -v python3 >/dev/null || die "python3 is missing"

TMP=$(mktemp -d)
chmod 755 "$TMP"
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ "${KEEP_TMP:-0}" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 100); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on port $1 (see $TMP/*.out)"
}

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

NAMES=(ours flup)
declare -A BACKEND FRONT
BACKEND[ours]=$(free_port)
"$OURS" "127.0.0.1:${BACKEND[ours]}" >"$TMP/ours.out" 2>&1 &
PIDS+=($!)
BACKEND[flup]=$(free_port)
"$TMP/venv/bin/python" "$TMP/flup_hello.py" "${BACKEND[flup]}" >"$TMP/flup.out" 2>&1 &
PIDS+=($!)
if [ -n "$FASTCGI" ]; then
    NAMES+=(fastcgi)
    BACKEND[fastcgi]=$(free_port)
    "$FASTCGI" "127.0.0.1:${BACKEND[fastcgi]}" >"$TMP/fastcgi.out" 2>&1 &
    PIDS+=($!)
fi
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
            echo "            fastcgi_param REQUEST_METHOD \$request_method;"
            echo "            fastcgi_param REQUEST_URI \$request_uri;"
            echo "            fastcgi_param QUERY_STRING \$query_string;"
            echo "            fastcgi_param SERVER_PROTOCOL \$server_protocol;"
            echo "            fastcgi_param SERVER_NAME \$server_name;"
            echo "            fastcgi_param SERVER_PORT \$server_port;"
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
[ -f /etc/nginx/scgi_params ] || die "/etc/nginx/scgi_params is missing"
"$NGINX" -p "$TMP" -e "$TMP/error.log" -c "$TMP/nginx.conf" -g 'daemon off;' >"$TMP/nginx.out" 2>&1 &
PIDS+=($!)
for n in "${NAMES[@]}"; do wait_port "${FRONT[$n]}"; done
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
        wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:${FRONT[$n]}/" >"$TMP/$n.$r.txt"
    done
done

python3 - "$TMP" "$ROUNDS" "${NAMES[@]}" <<'PY'
import re, statistics, sys
tmp, rounds, names = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
def ms(v, unit):
    return float(v) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
res = {}
for name in names:
    rps, p99, errs = [], [], 0
    for r in range(1, rounds + 1):
        t = open(f"{tmp}/{name}.{r}.txt").read()
        rps.append(float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)))
        m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
        p99.append(ms(*m.groups()))
        e = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
        errs += int(e.group(1)) if e else 0
        s = re.search(r"Socket errors: (.*)", t)
        if s: print(f"{name} round {r}: socket errors: {s.group(1)}")
    res[name] = (statistics.median(rps), statistics.median(p99), rps, errs)
print(f"{'':9}{'req/s (median)':>16}{'p99 ms (median)':>18}{'ours/this req/s':>18}   per round req/s")
base = res["ours"][0]
for name in names:
    m, p, rps, errs = res[name]
    extra = f"   non-2xx: {errs}" if errs else ""
    print(f"{name:9}{m:>16.0f}{p:>18.3f}{base / m:>18.2f}   {' '.join(f'{x:.0f}' for x in rps)}{extra}")
PY
