#!/usr/bin/env bash
# Runs every fuzz target (or those named) and prints executions, seconds,
# coverage (edges, features) and corpus (inputs/size) per target.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS is each target's time (FUZZ_RUNS=N also stops one after N
# executions; FUZZ_SEED=N makes a run repeatable: with a fixed seed and a
# run count reached before the time is up, the same binary makes the same
# inputs). Without it each target runs until 10
# million executions or 30 minutes, whichever comes first. Built with
# cargo-fuzz on a nightly toolchain when both are installed, else with
# cargo on the stable toolchain and the same coverage instrumentation
# (rustc's stable `-C passes=sancov-module` and LLVM options: what
# `cargo fuzz build -s none` passes, no sanitizer), so it needs nothing but
# a C++ compiler for libFuzzer itself. One process per
# target (libFuzzer's -jobs=1), so it takes one core; run it under
# `nice -n 19` on a shared machine. The corpus grows in fuzz/corpus/TARGET,
# seeded from fuzz/seeds/TARGET; crashes land in fuzz/artifacts/TARGET.
# Exits non-zero when a target crashed, hung or ran out of memory.
set -uo pipefail
cd "$(dirname "$0")"

SECS="${1:-}"
shift || true
TARGETS=("$@")

# No sanitizer: the workspace forbids unsafe code, and without ASan the
# targets run several times faster; debug assertions stay on.
mkdir -p artifacts
HOST=$(rustc -vV | sed -n 's/^host: //p')
if cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo +nightly fuzz build -O -a -s none >/dev/null 2>artifacts/build.log || {
        cat artifacts/build.log
        exit 2
    }
    [ "${#TARGETS[@]}" -gt 0 ] || mapfile -t TARGETS < <(cargo +nightly fuzz list)
else
    # The instrumentation cargo-fuzz asks for, for the target only (with
    # --target, build scripts and proc macros are built without it).
    flags=(--cfg fuzzing -Cdebug-assertions -Cpasses=sancov-module
        -Cllvm-args=-sanitizer-coverage-level=4
        -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
        -Cllvm-args=-sanitizer-coverage-pc-table
        -Cllvm-args=-sanitizer-coverage-trace-compares)
    [ "$(uname -s)" = Linux ] && flags+=(-Cllvm-args=-sanitizer-coverage-stack-depth)
    RUSTFLAGS="${flags[*]} ${RUSTFLAGS:-}" cargo build --release --target "$HOST" --bins \
        >/dev/null 2>artifacts/build.log || {
        cat artifacts/build.log
        exit 2
    }
    # The targets: the [[bin]] sections of Cargo.toml.
    [ "${#TARGETS[@]}" -gt 0 ] ||
        mapfile -t TARGETS < <(awk '/^\[\[bin\]\]/ {b = 1} b && /^name *=/ {gsub(/[" ]/, "", $0); sub(/name=/, ""); print; b = 0}' Cargo.toml)
fi
BIN=target/$HOST/release

if [ -n "$SECS" ]; then
    LIMIT=(-max_total_time="$SECS")
    # FUZZ_RUNS=N also stops a target after N executions.
    [ -n "${FUZZ_RUNS:-}" ] && LIMIT+=(-runs="$FUZZ_RUNS")
else
    LIMIT=(-runs=10000000 -max_total_time=1800)
fi
[ -n "${FUZZ_SEED:-}" ] && LIMIT+=(-seed="$FUZZ_SEED")

status=0
failed=()
printf '%-18s %12s %8s %8s %8s %12s %s\n' target execs secs cov features corpus result
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    before=$(ls "artifacts/$t" | grep -c -E '^(crash|leak|timeout|oom)-')
    seeds=()
    [ -d "seeds/$t" ] && seeds=("seeds/$t")
    log="artifacts/$t/last-run.log"
    start=$(date +%s)
    "$BIN/$t" "corpus/$t" "${seeds[@]}" -artifact_prefix="artifacts/$t/" \
        -max_len=4096 -timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
        "${LIMIT[@]}" >"$log" 2>&1
    rc=$?
    end=$(date +%s)
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    # Inputs/size, as libFuzzer last reported the corpus.
    corp=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$log" | tail -1 | cut -d' ' -f2)
    result=ok
    if [ "$rc" -ne 0 ]; then
        # libFuzzer names a hang past -timeout and memory past
        # -rss_limit_mb (the only leak check without a sanitizer).
        found=$(ls -t "artifacts/$t" | grep -E '^(crash|leak|timeout|oom)-' | head -1)
        after=$(ls "artifacts/$t" | grep -c -E '^(crash|leak|timeout|oom)-')
        if grep -q 'libFuzzer: timeout' "$log"; then
            kind=TIMEOUT
        elif grep -q 'libFuzzer: out-of-memory' "$log"; then
            kind=OUT-OF-MEMORY
        else
            kind=CRASH
        fi
        if [ "$after" -gt "$before" ]; then
            result="$kind: artifacts/$t/$found (see $log)"
        else
            result="FUZZER FAILED, exit status $rc, no input saved (see $log)"
        fi
        status=1
        failed+=("$t")
    fi
    printf '%-18s %12s %8s %8s %8s %12s %s\n' "$t" "${execs:-?}" "$((end - start))" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done
# What a failure was, in the output itself (a CI log keeps nothing else):
# the end of the target's log and the input that failed, in hex, for
# `xxd -r -p > input` and `TARGET input` to replay.
for t in "${failed[@]}"; do
    echo
    echo "==> $t: end of artifacts/$t/last-run.log"
    tail -n 40 "artifacts/$t/last-run.log"
    found=$(ls -t "artifacts/$t" | grep -E '^(crash|leak|timeout|oom)-' | head -1)
    if [ -n "$found" ]; then
        echo "==> $t: artifacts/$t/$found ($(wc -c <"artifacts/$t/$found") bytes, hex)"
        od -An -v -tx1 "artifacts/$t/$found" | tr -d ' \n' | fold -w 96
        echo
    fi
done
exit "$status"
