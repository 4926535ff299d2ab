#!/usr/bin/env bash
# Memory of the FastCGI server: idle RSS, and peak RSS while a large request
# body streams through it. libfcgi's cgi-fcgi is the web server: it sends
# CONTENT_LENGTH bytes of its stdin as FCGI_STDIN records to
# `conformance fastcgi`, whose /environ route reads the body to its end
# (counting it, keeping none of it) and answers with the count.
#
# Targets: idle RSS under 8 MB; peak RSS during a 256 MiB upload under 32 MB.
#
# Usage: scripts/bench-fastcgi-memory.sh [MIB]     (default 256)
#   CARGO_TARGET_DIR is honoured by the build, as usual, and so are
#   RUSTFLAGS and CARGO_PROFILE_RELEASE_LTO (build settings of the binary
#   that change the file-backed part, such as
#   CARGO_PROFILE_RELEASE_LTO=fat RUSTFLAGS="-C link-arg=-Wl,-z,pack-relative-relocs";
#   use a target directory of their own).
# Needs cgi-fcgi (Debian package libfcgi-bin; installed when run as root).
set -euo pipefail

die() { echo "bench-fastcgi-memory: error: $*" >&2; exit 1; }
MIB=${1:-256}
[[ "$MIB" =~ ^[0-9]+$ ]] || die "the size is a number of MiB, got '$MIB'"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

if ! command -v cgi-fcgi >/dev/null; then
    [ "$(id -u)" = 0 ] || die "cgi-fcgi is missing (Debian package libfcgi-bin)"
    apt-get install -y -q libfcgi-bin >&2 || { apt-get update -q >&2 && apt-get install -y -q libfcgi-bin >&2; }
fi

(cd "$ROOT" && cargo build --release --example conformance >&2) || die "cargo build failed"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/conformance"
[ -x "$BIN" ] || die "$BIN is missing"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN" fastcgi "127.0.0.1:$PORT" >/dev/null 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.05
done
kib() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$PID/status"; }

# One small request first, so the idle figure includes a served request.
env -i REQUEST_METHOD=GET SCRIPT_NAME=/hello SERVER_PROTOCOL=HTTP/1.1 \
    cgi-fcgi -bind -connect "127.0.0.1:$PORT" >/dev/null
IDLE=$(kib VmRSS)
# The split: anonymous memory (heap, stacks, relocated data) is the
# server's own; file-backed pages (code and read-only data of the binary
# and its libraries) depend on the binary's size and on what of it is in
# the page cache (the kernel maps up to 64 kB around each page touched).
IDLE_ANON=$(kib RssAnon)
IDLE_FILE=$(kib RssFile)

LEN=$((MIB * 1024 * 1024))
START=$(date +%s.%N)
OUT=$(head -c "$LEN" /dev/zero | env -i REQUEST_METHOD=POST SCRIPT_NAME=/environ \
    SERVER_PROTOCOL=HTTP/1.1 CONTENT_LENGTH="$LEN" CONTENT_TYPE=application/octet-stream \
    cgi-fcgi -bind -connect "127.0.0.1:$PORT")
END=$(date +%s.%N)
PEAK=$(kib VmHWM)
grep -q "\"body_len\":$LEN" <<<"$OUT" || die "the server did not see all $LEN bytes: $(head -c 300 <<<"$OUT")"

python3 - "$IDLE" "$PEAK" "$MIB" "$START" "$END" "$IDLE_ANON" "$IDLE_FILE" <<'PY'
import sys
idle, peak, mib, start, end = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
anon, file = int(sys.argv[6]), int(sys.argv[7])
secs = end - start
print(f"idle RSS {idle / 1024:.1f} MiB | peak RSS during a {mib} MiB upload {peak / 1024:.1f} MiB | "
      f"{mib / secs:.0f} MiB/s through cgi-fcgi")
print(f"idle RSS {idle} kB = {anon} kB anonymous + {file} kB file-backed; peak {peak} kB")
print(f"{'PASS' if idle < 8 * 1024 else 'MISS'} idle RSS {idle / 1024:.1f} MiB (target < 8 MB)")
print(f"{'PASS' if peak < 32 * 1024 else 'MISS'} upload peak RSS {peak / 1024:.1f} MiB (target < 32 MB)")
PY
