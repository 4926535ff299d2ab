# shellcheck shell=bash
# What the benchmark scripts share. A script sets BENCH to its name, then
# sources this file:
#
#     BENCH=bench-fastcgi
#     . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#     bench_args "$@"        # --quick sets QUICK=1, --help prints the header
#     ...
#     bench_tmp              # TMP, PIDS, clean-up on exit, PRIORITY
#
# PRIORITY=N (any script using bench_tmp): the nice value of the script's
# autogroup while it measures, with everything it starts (root for N < 0):
# on a machine shared by other sessions, each in an autogroup of its own,
# it gives the benchmark its share of the CPUs back.

die() { echo "$BENCH: error: $*" >&2; exit 1; }
say() { echo "$BENCH: $*" >&2; }

# Reads the arguments every benchmark takes: --quick, --help.
bench_args() {
    QUICK=0
    local arg
    for arg in "$@"; do
        case "$arg" in
            --quick) QUICK=1 ;;
            -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
            *) die "unknown argument '$arg' (try --help)" ;;
        esac
    done
}

# Dies unless each named variable holds a positive whole number.
positive() {
    local v
    for v in "$@"; do
        [[ "${!v}" =~ ^[0-9]+$ ]] && [ "${!v}" -ge 1 ] || die "$v must be a positive number, got '${!v}'"
    done
}

# need_pkg BINARY-OR-FILE PACKAGE: installs the Debian package when the
# binary (or file) is missing and the script runs as root.
need_pkg() {
    if [ -e "$1" ] || command -v "$1" >/dev/null; then return 0; fi
    [ "$(id -u)" -eq 0 ] || die "$1 is missing (apt-get install $2)"
    say "installing $2"
    apt-get install -y "$2" >/dev/null 2>&1 || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }
}

# A scratch directory TMP (kept with KEEP_TMP=1), the processes started
# (PIDS) killed on exit, and the autogroup's nice value set to PRIORITY
# until then.
bench_tmp() {
    TMP=$(mktemp -d)
    chmod 755 "$TMP"
    PIDS=()
    trap cleanup EXIT
    if [ -n "${PRIORITY:-}" ]; then
        [[ "$PRIORITY" =~ ^-?[0-9]+$ ]] || die "PRIORITY must be a number, got '$PRIORITY'"
        [ -w /proc/self/autogroup ] || die "PRIORITY needs kernel autogroups (/proc/self/autogroup)"
        AUTOGROUP_WAS=$(awk '{print $NF}' /proc/self/autogroup)
        echo "$PRIORITY" >/proc/self/autogroup 2>/dev/null || die "cannot set autogroup nice $PRIORITY (root needed below 0)"
        say "autogroup nice $PRIORITY while measuring"
    fi
}
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    if [ -n "${AUTOGROUP_WAS:-}" ]; then echo "$AUTOGROUP_WAS" >/proc/self/autogroup 2>/dev/null || true; fi
    if [ "${KEEP_TMP:-0}" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
}

# The [profile.*] sections of the workspace's Cargo.toml (ROOT must be
# set), for a peer built as a package of its own: it is then compiled the
# way ours is (the same LTO and codegen units), not with cargo's defaults.
workspace_profiles() { awk '/^\[/ { keep = /^\[profile\./ } keep' "$ROOT/Cargo.toml"; }

# hyper_package DIR NAME: the manifest of a bare hyper HTTP/1.1 program
# NAME in DIR (its code goes in DIR/src/main.rs), a package of its own
# built with the workspace's profiles, as ours is (ROOT must be set).
hyper_package() {
    mkdir -p "$1/src"
    cat >"$1/Cargo.toml" <<TOML
[package]
name = "$2"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
hyper = { version = "1", features = ["server", "http1"] }
hyper-util = { version = "0.1", features = ["tokio"] }
http-body-util = "0.1"
bytes = "1"
tokio = { version = "1", features = ["rt-multi-thread", "net", "macros"] }

[workspace]
TOML
    workspace_profiles >>"$1/Cargo.toml"
}

# A TCP port on 127.0.0.1 that nothing listens on.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Waits up to 20 s for something to listen on 127.0.0.1:PORT.
wait_port() {
    local _
    for _ in $(seq 200); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null && return 0
        sleep 0.1
    done
    die "nothing listens on port $1 (see $TMP)"
}

# CPU time (user + system clock ticks) process PID has used so far.
ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
# The user-space part of it (clock ticks).
utime() { awk '{ sub(/^.*\) /, ""); print $12 }' "/proc/$1/stat"; }
# Times process PID's threads have gone to sleep waiting (voluntary context
# switches, all threads): a wake-up each, whatever the machine's load.
sleeps() { cat /proc/"$1"/task/*/status 2>/dev/null | awk '/^voluntary_ctxt_switches/ { n += $2 } END { print n + 0 }'; }
