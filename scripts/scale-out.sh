#!/usr/bin/env bash
# Scale-out: several gateway backends behind a load balancer, under load,
# while one is killed and while all are restarted one by one. Counts the
# client requests that failed.
#
#   scripts/scale-out.sh                 # every scenario
#   scripts/scale-out.sh nginx-fastcgi-rolling haproxy-http-kill-netns
#   scripts/scale-out.sh --list          # the scenario names
#
# Needs root (network namespaces), nginx, haproxy, wrk, curl, ss (iproute2)
# and systemd-socket-activate (Debian: systemd). Uses the release build of
# the conformance example (built if missing; SCALE_OUT_BIN picks another
# build of it).
#
# Scenarios (3 backends each, wrk with SCALE_OUT_CONNECTIONS connections for
# SCALE_OUT_SECONDS seconds of GET /sleep?ms=SCALE_OUT_SLEEP_MS, so requests
# are always in flight on every backend):
#
#   nginx-fastcgi-kill       FastCGI backends behind an nginx upstream
#                            (examples/webservers/scale-out/nginx-fastcgi-upstream.conf);
#                            one backend gets SIGKILL, then is started again
#   nginx-fastcgi-rolling    the same; each backend in turn is replaced: a
#                            new process starts on the same port
#                            (SO_REUSEPORT), then the old one gets SIGTERM
#                            and must exit 0
#   haproxy-http-kill        HTTP backends behind HAProxy
#   haproxy-http-rolling     (examples/webservers/scale-out/haproxy-http.cfg)
#   *-netns                  the same with each backend in a network
#                            namespace of its own (a host of its own, linked
#                            to the balancer's namespace by a veth pair)
#   direct-http-rolling      no balancer, so no retry hides anything: wrk
#                            opens a new connection per request straight to
#                            one backend, which is replaced twice a second
#                            through SO_REUSEPORT (in a network namespace of
#                            its own with net.ipv4.tcp_migrate_req=1)
#   direct-http-rolling-nomigrate
#                            the same with the system's tcp_migrate_req
#                            (0 by default); only run when named: the kernel
#                            then resets the rare connection that arrives on
#                            the old socket between its last accept and its
#                            close
#   direct-http-handover     the same, the new process taking over the
#                            listening socket itself (systemd socket
#                            activation, emulated with systemd-socket-activate
#                            and a holder process)
#
# Failures, from wrk's summary: responses other than 2xx/3xx plus socket
# errors (connect, read, write, timeout); the total is the responses plus
# the socket errors. Each scenario ends with one line
#
#   SCENARIO: <name> failed N of M
#
# and the script exits 1 if any N is not 0 (or a backend did not exit 0 on
# SIGTERM, or a scenario could not run). Network namespaces, processes and
# the run directory are removed on exit.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SELF="$ROOT/scripts/scale-out.sh"
CONF="$ROOT/examples/webservers/scale-out"
BIN="${SCALE_OUT_BIN:-$ROOT/target/release/examples/conformance}"
SECONDS_PER_RUN="${SCALE_OUT_SECONDS:-12}"
CONNECTIONS="${SCALE_OUT_CONNECTIONS:-32}"
SLEEP_MS="${SCALE_OUT_SLEEP_MS:-5}"

ALL_SCENARIOS=(
    nginx-fastcgi-kill nginx-fastcgi-rolling
    haproxy-http-kill haproxy-http-rolling
    nginx-fastcgi-kill-netns nginx-fastcgi-rolling-netns
    haproxy-http-kill-netns haproxy-http-rolling-netns
    direct-http-rolling direct-http-handover
)
# Run only when named: see direct-http-rolling-nomigrate below.
EXTRA_SCENARIOS=(direct-http-rolling-nomigrate)

# The holder of a handed-over socket (direct-http-handover), run by
# systemd-socket-activate with the listening socket on fd 3: starts the
# backend on it, and for each line "restart" read from the FIFO starts a new
# backend on the same socket, then stops the old one with SIGTERM; "stop"
# stops the backend. Each old backend's exit status goes to STATUS.
if [ "${1:-}" = "__hold" ]; then
    fifo=$2 status=$3 log=$4
    spawn() {
        # LISTEN_PID must name the process that adopts the socket: the
        # subshell's pid, which exec keeps.
        ( export LISTEN_PID=$BASHPID; exec "$BIN" http systemd ) >>"$log" 2>&1 &
        child=$!
    }
    spawn
    while read -r cmd <"$fifo"; do
        case "$cmd" in
            restart)
                old=$child
                spawn
                # The new process adopts the socket and accepts; whatever
                # arrives meanwhile waits in the shared backlog.
                sleep 0.3
                kill -TERM "$old"
                rc=0; wait "$old" || rc=$?
                echo "$rc" >>"$status"
                ;;
            stop)
                kill -TERM "$child"
                rc=0; wait "$child" || rc=$?
                echo "$rc" >>"$status"
                exit 0
                ;;
        esac
    done
    exit 0
fi

if [ "${1:-}" = "--list" ]; then
    printf '%s\n' "${ALL_SCENARIOS[@]}" "${EXTRA_SCENARIOS[@]}"
    exit 0
fi
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
fi
SCENARIOS=("$@")
[ "${#SCENARIOS[@]}" -gt 0 ] || SCENARIOS=("${ALL_SCENARIOS[@]}")
for s in "${SCENARIOS[@]}"; do
    printf '%s\n' "${ALL_SCENARIOS[@]}" "${EXTRA_SCENARIOS[@]}" | grep -qx -- "$s" || {
        echo "scale-out: unknown scenario $s (--list shows them)" >&2
        exit 2
    }
done

die() { echo "scale-out: $*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces)"
for tool in nginx haproxy wrk curl ss ip systemd-socket-activate; do
    command -v "$tool" >/dev/null || die "$tool is not installed"
done
if [ ! -x "$BIN" ]; then
    echo "building the conformance example (release)"
    (cd "$ROOT" && cargo build --release --example conformance)
fi

RUN="$(mktemp -d /tmp/scale-out.XXXXXX)"
chmod 755 "$RUN"
NS="gwso$$"
NAMESPACES=()
STARTED=()      # pids of every process started, for the cleanup
RESULTS=()
STATUS=0

cleanup() {
    local pid ns
    for pid in "${STARTED[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    for ns in "${NAMESPACES[@]}"; do
        ip netns del "$ns" 2>/dev/null || true
    done
    rm -rf "$RUN"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- hosts -----------------------------------------------------------------

# Where each "host" runs: a command prefix (empty: this namespace).
declare -A ON
# The balancer's host and the backends' addresses, set per scenario.
LB=()
BACKEND_HOST=()
BACKEND_ADDR=()

# Three backend namespaces and a balancer namespace, linked by veth pairs
# (10.213.K.1 on the balancer's side, 10.213.K.2 on backend K's). Made once,
# on first use.
NETNS_READY=""
netns_setup() {
    [ -z "$NETNS_READY" ] || return 0
    local k
    ip netns add "$NS-lb"; NAMESPACES+=("$NS-lb")
    ip -n "$NS-lb" link set lo up
    for k in 1 2 3; do
        ip netns add "$NS-b$k"; NAMESPACES+=("$NS-b$k")
        ip -n "$NS-b$k" link set lo up
        ip link add "lb$k" netns "$NS-lb" type veth peer name "eth0" netns "$NS-b$k"
        ip -n "$NS-lb" addr add "10.213.$k.1/24" dev "lb$k"
        ip -n "$NS-lb" link set "lb$k" up
        ip -n "$NS-b$k" addr add "10.213.$k.2/24" dev eth0
        ip -n "$NS-b$k" link set eth0 up
    done
    NETNS_READY=1
}

# A free port on 127.0.0.1 (and the three above it) in this namespace.
free_ports() {
    # Below the kernel's ephemeral range (32768 and up), where the load's
    # own connections take their local ports.
    local base=$((20000 + ($$ * 7 + RANDOM) % 12000)) i busy
    while :; do
        busy=""
        for i in 0 1 2 3; do
            if ss -Hltn "sport = :$((base + i))" | grep -q .; then busy=1; fi
        done
        [ -z "$busy" ] && { echo "$base"; return; }
        base=$((base + 4))
    done
}

# Sets LB (balancer command prefix), BACKEND_HOST and BACKEND_ADDR for a
# scenario: local (127.0.0.1, free ports) or netns.
place() {
    local where=$1 backend_port=$2 k base
    if [ "$where" = single-netns ]; then
        # One namespace for the backend and the load, with the kernel
        # moving connections queued on a closing SO_REUSEPORT socket to
        # another one of the group (Linux 5.14+).
        if [ -z "${SINGLE_NS:-}" ]; then
            SINGLE_NS="$NS-d"
            ip netns add "$SINGLE_NS"; NAMESPACES+=("$SINGLE_NS")
            ip -n "$SINGLE_NS" link set lo up
            ip netns exec "$SINGLE_NS" sysctl -qw net.ipv4.tcp_migrate_req=1
        fi
        LB=(ip netns exec "$SINGLE_NS")
        BACKEND_HOST[1]="$SINGLE_NS"
        BACKEND_ADDR[1]="127.0.0.1:$backend_port"
        return
    fi
    if [ "$where" = netns ]; then
        netns_setup
        LB=(ip netns exec "$NS-lb")
        LISTEN="127.0.0.1:8080"
        for k in 1 2 3; do
            BACKEND_HOST[$k]="$NS-b$k"
            BACKEND_ADDR[$k]="10.213.$k.2:$backend_port"
        done
    else
        LB=()
        base=$(free_ports)
        LISTEN="127.0.0.1:$base"
        for k in 1 2 3; do
            BACKEND_HOST[$k]=""
            BACKEND_ADDR[$k]="127.0.0.1:$((base + k))"
        done
    fi
}

# Runs a command on backend K's host.
on_backend() {
    local k=$1; shift
    if [ -n "${BACKEND_HOST[$k]}" ]; then
        ip netns exec "${BACKEND_HOST[$k]}" "$@"
    else
        "$@"
    fi
}

# --- backends --------------------------------------------------------------

declare -A PID          # backend K -> its current process
BAD_EXITS=0

# Whether process PID listens on ADDR (on backend K's host).
listening() {
    local k=$1 pid=$2 port=${BACKEND_ADDR[$1]##*:}
    on_backend "$k" ss -Hltnp "sport = :$port" | grep -q "pid=$pid,"
}

# Starts backend K (PROTO: fastcgi or http) with SO_REUSEPORT, and waits
# until it listens.
start_backend() {
    local k=$1 proto=$2 pid i
    if [ -n "${BACKEND_HOST[$k]}" ]; then
        ip netns exec "${BACKEND_HOST[$k]}" env CONFORMANCE_REUSE_PORT=1 \
            "$BIN" "$proto" "${BACKEND_ADDR[$k]}" >>"$RUN/backend$k.log" 2>&1 &
    else
        env CONFORMANCE_REUSE_PORT=1 \
            "$BIN" "$proto" "${BACKEND_ADDR[$k]}" >>"$RUN/backend$k.log" 2>&1 &
    fi
    pid=$!
    STARTED+=("$pid")
    for i in $(seq 200); do
        listening "$k" "$pid" && { PID[$k]=$pid; return 0; }
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.025
    done
    echo "backend $k (${BACKEND_ADDR[$k]}) did not start; its log:" >&2
    tail -5 "$RUN/backend$k.log" >&2
    return 1
}

# Stops process PID with SIGTERM and checks that it exits 0.
stop_gracefully() {
    local what=$1 pid=$2 rc=0
    kill -TERM "$pid"
    wait "$pid" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "  $what (pid $pid) exited $rc after SIGTERM, not 0" >&2
        BAD_EXITS=$((BAD_EXITS + 1))
    fi
}

# --- balancers -------------------------------------------------------------

BALANCER_PID=""

fill() {
    sed -e "s|@LISTEN@|$LISTEN|g" -e "s|@RUNDIR@|$RUN|g" \
        -e "s|@BACKEND1@|${BACKEND_ADDR[1]}|g" \
        -e "s|@BACKEND2@|${BACKEND_ADDR[2]}|g" \
        -e "s|@BACKEND3@|${BACKEND_ADDR[3]}|g" "$1"
}

start_balancer() {
    local kind=$1 url=$2 i
    case "$kind" in
        nginx)
            fill "$CONF/nginx-fastcgi-upstream.conf" >"$RUN/nginx.conf"
            "${LB[@]}" nginx -p "$RUN" -c "$RUN/nginx.conf" -g 'daemon off;' \
                >>"$RUN/balancer.log" 2>&1 &
            ;;
        haproxy)
            fill "$CONF/haproxy-http.cfg" >"$RUN/haproxy.cfg"
            "${LB[@]}" haproxy -f "$RUN/haproxy.cfg" -db >>"$RUN/balancer.log" 2>&1 &
            ;;
    esac
    BALANCER_PID=$!
    STARTED+=("$BALANCER_PID")
    for i in $(seq 100); do
        "${LB[@]}" curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "$kind did not answer $url; its log:" >&2
    tail -20 "$RUN/balancer.log" "$RUN/error.log" 2>/dev/null >&2
    return 1
}

stop_balancer() {
    # nginx: SIGQUIT is its graceful stop; HAProxy: SIGUSR1.
    local sig=$1
    kill "-$sig" "$BALANCER_PID" 2>/dev/null || true
    wait "$BALANCER_PID" 2>/dev/null || true
}

# --- load --------------------------------------------------------------------

WRK_PID=""
# Starts wrk on URL for the run's length, in the balancer's namespace.
# Extra arguments go to wrk.
start_load() {
    local url=$1; shift
    "${LB[@]}" wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_PER_RUN}s" "$@" "$url" \
        >"$RUN/wrk.out" 2>&1 &
    WRK_PID=$!
    STARTED+=("$WRK_PID")
}

# Waits for wrk, prints its summary, and sets FAILED and TOTAL from it.
FAILED=0
TOTAL=0
finish_load() {
    local total non2xx sock
    wait "$WRK_PID" || true
    sed 's/^/  | /' "$RUN/wrk.out"
    total=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' "$RUN/wrk.out")
    non2xx=$(sed -n 's/^ *Non-2xx or 3xx responses: *\([0-9]*\).*/\1/p' "$RUN/wrk.out")
    sock=$(sed -n 's/^ *Socket errors: connect \([0-9]*\), read \([0-9]*\), write \([0-9]*\), timeout \([0-9]*\).*/\1+\2+\3+\4/p' \
        "$RUN/wrk.out")
    if [ -z "$total" ]; then
        echo "  wrk did not finish" >&2
        FAILED=1 TOTAL=0
        return
    fi
    sock=$((${sock:-0}))
    FAILED=$((${non2xx:-0} + sock))
    TOTAL=$((total + sock))
}

record() {
    local name=$1 failed=$2 total=$3
    if [ "$BAD_EXITS" -gt 0 ]; then
        echo "  $BAD_EXITS backend(s) did not exit 0 on SIGTERM" >&2
        STATUS=1
    fi
    [ "$failed" -eq 0 ] || STATUS=1
    RESULTS+=("SCENARIO: $name failed $failed of $total")
    echo "SCENARIO: $name failed $failed of $total"
}

# --- scenarios -------------------------------------------------------------

# Runs one balanced scenario: BALANCER (nginx or haproxy), ACTION (kill or
# rolling), WHERE (local or netns).
balanced() {
    local name=$1 balancer=$2 action=$3 where=$4 proto port prefix url k third
    if [ "$balancer" = nginx ]; then
        proto=fastcgi port=9000 prefix=/fcgi/conformance
    else
        proto=http port=8000 prefix=/http/conformance
    fi
    place "$where" "$port"
    BAD_EXITS=0
    : >"$RUN/balancer.log"
    : >"$RUN/error.log"
    for k in 1 2 3; do start_backend "$k" "$proto" || { record "$name" 1 0; return; }; done
    url="http://$LISTEN$prefix/sleep?ms=$SLEEP_MS"
    start_balancer "$balancer" "$url" || { record "$name" 1 0; cleanup_backends; return; }
    start_load "$url"
    third=$(awk "BEGIN { print $SECONDS_PER_RUN / 3 }")
    sleep 1.5
    case "$action" in
        kill)
            sleep "$third"
            echo "  SIGKILL backend 2 (pid ${PID[2]})"
            kill -KILL "${PID[2]}"
            wait "${PID[2]}" 2>/dev/null || true
            sleep "$third"
            echo "  backend 2 started again"
            start_backend 2 "$proto" || true
            ;;
        rolling)
            for k in 1 2 3; do
                local old=${PID[$k]}
                start_backend "$k" "$proto" || break
                echo "  backend $k: pid ${PID[$k]} listens next to pid $old; SIGTERM to $old"
                stop_gracefully "backend $k" "$old"
                sleep "$(awk "BEGIN { print ($SECONDS_PER_RUN - 4) / 3 }")"
            done
            ;;
    esac
    finish_load
    stop_balancer "$([ "$balancer" = nginx ] && echo QUIT || echo USR1)"
    # What the balancer saw and hid from the client.
    if [ "$balancer" = nginx ]; then
        echo "  nginx logged $(grep -c 'upstream' "$RUN/error.log" 2>/dev/null || true) failed upstream attempts (each retried on another server)"
    else
        echo "  HAProxy logged $(grep -c 'is DOWN' "$RUN/balancer.log" 2>/dev/null || true) server-down events"
    fi
    cleanup_backends
    record "$name" "$FAILED" "$TOTAL"
}

# Stops every backend gracefully (their exit status counts).
cleanup_backends() {
    local k
    for k in 1 2 3; do
        [ -n "${PID[$k]:-}" ] || continue
        if kill -0 "${PID[$k]}" 2>/dev/null; then
            stop_gracefully "backend $k" "${PID[$k]}"
        fi
        PID[$k]=""
    done
}

# How many times the direct scenarios replace their backend: about two a
# second, ending 2 s before the load does.
direct_restarts() {
    local n=$(((SECONDS_PER_RUN - 3) * 2))
    [ "$n" -ge 3 ] || n=3
    echo "$n"
}

# No balancer: one backend replaced again and again under new-connection
# load.
direct_rolling() {
    local name=$1 where=$2 k=1
    place "$where" 8000
    BAD_EXITS=0
    start_backend 1 http || { record "$name" 1 0; return; }
    start_load "http://${BACKEND_ADDR[1]}/hello" -H "Connection: close"
    sleep 1
    echo "  $(direct_restarts) times: a new process listens next to the old one, SIGTERM to the old one"
    for _ in $(seq "$(direct_restarts)"); do
        local old=${PID[$k]}
        start_backend "$k" http || break
        stop_gracefully "backend" "$old"
        sleep 0.4
    done
    finish_load
    cleanup_backends
    record "$name" "$FAILED" "$TOTAL"
}

# No balancer: one backend replaced again and again, each new process taking the
# listening socket over from a holder (as systemd socket activation does).
direct_handover() {
    local name=$1 fifo="$RUN/hold.fifo" status="$RUN/hold.status" holder rc
    place local 8000
    BAD_EXITS=0
    rm -f "$fifo" "$status"; mkfifo "$fifo"; : >"$status"
    SCALE_OUT_BIN="$BIN" systemd-socket-activate -l "${BACKEND_ADDR[1]}" \
        "$SELF" __hold "$fifo" "$status" "$RUN/backend1.log" >>"$RUN/backend1.log" 2>&1 &
    holder=$!
    STARTED+=("$holder")
    for _ in $(seq 100); do
        curl -fsS -o /dev/null --max-time 2 "http://${BACKEND_ADDR[1]}/hello" 2>/dev/null && break
        sleep 0.1
    done
    start_load "http://${BACKEND_ADDR[1]}/hello" -H "Connection: close"
    sleep 1
    echo "  $(direct_restarts) times: a new process on the same socket, then SIGTERM to the old one"
    for _ in $(seq "$(direct_restarts)"); do
        echo restart >"$fifo"
        sleep 0.4
    done
    finish_load
    echo stop >"$fifo"
    wait "$holder" || true
    while read -r rc; do
        if [ "$rc" -ne 0 ]; then
            echo "  a backend exited $rc after SIGTERM, not 0" >&2
            STATUS=1
        fi
    done <"$status"
    local want=$(($(direct_restarts) + 1))
    [ "$(wc -l <"$status")" -eq "$want" ] || {
        echo "  the holder saw $(wc -l <"$status") exits, not $want" >&2
        STATUS=1
    }
    record "$name" "$FAILED" "$TOTAL"
}

echo "backend: $BIN"
echo "load: wrk, $CONNECTIONS connections, ${SECONDS_PER_RUN}s per scenario, GET /sleep?ms=$SLEEP_MS"
for s in "${SCENARIOS[@]}"; do
    echo
    echo "== $s"
    case "$s" in
        nginx-fastcgi-kill) balanced "$s" nginx kill local ;;
        nginx-fastcgi-rolling) balanced "$s" nginx rolling local ;;
        haproxy-http-kill) balanced "$s" haproxy kill local ;;
        haproxy-http-rolling) balanced "$s" haproxy rolling local ;;
        nginx-fastcgi-kill-netns) balanced "$s" nginx kill netns ;;
        nginx-fastcgi-rolling-netns) balanced "$s" nginx rolling netns ;;
        haproxy-http-kill-netns) balanced "$s" haproxy kill netns ;;
        haproxy-http-rolling-netns) balanced "$s" haproxy rolling netns ;;
        direct-http-rolling) direct_rolling "$s" single-netns ;;
        direct-http-rolling-nomigrate) direct_rolling "$s" local ;;
        direct-http-handover) direct_handover "$s" ;;
    esac
done

echo
printf '%s\n' "${RESULTS[@]}"
exit "$STATUS"
