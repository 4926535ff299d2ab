#!/usr/bin/env bash
# Memory of the FastCGI server: idle RSS, and peak RSS while a large request
# body streams through it. libfcgi's cgi-fcgi is the web server: it sends
# CONTENT_LENGTH bytes of its stdin as FCGI_STDIN records to
# `conformance fastcgi`, whose /environ route reads the body to its end
# (counting it, keeping none of it) and answers with the count.
#
# Targets: idle RSS under 8 MB; peak RSS during a 256 MiB upload under 32 MB;
# with BASELINE, idle and peak RSS no higher than the baseline build's.
#
# Usage: scripts/bench-fastcgi-memory.sh [MIB] [--help]   (MIB default 256)
#   BASELINE=REV  also build git revision REV of this repository (a commit,
#                 tag or branch) the same way, measure the two builds in
#                 interleaved runs and print each one's figures and the
#                 ratio ours/baseline: a comparison that holds on any
#                 machine, where the absolute figures depend on the kernel,
#                 libc and page cache. REV's files are exported (git
#                 archive) to TARGET/baseline-SHA/src and built into
#                 TARGET/baseline-SHA/target (TARGET is CARGO_TARGET_DIR
#                 or ./target), kept for the next run; delete that
#                 directory when done. (Cargo reads the .cargo/config.toml
#                 of the directories above too, so this checkout's, if
#                 any, applies to both builds.)
#   ROUNDS=N      runs of each build (default 1; 3 with BASELINE or EXTRA)
#   EXTRA="NAME=PATH ..."  also measure these `conformance` binaries, built
#                 beforehand (say with other build settings, each in a
#                 target directory of its own), in the same rounds
#   CARGO_TARGET_DIR is honoured by the build, as usual, and so are
#   RUSTFLAGS and CARGO_PROFILE_RELEASE_* (build settings of the binary,
#   such as CARGO_PROFILE_RELEASE_LTO=thin, which change the file-backed
#   part; use a target directory of their own), and GATEWAY_PACK_RELOCS=0
#   (see build.rs). With BASELINE they apply to both builds.
#
# The figures: RSS is VmRSS of /proc/PID/status after one small request
# (idle) and VmHWM after the upload (peak), split into anonymous memory
# (heap, stacks, relocated data: the server's own) and file-backed pages
# (code and read-only data of the binary and its libraries, which depend
# on the binary's size and layout and on what of it is in the page cache:
# the kernel maps up to 64 kB around each page touched).
# Needs cgi-fcgi (Debian package libfcgi-bin; installed when run as root).
set -euo pipefail

BENCH=bench-fastcgi-memory
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

MIB=256
for arg in "$@"; do
    case "$arg" in
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) [[ "$arg" =~ ^[0-9]+$ ]] || die "the size is a number of MiB, got '$arg' (try --help)"; MIB=$arg ;;
    esac
done
BASELINE=${BASELINE:-}
EXTRA=${EXTRA:-}
if [ -n "$BASELINE$EXTRA" ]; then ROUNDS=${ROUNDS:-3}; else ROUNDS=${ROUNDS:-1}; fi
positive MIB ROUNDS
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
need_pkg cgi-fcgi libfcgi-bin

# Builds `conformance` from the sources in $1 into the target directory $2.
build() {
    (cd "$1" && CARGO_TARGET_DIR="$2" cargo build --release --example conformance >&2) ||
        die "cargo build failed in $1"
    [ -x "$2/release/examples/conformance" ] || die "$2/release/examples/conformance is missing"
}

if [ -n "$BASELINE" ]; then
    SHA=$(git -C "$ROOT" rev-parse --verify --quiet "$BASELINE^{commit}") ||
        die "BASELINE=$BASELINE is not a commit of $ROOT"
fi
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET" in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
build "$ROOT" "$TARGET"
NAMES=(ours)
BINS=("$TARGET/release/examples/conformance")
if [ -n "$BASELINE" ]; then
    BASE_DIR=$TARGET/baseline-${SHA:0:12}
    if [ ! -e "$BASE_DIR/src/Cargo.toml" ]; then
        say "exporting $BASELINE (${SHA:0:12}) to $BASE_DIR/src"
        rm -rf "$BASE_DIR/src"
        mkdir -p "$BASE_DIR/src"
        git -C "$ROOT" archive "$SHA" | tar -x -C "$BASE_DIR/src"
    fi
    say "building $BASELINE (${SHA:0:12}) in $BASE_DIR"
    build "$BASE_DIR/src" "$BASE_DIR/target"
    NAMES+=(baseline)
    BINS+=("$BASE_DIR/target/release/examples/conformance")
fi

for extra in $EXTRA; do
    [[ "$extra" == ?*=?* ]] || die "EXTRA takes NAME=PATH words, got '$extra'"
    [ -x "${extra#*=}" ] || die "${extra#*=} is not an executable"
    NAMES+=("${extra%%=*}")
    BINS+=("${extra#*=}")
done

bench_tmp
LEN=$((MIB * 1024 * 1024))
# measure BIN: starts the server, sends one small request, then the
# upload; prints "idle anon file peak seconds" (kB, kB, kB, kB, s).
# Run in this shell (not in a command substitution), so that PIDS keeps
# the server for the clean-up if anything fails.
measure() {
    local bin=$1 port pid out start end idle anon file peak
    port=$(free_port)
    "$bin" fastcgi "127.0.0.1:$port" >/dev/null 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_port "$port"
    kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$pid/status"; }
    # One small request first, so the idle figure includes a served request.
    env -i REQUEST_METHOD=GET SCRIPT_NAME=/hello SERVER_PROTOCOL=HTTP/1.1 \
        cgi-fcgi -bind -connect "127.0.0.1:$port" >/dev/null
    idle=$(kib VmRSS)
    anon=$(kib RssAnon)
    file=$(kib RssFile)
    start=$(date +%s.%N)
    out=$(head -c "$LEN" /dev/zero | env -i REQUEST_METHOD=POST SCRIPT_NAME=/environ \
        SERVER_PROTOCOL=HTTP/1.1 CONTENT_LENGTH="$LEN" CONTENT_TYPE=application/octet-stream \
        cgi-fcgi -bind -connect "127.0.0.1:$port")
    end=$(date +%s.%N)
    peak=$(kib VmHWM)
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    grep -q "\"body_len\":$LEN" <<<"$out" ||
        die "$bin did not see all $LEN bytes: $(head -c 300 <<<"$out")"
    echo "$idle $anon $file $peak $(awk -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", e - s }')"
}

# Interleaved: in each round every build runs once, the order turning
# from round to round, so a change of the machine's state between rounds
# touches both.
: >"$TMP/results"
for round in $(seq "$ROUNDS"); do
    order=$(seq 0 $((${#BINS[@]} - 1)))
    [ $((round % 2)) = 0 ] && order=$(tac <<<"$order")
    for i in $order; do
        measure "${BINS[$i]}" >"$TMP/run"
        echo "${NAMES[$i]} $round $(cat "$TMP/run")" >>"$TMP/results"
        say "round $round ${NAMES[$i]}: idle, anonymous, file-backed, peak (kB), seconds: $(cat "$TMP/run")"
    done
done

python3 - "$MIB" "$TMP/results" "$BASELINE" <<'PY'
import statistics, sys
mib, path, baseline = int(sys.argv[1]), sys.argv[2], sys.argv[3]
runs = {}
for line in open(path):
    name, rnd, idle, anon, file, peak, secs = line.split()
    runs.setdefault(name, []).append((int(idle), int(anon), int(file), int(peak), float(secs)))
for name, rs in runs.items():
    for idle, anon, file, peak, secs in rs:
        print(f"{name:8} idle RSS {idle} kB = {anon} kB anonymous + {file} kB file-backed; "
              f"peak {peak} kB; {mib / secs:.0f} MiB/s through cgi-fcgi")
med = {name: [statistics.median(r[k] for r in rs) for k in range(5)] for name, rs in runs.items()}
for name, (idle, anon, file, peak, secs) in med.items():
    label = f"baseline {baseline}" if name == "baseline" else name
    print(f"median of {len(runs[name])}: {label}: idle RSS {idle / 1024:.2f} MiB "
          f"({anon:.0f} kB anonymous + {file:.0f} kB file-backed) | "
          f"peak RSS during a {mib} MiB upload {peak / 1024:.2f} MiB")
idle, peak = med["ours"][0], med["ours"][3]
print(f"{'PASS' if idle < 8 * 1024 else 'MISS'} idle RSS {idle / 1024:.2f} MiB (target < 8 MB)")
print(f"{'PASS' if peak < 32 * 1024 else 'MISS'} upload peak RSS {peak / 1024:.2f} MiB (target < 32 MB)")
for name in med:
    if name in ("ours", "baseline"):
        continue
    print(f"ratio {name}/ours: idle {med[name][0] / idle:.3f} ({med[name][0] - idle:+.0f} kB), "
          f"anonymous {med[name][1] / med['ours'][1]:.3f}, file-backed {med[name][2] / med['ours'][2]:.3f}, "
          f"peak {med[name][3] / peak:.3f} ({med[name][3] - peak:+.0f} kB)")
if "baseline" in med:
    bidle, bpeak = med["baseline"][0], med["baseline"][3]
    print(f"ratio ours/baseline: idle {idle / bidle:.3f} ({idle - bidle:+.0f} kB), "
          f"anonymous {med['ours'][1] / med['baseline'][1]:.3f}, "
          f"file-backed {med['ours'][2] / med['baseline'][2]:.3f}, "
          f"peak {peak / bpeak:.3f} ({peak - bpeak:+.0f} kB)")
    print(f"{'PASS' if idle <= bidle else 'MISS'} idle RSS {idle:.0f} kB "
          f"(target <= baseline {baseline}: {bidle:.0f} kB)")
    print(f"{'PASS' if peak <= bpeak else 'MISS'} upload peak RSS {peak:.0f} kB "
          f"(target <= baseline {baseline}: {bpeak:.0f} kB)")
PY
