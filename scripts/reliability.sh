#!/usr/bin/env bash
# Reliability battery for the socket servers (FastCGI, SCGI, HTTP): scale
# (10,000 idle connections, the busy answer past the cap), hostile and slow
# clients, faults (EMFILE, killed peers, panics, SIGTERM) and a soak. Prints
# one line per check, `CHECK: ok|FAIL <name> <figure>`, then a summary;
# exits non-zero when a check failed.
#
#   scripts/reliability.sh [SECTION...]      # scale hostile faults soak (default: all)
#
# Environment: PROTOCOLS="http scgi fastcgi", SOAK_MINUTES=1 (30 for the
# full soak), SOAK_SAMPLE_S=60, SOAK_RATE=20 (requests a second to each
# server; 0: no limit), SOAK_TOGETHER=1 (every server soaked in the same
# window; 0: one after another), SCALE_CONNECTIONS=10000, SCALE_ROUNDS=1,
# SCALE_AFTER_CLOSE_S=3 (how long after the connections closed the
# after-close RSS is read: the servers' memory release runs a quiet second
# after a burst ends), SCALE_TRIM_PROBE=1 (then calls glibc's
# malloc_trim(0) in the server through gdb and prints its RSS),
# SCALE_MALLOC_INFO=DIR (writes the server's malloc_info and resident
# memory per mapping there, with the connections open and after the
# close), and
# SERVER_PRELOAD (a malloc library for the server, such as
# libmimalloc.so.2, to compare). Builds the server (examples/reliability.rs)
# in release mode; needs python3. Talks to 127.0.0.1 only. See docs/reliability.md for what each check means.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -gt 0 ]; then
    export SECTIONS="$*"
fi

# 10,000 connections need 10,000 descriptors on each side.
want=65536
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$want" ]; then
    want="$(ulimit -Hn)"
fi
ulimit -n "$want"
if [ "$want" -lt 10200 ]; then
    echo "note: only $want file descriptors: the scale checks will fail"
fi

cargo build --release --example reliability >&2
export RELIABILITY_BIN="${RELIABILITY_BIN:-target/release/examples/reliability}"

echo "machine: $(nproc) cores, $(free -g | awk '/^Mem/ {print $2}') GiB, $(uname -sr); load $(cut -d' ' -f1-3 /proc/loadavg)"
exec python3 scripts/reliability.py
