#!/usr/bin/env bash
# Whether multiplexing pays: the FastCGI hello (examples/fastcgi_hello,
# started with FASTCGI_MULTIPLEX=1) behind HAProxy's fcgi-app twice, with
# "option mpxs-conns" (several requests at once on one connection, from
# examples/webservers/fastcgi/haproxy-mpxs.cfg) and without it (one
# request at a time per connection, the same file less that option and
# "option get-values", whose answer would turn multiplexing on), with
# wrk against HAProxy on loopback in interleaved rounds. It prints req/s,
# p99 and the backend's CPU time per request for each, and the ratio
# mpxs-conns / without, for each dispatch strategy of the application.
# HAProxy 2.6 answers some multiplexed requests 500 itself at once (its log
# says IH--, the request never reaches the application; the same happens
# with any FastCGI server that multiplexes): the req/s figures count 2xx
# answers only, and the errors are shown.
#
#   adaptive  the default: a request runs in its connection's task while it
#             is the only one in flight there, on a task of its own while
#             several are
#   spawned   every request on a task of its own
#   in-task   every request in its connection's task
#
# Usage: scripts/bench-fastcgi-mpx.sh [--quick] [--help]
#   ROUNDS=N        rounds (default 5; 2 with --quick)
#   DURATION=S      seconds per wrk run (default 5; 2 with --quick)
#   CONNECTIONS=N   wrk connections (default 64)
#   DISPATCH="..."  strategies to run (default "adaptive spawned in-task")
#   NBTHREAD=N      HAProxy threads (default 1, as haproxy-mpxs.cfg)
#   KEEP_TMP=1      keep the temporary directory
#   CARGO_TARGET_DIR is honoured by the build, as usual.
#
# Needs haproxy (2.6 or later), wrk and python3.
set -euo pipefail

BENCH=bench-fastcgi-mpx
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_args "$@"
if [ "$QUICK" = 1 ]; then
    ROUNDS=${ROUNDS:-2} DURATION=${DURATION:-2}
else
    ROUNDS=${ROUNDS:-5} DURATION=${DURATION:-5}
fi
CONNECTIONS=${CONNECTIONS:-64}
NBTHREAD=${NBTHREAD:-1}
positive ROUNDS DURATION CONNECTIONS NBTHREAD
command -v wrk >/dev/null || die "wrk is missing (apt-get install wrk)"
command -v python3 >/dev/null || die "python3 is missing"
HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
[ -x "$HAPROXY" ] || die "haproxy is missing (apt-get install haproxy)"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CFG=$ROOT/examples/webservers/fastcgi/haproxy-mpxs.cfg
[ -f "$CFG" ] || die "$CFG is missing"

bench_tmp
mkdir -p "$TMP/htdocs"


say "building ours (examples/fastcgi_hello, release)"
(cd "$ROOT" && cargo build --release --quiet --example fastcgi_hello)
OURS="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/fastcgi_hello"

read -r -a DISPATCHES <<<"${DISPATCH:-adaptive spawned in-task}"
declare -A BACKEND PID FRONT
NAMES=()
for d in "${DISPATCHES[@]}"; do for m in mpxs plain; do NAMES+=("$d-$m"); done; done
for n in "${NAMES[@]}"; do
    # A process per strategy and mode, so that the CPU time is its own.
    BACKEND[$n]=$(free_port)
    FASTCGI_MULTIPLEX=1 FASTCGI_DISPATCH="${n%-*}" "$OURS" "127.0.0.1:${BACKEND[$n]}" >"$TMP/$n.out" 2>&1 &
    PID[$n]=$!
    PIDS+=($!)
    FRONT[$n]=$(free_port)
done
for n in "${NAMES[@]}"; do wait_port "${BACKEND[$n]}"; done

# One HAProxy per backend: haproxy-mpxs.cfg, with or without mpxs-conns,
# the log off (a line per request would weigh on the figures).
for n in "${NAMES[@]}"; do
    sed -e "s|@PORT@|${FRONT[$n]}|; s|@RUNDIR@|$TMP|; s|@BACKEND_HOST@|127.0.0.1|; s|@BACKEND_PORT@|${BACKEND[$n]}|" \
        -e "s|^\(    nbthread\).*|\1 $NBTHREAD|" \
        -e '/^    log stderr/d; /^    log global/d; /^    option httplog/d; /log-stderr/d' \
        "$CFG" >"$TMP/$n.cfg"
    # Without get-values too: HAProxy takes FCGI_MPXS_CONNS from the
    # application's answer over its own option.
    [ "${n##*-}" = plain ] && sed -i '/option mpxs-conns/d; /option get-values/d' "$TMP/$n.cfg"
    "$HAPROXY" -f "$TMP/$n.cfg" -db >"$TMP/haproxy-$n.out" 2>&1 &
    PIDS+=($!)
done
URL=/fcgi/conformance/hello
for n in "${NAMES[@]}"; do wait_port "${FRONT[$n]}"; done
for n in "${NAMES[@]}"; do
    body=$(python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:${FRONT[$n]}$URL').read().decode(), end='')") \
        || die "$n does not answer through HAProxy (see $TMP)"
    [ "$body" = "Hello, world!" ] || die "$n answered '$body'"
done

say "warming up"
for n in "${NAMES[@]}"; do wrk -t1 -c4 -d1s "http://127.0.0.1:${FRONT[$n]}$URL" >/dev/null; done
for r in $(seq "$ROUNDS"); do
    say "round $r/$ROUNDS"
    for n in "${NAMES[@]}"; do
        t0=$(ticks "${PID[$n]}")
        wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:${FRONT[$n]}$URL" >"$TMP/$n.$r.txt"
        echo $(( $(ticks "${PID[$n]}") - t0 )) >>"$TMP/$n.cpu"
    done
done
# How many connections HAProxy opened to each backend.
for n in "${NAMES[@]}"; do
    ls "/proc/${PID[$n]}/fd" 2>/dev/null | wc -l >"$TMP/$n.fds" || echo 0 >"$TMP/$n.fds"
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
        m = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", t)
        n, secs = int(m.group(1)), ms(m.group(2), m.group(3)) / 1000
        e = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
        bad = int(e.group(1)) if e else 0
        errs += bad
        reqs += n
        rps.append((n - bad) / secs)
        m = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", t, re.M)
        p99.append(ms(*m.groups()))
        s = re.search(r"Socket errors: (.*)", t)
        if s: print(f"{name} round {r}: socket errors: {s.group(1)}")
    ticks = sum(int(x) for x in open(f"{tmp}/{name}.cpu").read().split())
    ok = reqs - errs  # the failed ones never reached the application
    cpu_us = ticks * 1_000_000 / hz / ok if ok else 0.0
    res[name] = (statistics.median(rps), statistics.median(p99), rps, errs, cpu_us)
print(f"{'':18}{'2xx/s (median)':>16}{'p99 ms (median)':>18}{'CPU us/req':>12}{'mpxs/plain':>12}   per round req/s")
for name in names:
    m, p, rps, errs, cpu_us = res[name]
    d, mode = name.rsplit("-", 1)
    ratio = "-"
    if mode == "mpxs":
        plain = res.get(d + "-plain", (0.0,))[0]
        ratio = f"{m / plain:.2f}" if plain > 0 else "-"
    extra = f"   non-2xx: {errs}" if errs else ""
    print(f"{name:18}{m:>16.0f}{p:>18.3f}{cpu_us:>12.1f}{ratio:>12}   {' '.join(f'{x:.0f}' for x in rps)}{extra}")
PY
