#!/usr/bin/env bash
# Runs every fuzz target (or those named) and prints executions, seconds,
# coverage (edges, features) and corpus (inputs/size) per target.
#
#   fuzz/run.sh [SECONDS] [TARGET...]
#
# SECONDS is each target's time (FUZZ_RUNS=N also stops one after N
# executions). Without it each target runs until 10
# million executions or 30 minutes, whichever comes first. Needs a nightly
# toolchain and cargo-fuzz (`cargo install cargo-fuzz`). One process per
# target (libFuzzer's -jobs=1), so it takes one core; run it under
# `nice -n 19` on a shared machine. The corpus grows in fuzz/corpus/TARGET,
# seeded from fuzz/seeds/TARGET; crashes land in fuzz/artifacts/TARGET.
# Exits non-zero when a target crashed, hung or ran out of memory.
set -uo pipefail
cd "$(dirname "$0")"

SECS="${1:-}"
shift || true
TARGETS=("$@")
if [ "${#TARGETS[@]}" -eq 0 ]; then
    mapfile -t TARGETS < <(cargo +nightly fuzz list)
fi

# No sanitizer: the workspace forbids unsafe code, and without ASan the
# targets run several times faster; debug assertions stay on.
mkdir -p artifacts
cargo +nightly fuzz build -O -a -s none >/dev/null 2>artifacts/build.log || {
    cat artifacts/build.log
    exit 2
}
BIN=target/x86_64-unknown-linux-gnu/release

if [ -n "$SECS" ]; then
    LIMIT=(-max_total_time="$SECS")
    # FUZZ_RUNS=N also stops a target after N executions.
    [ -n "${FUZZ_RUNS:-}" ] && LIMIT+=(-runs="$FUZZ_RUNS")
else
    LIMIT=(-runs=10000000 -max_total_time=1800)
fi

status=0
printf '%-18s %12s %8s %8s %8s %12s %s\n' target execs secs cov features corpus result
for t in "${TARGETS[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
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
        if grep -q 'libFuzzer: timeout' "$log"; then
            result="TIMEOUT (see $log)"
        elif grep -q 'libFuzzer: out-of-memory' "$log"; then
            result="OUT-OF-MEMORY (see $log)"
        else
            result="CRASH (see $log)"
        fi
        status=1
    fi
    printf '%-18s %12s %8s %8s %8s %12s %s\n' "$t" "${execs:-?}" "$((end - start))" \
        "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result"
done
exit "$status"
