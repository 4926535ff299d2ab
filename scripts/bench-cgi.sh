#!/usr/bin/env bash
# Per-request cost of a CGI program: process start to exit, as a web server
# pays it for every request. Programs answering the same GET with
# "Hello, world!\n", measured side by side in one run:
#
#   ours  gateway-cgi/examples/cgi_hello (gateway_cgi::run),
#         cargo build --profile cgi -p gateway-cgi --example cgi_hello
#         (the workspace's `cgi` profile: release with whole-program LTO)
#   rust  scripts/bench/hello.rs, one write to stdout: the least a Rust
#         program does; built by cargo with the same profile (the
#         workspace's [profile.*] sections copied) and the same link mode as
#         ours, so ours/rust is what gateway-cgi adds
#   C     scripts/bench/hello.c, one printf, gcc -O2
#   Go    scripts/bench/hello_cgi.go, net/http/cgi from Go's standard library
#
# Each is timed from a copy in a temporary directory, as a web server runs a
# program installed into its cgi-bin (a binary fresh from the linker starts
# slower; see "measured from a copy" below).
#
# Targets: median(ours) / median(rust) <= 1.15 in each link mode measured,
# median(ours) / median(C) <= 1.5 and median(ours) / median(Go) < 1.0 (both
# for the statically linked build when it is measured).
#
# Usage: scripts/bench-cgi.sh [--quick] [--help]
#   RUNS=N        timed runs per program in total (default 1500; 150 with --quick)
#   ROUNDS=N      hyperfine rounds the runs are split into (default 15; 3 with --quick)
#   WARMUP=N      untimed runs per program before each round (default 20; 10)
#   LINK=both     (default) measure ours and rust both statically and
#                 dynamically linked
#   LINK=static   only the statically linked builds, the recommended build
#                 for CGI programs: RUSTFLAGS="-C target-feature=+crt-static"
#                 cargo build --profile cgi --target <host triple> (start-up skips
#                 the dynamic loader, as a C program linked statically would)
#   LINK=dynamic  only the default builds (dynamically linked to libc)
#   OURS_BIN=P    measure this binary as "ours" instead of building cgi_hello
#                 (one link mode: LINK=static or dynamic says which rust to
#                 build beside it; default dynamic)
#   PROFILE=P     the cargo profile both Rust programs are built with
#                 (default cgi; PROFILE=release measures the plain release build)
#   RELR=1        link both Rust programs with packed relative relocations
#                 (-C link-arg=-Wl,-z,pack-relative-relocs: GNU ld >= 2.38 or
#                 lld, glibc >= 2.36), in every link mode measured
#   COUNTS=0      skip the stable figures (default: when valgrind is
#                 installed, instructions and cold cache lines of one run
#                 of each Rust program under cachegrind, with page faults)
#   STRICT=1      exit 1 when a target is missed (default: report only)
#   KEEP_TMP=1    keep the temporary build dir (hyperfine JSON files are there)
#   CARGO_TARGET_DIR is honoured by the cargo build of ours, as usual.
#
# cgi_hello is an example of the gateway-cgi package, not of the workspace's
# root package: built with -p gateway-cgi it gets the dependency features a
# CGI program has (the root package's examples also run socket servers and
# turn on tokio's multi-thread scheduler and signal handling, which add
# libm, a larger binary and a signal driver to every start).
#
# Needs root (or the tools already present): installs hyperfine, golang-go,
# gcc, time and python3 with apt-get when one of them is missing.
set -euo pipefail

BENCH=bench-cgi
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

bench_args "$@"

if [ "$QUICK" = 1 ]; then
    RUNS=${RUNS:-150} ROUNDS=${ROUNDS:-3} WARMUP=${WARMUP:-10}
else
    RUNS=${RUNS:-1500} ROUNDS=${ROUNDS:-15} WARMUP=${WARMUP:-20}
fi
for v in RUNS ROUNDS WARMUP; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
done
if [ "$RUNS" -lt 2 ] || [ "$ROUNDS" -lt 1 ]; then die "RUNS must be >= 2 and ROUNDS >= 1"; fi
PROFILE=${PROFILE:-cgi}
[[ "$PROFILE" =~ ^[A-Za-z0-9_-]+$ ]] || die "PROFILE must be a cargo profile name, got '$PROFILE'"
PER_ROUND=$(( (RUNS + ROUNDS - 1) / ROUNDS ))
[ "$PER_ROUND" -ge 2 ] || PER_ROUND=2

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_SRC="$ROOT/scripts/bench"

# ---------------------------------------------------------------- tools
missing=()
command -v hyperfine >/dev/null || missing+=(hyperfine)
command -v go >/dev/null || [ -x /usr/lib/go/bin/go ] || missing+=(golang-go)
command -v gcc >/dev/null || missing+=(gcc)
[ -x /usr/bin/time ] || missing+=(time)
command -v python3 >/dev/null || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing ${missing[*]}; run as root or install them"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "${missing[@]}" >&2; then
        apt-get update -q >&2 || die "apt-get update failed"
        apt-get install -y -q "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
    fi
fi
GO=$(command -v go || echo /usr/lib/go/bin/go)
HYPERFINE=$(command -v hyperfine)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-cgi.XXXXXX")
if [ "${KEEP_TMP:-0}" = 1 ]; then
    trap 'say "kept $WORK"' EXIT
else
    trap 'rm -rf "$WORK"' EXIT
fi

# ---------------------------------------------------------------- builds
HOST=$(rustc -vV | sed -n 's/^host: //p')
[ -n "$HOST" ] || die "rustc -vV did not name the host triple"

# Prints the path of the executable named $1 from cargo's JSON messages in $2.
cargo_exe() {
    python3 - "$1" "$2" <<'PY'
import json, sys
name, path = sys.argv[1], sys.argv[2]
exe = ""
for line in open(path, encoding="utf-8", errors="replace"):
    try:
        msg = json.loads(line)
    except ValueError:
        continue
    if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == name:
        exe = msg.get("executable") or exe
print(exe)
PY
}

# The link mode's cargo arguments and RUSTFLAGS. With an explicit --target,
# RUSTFLAGS reach only the target crates, not build scripts or proc-macros.
link_args() {
    case "$1" in
        static) echo "--target $HOST" ;;
        dynamic) echo "" ;;
    esac
}
RELR_FLAGS=""
[ "${RELR:-0}" = 1 ] && RELR_FLAGS="-C link-arg=-Wl,-z,pack-relative-relocs"
link_rustflags() {
    case "$1" in
        static) echo "${RUSTFLAGS:-} -C target-feature=+crt-static $RELR_FLAGS" ;;
        dynamic) echo "${RUSTFLAGS:-} $RELR_FLAGS" ;;
    esac
}

# build_ours MODE: cgi_hello in MODE; prints the binary's path.
build_ours() {
    local mode=$1 json="$WORK/cargo-ours-$1.json" exe
    say "ours ($mode): RUSTFLAGS=\"$(link_rustflags "$mode")\" cargo build --profile $PROFILE -p gateway-cgi --example cgi_hello $(link_args "$mode")"
    # shellcheck disable=SC2046
    if ! (cd "$ROOT" && RUSTFLAGS="$(link_rustflags "$mode")" cargo build --profile "$PROFILE" \
        -p gateway-cgi --example cgi_hello --message-format=json-render-diagnostics \
        $(link_args "$mode")) >"$json"; then
        die "cargo build of cgi_hello ($mode) FAILED (see the messages above); nothing was measured"
    fi
    exe=$(cargo_exe cgi_hello "$json")
    [ -n "$exe" ] && [ -x "$exe" ] || die "cargo reported success but gave no cgi_hello executable"
    echo "$exe"
}

# build_rust MODE: scripts/bench/hello.rs as a package of its own with the
# workspace's profiles (read from Cargo.toml), built with PROFILE in MODE.
build_rust() {
    local mode=$1 dir="$WORK/rust-$1" json="$WORK/cargo-rust-$1.json" exe
    mkdir -p "$dir/src"
    cp "$BENCH_SRC/hello.rs" "$dir/src/main.rs"
    {
        printf '[package]\nname = "hello_rs"\nversion = "0.0.0"\nedition = "2024"\npublish = false\n\n'
        printf '[workspace]\n\n'
        # The same [profile.*] sections as the workspace's, so both are
        # built alike.
        workspace_profiles
    } >"$dir/Cargo.toml"
    say "rust ($mode): RUSTFLAGS=\"$(link_rustflags "$mode")\" cargo build --profile $PROFILE (scripts/bench/hello.rs) $(link_args "$mode")"
    # shellcheck disable=SC2046
    if ! (cd "$dir" && CARGO_TARGET_DIR="$dir/target" RUSTFLAGS="$(link_rustflags "$mode")" \
        cargo build --profile "$PROFILE" --offline --message-format=json-render-diagnostics \
        $(link_args "$mode")) >"$json"; then
        die "cargo build of scripts/bench/hello.rs ($mode) FAILED"
    fi
    exe=$(cargo_exe hello_rs "$json")
    [ -n "$exe" ] && [ -x "$exe" ] || die "cargo gave no hello_rs executable"
    echo "$exe"
}

NAMES=()
BINS=()
if [ -n "${OURS_BIN:-}" ]; then
    [ -x "$OURS_BIN" ] || die "OURS_BIN=$OURS_BIN is not an executable file"
    MODE=${LINK:-dynamic}
    case "$MODE" in static | dynamic) ;; *) die "with OURS_BIN, LINK must be static or dynamic" ;; esac
    OURS=$(cd "$(dirname "$OURS_BIN")" && pwd)/$(basename "$OURS_BIN")
    say "ours: using OURS_BIN=$OURS (not building cgi_hello)"
    rust_bin=$(build_rust "$MODE")
    NAMES+=("ours-$MODE" "rust-$MODE")
    BINS+=("$OURS" "$rust_bin")
else
    LINK=${LINK:-both}
    case "$LINK" in
        both) MODES=(static dynamic) ;;
        static | dynamic) MODES=("$LINK") ;;
        *) die "LINK must be both, static or dynamic, got '$LINK'" ;;
    esac
    for mode in "${MODES[@]}"; do
        ours_bin=$(build_ours "$mode")
        rust_bin=$(build_rust "$mode")
        NAMES+=("ours-$mode" "rust-$mode")
        BINS+=("$ours_bin" "$rust_bin")
    done
fi

say "C: gcc -O2 scripts/bench/hello.c"
C_BIN="$WORK/hello_c"
gcc -O2 -o "$C_BIN" "$BENCH_SRC/hello.c" || die "gcc failed on scripts/bench/hello.c"

say "Go: go build scripts/bench/hello_cgi.go ($("$GO" version | cut -d' ' -f3))"
GO_DIR="$WORK/go"
mkdir -p "$GO_DIR/src"
cp "$BENCH_SRC/hello_cgi.go" "$GO_DIR/src/main.go"
# Standard library only: a module with no requirements, the proxy switched off
# so nothing can be downloaded, caches kept inside the temporary dir.
printf 'module benchcgi\n\ngo 1.18\n' >"$GO_DIR/src/go.mod"
GO_BIN="$WORK/hello_go"
(cd "$GO_DIR/src" && env GO111MODULE=on GOFLAGS=-mod=mod GOPROXY=off GOTOOLCHAIN=local \
    GOTELEMETRY=off GOCACHE="$GO_DIR/cache" GOPATH="$GO_DIR/path" GOENV=off \
    "$GO" build -o "$GO_BIN" .) || die "go build failed on scripts/bench/hello_cgi.go"

NAMES+=(C Go)
BINS+=("$C_BIN" "$GO_BIN")
COUNT=${#NAMES[@]}

# Measured from a copy: every program is timed from a copy, as a web server
# runs one installed into its cgi-bin directory. A binary fresh from a
# linker that writes its output through a shared mapping (lld, the default
# for Rust on Linux, and Go's linker) sits in the page cache as single
# pages, which every start then maps one by one; a copy written with
# write(2) is held in large folios, which the kernel maps many pages at a
# time. On Linux 6.18 with ext4 the same cgi_hello took 15% longer and 9
# more page faults in place than copied (the trivial Rust program 10%
# longer), so measuring builds in place would tax the larger binary for
# where it came from. ORIG_BINS keeps the build paths for the report.
ORIG_BINS=("${BINS[@]}")
mkdir -p "$WORK/bin"
for ((i = 0; i < COUNT; i++)); do
    cp "${BINS[$i]}" "$WORK/bin/${NAMES[$i]}" || die "cannot copy ${BINS[$i]}"
    BINS[i]="$WORK/bin/${NAMES[$i]}"
done

# ---------------------------------------------------------------- environment
# What Apache (mod_cgi, a GET to /cgi-bin/cgi_hello/hello?name=world) puts in
# a CGI program's environment; nothing else.
CGI_ENV=(
    "GATEWAY_INTERFACE=CGI/1.1"
    "SERVER_SOFTWARE=Apache/2.4.62 (Debian)"
    "SERVER_NAME=localhost"
    "SERVER_ADDR=127.0.0.1"
    "SERVER_PORT=80"
    "SERVER_ADMIN=webmaster@localhost"
    "SERVER_SIGNATURE=<address>Apache/2.4.62 (Debian) Server at localhost Port 80</address>"
    "SERVER_PROTOCOL=HTTP/1.1"
    "REMOTE_ADDR=127.0.0.1"
    "REMOTE_PORT=54321"
    "REQUEST_METHOD=GET"
    "REQUEST_SCHEME=http"
    "REQUEST_URI=/cgi-bin/cgi_hello/hello?name=world"
    "SCRIPT_NAME=/cgi-bin/cgi_hello"
    "SCRIPT_FILENAME=/usr/lib/cgi-bin/cgi_hello"
    "PATH_INFO=/hello"
    "PATH_TRANSLATED=/var/www/html/hello"
    "QUERY_STRING=name=world"
    "DOCUMENT_ROOT=/var/www/html"
    "CONTEXT_PREFIX=/cgi-bin/"
    "CONTEXT_DOCUMENT_ROOT=/usr/lib/cgi-bin/"
    "HTTP_HOST=localhost"
    "HTTP_USER_AGENT=Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    "HTTP_ACCEPT=text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
    "HTTP_ACCEPT_ENCODING=gzip, deflate, br, zstd"
    "HTTP_ACCEPT_LANGUAGE=en-US,en;q=0.5"
    "HTTP_CONNECTION=keep-alive"
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)
# Why `env -i "${CGI_ENV[@]}" hyperfine ...` rather than `hyperfine 'env -i ... prog'`:
# an `env` inside the timed command would add a whole exec (and env's own
# startup) to every sample, the same for all three, shrinking the ratios we
# care about. Instead hyperfine itself starts with exactly the CGI variables,
# once, and with -N (no shell) execs each program directly, so the child
# inherits that environment and nothing of the caller's (no RUST_BACKTRACE,
# LANG, proxies...). The one addition is hyperfine's own
# HYPERFINE_RANDOMIZED_ENVIRONMENT_OFFSET (random padding of a few KiB at most, which
# averages out stack-alignment luck), drawn the same way for all three.
# hyperfine gives the child stdin=/dev/null and, by default, stdout=/dev/null.
cgi_exec() { env -i "${CGI_ENV[@]}" "$@"; }

# ---------------------------------------------------------------- correctness
# A broken program must not win: each answer has to be a well-formed CGI
# response carrying the expected body, with exit status 0.
for ((i = 0; i < COUNT; i++)); do
    out="$WORK/out.${NAMES[$i]}" err="$WORK/err.${NAMES[$i]}"
    status=0
    cgi_exec "${BINS[$i]}" </dev/null >"$out" 2>"$err" || status=$?
    python3 - "${NAMES[$i]}" "$out" "$status" <<'PY' || die "${NAMES[$i]} (${BINS[$i]}) gave a wrong CGI response"
import sys
name, path, status = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(path, "rb").read()
def bad(why):
    print(f"bench-cgi: {name}: {why}; output was {data[:300]!r}", file=sys.stderr)
    sys.exit(1)
if status != 0:
    bad(f"exit status {status}")
ends = [(data.find(sep), sep) for sep in (b"\r\n\r\n", b"\n\n") if data.find(sep) >= 0]
if not ends:
    bad("no blank line after the header")
at, sep = min(ends)
head, body = data[:at], data[at + len(sep):]
fields = {}
for line in head.replace(b"\r\n", b"\n").split(b"\n"):
    key, colon, value = line.partition(b":")
    if not colon or not key or key != key.strip():
        bad(f"malformed header line {line!r}")
    fields[key.strip().lower()] = value.strip()
status_field = fields.get(b"status", b"200")
if not status_field.startswith(b"200"):
    bad(f"Status {status_field!r}")
if not fields.get(b"content-type", b"").startswith(b"text/plain"):
    bad("Content-Type is not text/plain")
if b"content-length" in fields and fields[b"content-length"] != str(len(body)).encode():
    bad(f"Content-Length {fields[b'content-length']!r} but body has {len(body)} bytes")
if body != b"Hello, world!\n":
    bad(f"body {body!r}")
PY
    [ -s "$err" ] && say "warning: ${NAMES[$i]} wrote to stderr: $(head -c 200 "$err")"
done
say "all $COUNT answer with a correct CGI response"

# ---------------------------------------------------------------- timing
# The machine is shared and noisy: the runs are split into ROUNDS hyperfine
# invocations, each with its own warmup, and the order of the programs is
# rotated from one round to the next, so a burst of load hits them all
# alike. Many short rounds interleave better than a few long ones. Samples
# are pooled per program afterwards; the per-round ratios show how noisy the
# run was, and the ratio of minimums is the figure least touched by load.
say "timing: $ROUNDS round(s) x $PER_ROUND runs per program, $WARMUP warmup runs each round"
for ((r = 0; r < ROUNDS; r++)); do
    args=()
    for ((k = 0; k < COUNT; k++)); do
        i=$(( (r + k) % COUNT ))
        args+=(-n "${NAMES[$i]}" "${BINS[$i]}")
    done
    cgi_exec "$HYPERFINE" -N --style basic --warmup "$WARMUP" --runs "$PER_ROUND" \
        --export-json "$WORK/round$r.json" "${args[@]}" </dev/null >&2 \
        || die "hyperfine failed in round $r"
done

# ---------------------------------------------------------------- memory
# Peak RSS: GNU time reports the child's ru_maxrss (KiB); time itself is the
# parent and is not counted. Max over a few runs.
# Minor page faults (ru_minflt) likewise, the least over those runs.
RSS=()
FAULTS=()
for ((i = 0; i < COUNT; i++)); do
    peak=0 faults=
    for _ in 1 2 3 4 5; do
        cgi_exec /usr/bin/time -f '%M %R' -o "$WORK/rss" "${BINS[$i]}" </dev/null >/dev/null 2>&1 \
            || die "${NAMES[$i]} failed under /usr/bin/time"
        read -r kib flt < <(tail -n 1 "$WORK/rss")
        [ "$kib" -gt "$peak" ] && peak=$kib
        if [ -z "$faults" ] || [ "$flt" -lt "$faults" ]; then faults=$flt; fi
    done
    RSS+=("$peak")
    FAULTS+=("$faults")
done

# ---------------------------------------------------------------- counts
# Stable figures beside the noisy times: one run of each Rust program under
# cachegrind, which counts instructions and simulates a cold cache (a line
# missed in its last level is one fetched from memory). A fresh process
# meets most of its code and data for the first time, so cold lines are
# what its start-up waits on; these counts do not move with the load.
COUNTS_FILE="$WORK/counts"
: >"$COUNTS_FILE"
if [ "${COUNTS:-1}" = 1 ] && command -v valgrind >/dev/null; then
    for ((i = 0; i < COUNT; i++)); do
        case "${NAMES[$i]}" in ours-* | rust-*) ;; *) continue ;; esac
        cgi_exec valgrind --tool=cachegrind --cache-sim=yes --cachegrind-out-file=/dev/null \
            "${BINS[$i]}" </dev/null >/dev/null 2>"$WORK/cg.${NAMES[$i]}" \
            || die "${NAMES[$i]} failed under cachegrind"
        awk -v n="${NAMES[$i]}" '
            { gsub(",", "") }
            /I *refs:/ { ir = $4 } /LLi misses:/ { lli = $4 } /LLd misses:/ { lld = $4 }
            END { if (ir != "") print n, ir, lli, lld }' "$WORK/cg.${NAMES[$i]}" >>"$COUNTS_FILE"
    done
elif [ "${COUNTS:-1}" = 1 ]; then
    say "valgrind not installed: no instruction counts"
fi

# ---------------------------------------------------------------- report
python3 - "$WORK" "$ROUNDS" "${STRICT:-0}" "$COUNT" "${NAMES[@]}" "${RSS[@]}" "${FAULTS[@]}" "${ORIG_BINS[@]}" <<'PY'
import json, os, statistics, sys
work, rounds, strict, count = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", int(sys.argv[4])
names = sys.argv[5:5 + count]
rss = dict(zip(names, sys.argv[5 + count:5 + 2 * count]))
faults = dict(zip(names, sys.argv[5 + 2 * count:5 + 3 * count]))
bins = dict(zip(names, sys.argv[5 + 3 * count:5 + 4 * count]))
counts = {}
for line in open(os.path.join(work, "counts")):
    n, ir, lli, lld = line.split()
    counts[n] = (int(ir), int(lli), int(lld))
times = {n: [] for n in names}
round_median = {n: [] for n in names}
for r in range(rounds):
    with open(os.path.join(work, f"round{r}.json")) as f:
        for res in json.load(f)["results"]:
            times[res["command"]] += res["times"]
            round_median[res["command"]].append(statistics.median(res["times"]))
ms = lambda s: s * 1e3
stat = {}
for n in names:
    t = sorted(times[n])
    stat[n] = dict(
        n=len(t), median=statistics.median(t), mean=statistics.fmean(t), min=t[0],
        p90=t[min(len(t) - 1, int(0.9 * len(t)))],
        sd=statistics.stdev(t) if len(t) > 1 else 0.0,
    )
w = max(len(n) for n in names)
print()
print(f"{'program':<{w}} {'runs':>6} {'median':>9} {'mean':>9} {'min':>9} {'p90':>9} {'stddev':>9} {'RSS KiB':>8} {'size KiB':>9} {'faults':>7}")
for n in names:
    s = stat[n]
    size = os.path.getsize(bins[n]) // 1024
    print(f"{n:<{w}} {s['n']:>6} {ms(s['median']):>6.3f} ms {ms(s['mean']):>6.3f} ms {ms(s['min']):>6.3f} ms "
          f"{ms(s['p90']):>6.3f} ms {ms(s['sd']):>6.3f} ms {rss[n]:>8} {size:>9} {faults[n]:>7}")

# (label, ours, peer, target, strictly below?)
checks = []
modes = [n[len("ours-"):] for n in names if n.startswith("ours-")]
for m in modes:
    checks.append((f"ours/rust ({m})", f"ours-{m}", f"rust-{m}", 1.15, False))
main = "ours-static" if "ours-static" in names else f"ours-{modes[0]}"
checks.append((f"ours/C ({main[5:]})", main, "C", 1.5, False))
checks.append((f"ours/Go ({main[5:]})", main, "Go", 1.0, True))

if counts:
    print()
    print("cachegrind, one run each (stable): instructions, cold cache lines (code + data)")
    for n in names:
        if n in counts:
            ir, lli, lld = counts[n]
            print(f"  {n:<{w}} {ir:>9,} instructions {lli:>6,} + {lld:>6,} = {lli + lld:>6,} lines")
    for m in [n[len("ours-"):] for n in names if n.startswith("ours-")]:
        a, b = counts.get(f"ours-{m}"), counts.get(f"rust-{m}")
        if a and b:
            print(f"  ours/rust ({m}): instructions {a[0] / b[0]:.2f}, cold lines {(a[1] + a[2]) / (b[1] + b[2]):.2f}"
                  f" (+{a[0] - b[0]:,} instructions, +{a[1] + a[2] - b[1] - b[2]:,} lines)")

print()
if rounds > 1:
    print("per-round median ratios (spread = noise):")
    for label, a, b, _, _ in checks:
        rr = [x / y for x, y in zip(round_median[a], round_median[b])]
        print(f"  {label:<18} " + " ".join(f"{x:.2f}" for x in rr) + f"   (median {statistics.median(rr):.2f})")
print("ratio of minimums: " + "  ".join(
    f"{label} {stat[a]['min'] / stat[b]['min']:.2f}" for label, a, b, _, _ in checks))
print()
for n in names:
    if n.startswith("ours-"):
        print(f"{n} binary: {bins[n]} (measured from a copy)")
print(" | ".join(f"{n} median {ms(stat[n]['median']):.3f} ms" for n in names))
ok_all = True
for label, a, b, target, strict_below in checks:
    ratio = stat[a]["median"] / stat[b]["median"]
    ok = ratio < target if strict_below else ratio <= target
    ok_all &= ok
    print(f"{'PASS' if ok else 'MISS'} {label} {ratio:.2f} (target {'<' if strict_below else '<='} {target})")
sys.exit(1 if strict and not ok_all else 0)
PY
