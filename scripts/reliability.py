#!/usr/bin/env python3
"""Reliability battery for the socket servers (FastCGI, SCGI, HTTP).

Run by scripts/reliability.sh, which builds the server and raises the file
descriptor limit. Prints one line per check:

    CHECK: ok|FAIL <name> <figure>

and a summary line at the end. Every client talks to 127.0.0.1 only; every
loop is bounded in count and time.

Environment: RELIABILITY_BIN (the server program), PROTOCOLS (default
"http scgi fastcgi"), SECTIONS (default "scale hostile faults soak"),
SCALE_CONNECTIONS (default 10000), SCALE_ROUNDS (default 1: how many
times the connections are opened and closed), SCALE_AFTER_CLOSE_S (default
3: how long after the connections closed the RSS is read), SCALE_TRIM_PROBE
(1: then call malloc_trim(0) in the server through gdb and print its RSS),
SCALE_MALLOC_INFO (a directory: write the server's malloc_info and
resident memory per mapping there, with the connections open and after
the close), SOAK_MINUTES (default 1),
SOAK_SAMPLE_S (default 60), SOAK_RATE (requests a second to each server,
default 20; 0 for no limit), SOAK_CLIENTS (default 4), SOAK_TOGETHER
(default 1: every server soaked at once, in one window), SERVER_PRELOAD (a malloc library the server
runs with, through LD_PRELOAD, to compare allocators).
"""

import asyncio
import os
import random
import re
import resource
import signal
import socket
import struct
import subprocess
import sys
import time

BIN = os.environ.get("RELIABILITY_BIN", "target/release/examples/reliability")
PROTOCOLS = os.environ.get("PROTOCOLS", "http scgi fastcgi").split()
SECTIONS = os.environ.get("SECTIONS", "scale hostile faults soak").split()
SCALE_N = int(os.environ.get("SCALE_CONNECTIONS", "10000"))
SCALE_ROUNDS = int(os.environ.get("SCALE_ROUNDS", "1"))
# How long after the last connection's descriptor closed the after-close
# RSS is read: the servers release memory a quiet second after a burst
# ends (MemoryRelease::QUIET), and an allocator may take a moment more.
AFTER_CLOSE_S = float(os.environ.get("SCALE_AFTER_CLOSE_S", "3"))
# SCALE_TRIM_PROBE=1: after the after-close figure, call glibc's
# malloc_trim(0) in the server through gdb and print its RSS then.
SCALE_TRIM_PROBE = os.environ.get("SCALE_TRIM_PROBE", "0") != "0"
# SCALE_MALLOC_INFO=DIR: with the connections open and again after the
# close, write glibc's malloc_info(0) of the server (through gdb) and its
# resident memory per mapping (/proc/PID/smaps) into DIR.
SCALE_MALLOC_INFO = os.environ.get("SCALE_MALLOC_INFO", "")
SOAK_MINUTES = float(os.environ.get("SOAK_MINUTES", "1"))
SOAK_SAMPLE_S = float(os.environ.get("SOAK_SAMPLE_S", "60"))
# Requests a second to each server during the soak (0: as fast as the
# clients go), from SOAK_CLIENTS clients; SOAK_TOGETHER=0 soaks the servers
# one after another instead of in one window.
SOAK_RATE = float(os.environ.get("SOAK_RATE", "20"))
SOAK_CLIENTS = int(os.environ.get("SOAK_CLIENTS", "4"))
SOAK_TOGETHER = os.environ.get("SOAK_TOGETHER", "1") != "0"
# The timeouts the hostile-client checks run with (every socket timeout).
SHORT_TIMEOUT_MS = 2000

RESULTS = []


def check(name, ok, figure):
    RESULTS.append(ok)
    print(f"CHECK: {'ok' if ok else 'FAIL'} {name} {figure}", flush=True)


def note(text):
    print(f"  {text}", flush=True)


# ---------------------------------------------------------------- the server


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """The reliability example, started on a free port."""

    def __init__(self, proto, max_connections=1024, timeout_ms=None, nofile=None, log=None):
        self.proto = proto
        self.port = free_port()
        env = dict(os.environ)
        env["RELIABILITY_MAX_CONNECTIONS"] = str(max_connections)
        env.setdefault("RUST_LOG", "warn")
        if timeout_ms is not None:
            env["RELIABILITY_TIMEOUT_MS"] = str(timeout_ms)
        # Another malloc for the server alone, to compare (a path to a
        # shared library such as libmimalloc.so.2).
        if os.environ.get("SERVER_PRELOAD"):
            env["LD_PRELOAD"] = os.environ["SERVER_PRELOAD"]
        self.log_path = log or f"/tmp/reliability-{proto}-{self.port}.log"
        self.log = open(self.log_path, "wb")

        def limits():
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        self.proc = subprocess.Popen(
            [BIN, proto, f"127.0.0.1:{self.port}"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            preexec_fn=limits,
        )
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"{proto} server exited: {self.log_text()}")
                time.sleep(0.05)
        else:
            raise RuntimeError(f"{proto} server did not start")
        # The probe connection above is closed; let the server notice.
        time.sleep(0.2)

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def log_text(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self, sig=signal.SIGTERM, wait=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(wait)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


# ------------------------------------------------------------ the protocols


def http_request(method, path, body=b"", keep=False, headers=()):
    head = [f"{method} {path} HTTP/1.1", "Host: localhost"]
    if body or method == "POST":
        head.append(f"Content-Length: {len(body)}")
    if not keep:
        head.append("Connection: close")
    head.extend(headers)
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def scgi_request(method, path, body=b""):
    path, _, query = path.partition("?")
    pairs = [
        ("CONTENT_LENGTH", str(len(body))),
        ("SCGI", "1"),
        ("REQUEST_METHOD", method),
        ("REQUEST_URI", path + ("?" + query if query else "")),
        ("SCRIPT_NAME", ""),
        ("PATH_INFO", path),
        ("QUERY_STRING", query),
        ("SERVER_NAME", "localhost"),
        ("SERVER_PORT", "80"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("HTTP_HOST", "localhost"),
    ]
    block = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in pairs)
    return str(len(block)).encode() + b":" + block + b"," + body


def fcgi_record(rtype, rid, content=b""):
    pad = -len(content) % 8
    return struct.pack(">BBHHBB", 1, rtype, rid, len(content), pad, 0) + content + b"\0" * pad


def fcgi_pair(name, value):
    def length(x):
        return bytes([len(x)]) if len(x) < 128 else struct.pack(">I", len(x) | 0x80000000)

    return length(name) + length(value) + name + value


def fcgi_params(method, path, body_len):
    path, _, query = path.partition("?")
    pairs = [
        ("REQUEST_METHOD", method),
        ("SCRIPT_NAME", ""),
        ("PATH_INFO", path),
        ("REQUEST_URI", path + ("?" + query if query else "")),
        ("QUERY_STRING", query),
        ("CONTENT_LENGTH", str(body_len)),
        ("SERVER_NAME", "localhost"),
        ("SERVER_PORT", "80"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("HTTP_HOST", "localhost"),
    ]
    return b"".join(fcgi_pair(k.encode(), v.encode()) for k, v in pairs)


def fcgi_request(method, path, body=b"", keep=False, rid=1):
    out = fcgi_record(1, rid, struct.pack(">HB5x", 1, 1 if keep else 0))
    params = fcgi_params(method, path, len(body))
    out += fcgi_record(4, rid, params) + fcgi_record(4, rid)
    for i in range(0, len(body), 65535):
        out += fcgi_record(5, rid, body[i : i + 65535])
    return out + fcgi_record(5, rid)


def encode(proto, method, path, body=b"", keep=False):
    if proto == "http":
        return http_request(method, path, body, keep)
    if proto == "scgi":
        return scgi_request(method, path, body)
    return fcgi_request(method, path, body, keep)


async def read_http(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    n = 0
    if "content-length" in headers:
        want = int(headers["content-length"])
        await reader.readexactly(want)
        n = want
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            await reader.readexactly(size + 2)
            n += size
    else:
        while chunk := await reader.read(65536):
            n += len(chunk)
    return status, n


def cgi_status(head):
    m = re.match(rb"Status: (\d{3})", head)
    return int(m.group(1)) if m else 200


async def read_scgi(reader):
    data = b""
    while chunk := await reader.read(65536):
        data += chunk
    if not data:
        raise ConnectionError("no response")
    head, _, body = data.partition(b"\r\n\r\n")
    return cgi_status(head), len(body)


FCGI_OVERLOADED = 2


async def read_fcgi(reader):
    """Returns (status, body length); status is 'overloaded' when refused."""
    out = b""
    while True:
        header = await reader.readexactly(8)
        _, rtype, _, clen, pad, _ = struct.unpack(">BBHHBB", header)
        content = await reader.readexactly(clen + pad)
        content = content[:clen]
        if rtype == 6:
            out += content
        elif rtype == 3:
            if content[4] == FCGI_OVERLOADED:
                return "overloaded", 0
            head, _, body = out.partition(b"\r\n\r\n")
            return cgi_status(head), len(body)


async def read_response(proto, reader):
    if proto == "http":
        return await read_http(reader)
    if proto == "scgi":
        return await read_scgi(reader)
    return await read_fcgi(reader)


async def request(proto, port, method="GET", path="/hello", body=b"", timeout=30):
    """One request on a fresh connection: (status, body length, seconds)."""
    start = time.monotonic()

    async def go():
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(encode(proto, method, path, body))
            await writer.drain()
            return await read_response(proto, reader)
        finally:
            writer.close()

    status, n = await asyncio.wait_for(go(), timeout)
    return status, n, time.monotonic() - start


def p99(samples):
    if not samples:
        return float("nan")
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * 0.99))]


async def probe(proto, port, seconds, interval=0.02):
    """Requests /hello on fresh connections for `seconds`: (latencies, failures)."""
    lat, failures = [], 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            status, _, t = await request(proto, port, timeout=10)
            if status == 200:
                lat.append(t)
            else:
                failures += 1
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError):
            failures += 1
        await asyncio.sleep(interval)
    return lat, failures


async def wait_closed(reader, limit):
    """Seconds until the peer closes (EOF or reset), reading whatever comes;
    None if still open after `limit`."""
    start = time.monotonic()
    try:
        while True:
            left = limit - (time.monotonic() - start)
            if left <= 0:
                return None
            chunk = await asyncio.wait_for(reader.read(65536), left)
            if not chunk:
                return time.monotonic() - start
    except (OSError, asyncio.IncompleteReadError):
        return time.monotonic() - start
    except asyncio.TimeoutError:
        return None


async def settle(srv, fd_base, limit=10):
    """Waits until the server's fd count is back to `fd_base`; its last count."""
    end = time.monotonic() + limit
    fds = srv.fds()
    while fds > fd_base and time.monotonic() < end:
        await asyncio.sleep(0.1)
        fds = srv.fds()
    return fds


async def steady_fds(srv, still=0.5, limit=5):
    """The server's fd count once it has not changed for `still` seconds
    (a connection closed by the last request may still be closing: a
    count read then would make the next check's baseline one too high)."""
    end = time.monotonic() + limit
    fds, since = srv.fds(), time.monotonic()
    while time.monotonic() < end:
        await asyncio.sleep(0.1)
        now = srv.fds()
        if now != fds:
            fds, since = now, time.monotonic()
        elif time.monotonic() - since >= still:
            break
    return fds


# --------------------------------------------------------------------- scale


async def open_idle(port, n, source, after_request=None):
    """Opens `n` connections from `source`; with `after_request` (a protocol),
    each carries one keep-alive request first. Returns the open writers."""
    conns = []
    sem = asyncio.Semaphore(256)

    async def one(i):
        async with sem:
            sock = socket.socket()
            sock.setblocking(False)
            sock.bind((source, 0))
            await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            reader, writer = await asyncio.open_connection(sock=sock)
            if after_request:
                writer.write(encode(after_request, "GET", "/hello", keep=True))
                await writer.drain()
                status, _ = await asyncio.wait_for(read_response(after_request, reader), 30)
                assert status == 200, status
            conns.append((reader, writer))

    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    errors = [r for r in results if isinstance(r, BaseException)]
    return conns, errors


def source_for(source, r):
    """Another loopback source address for round `r` (fresh port space)."""
    a, b, c, d = source.split(".")
    return f"{a}.{b}.{int(c) + r}.{d}"


def trim_probe(srv):
    """Calls glibc's malloc_trim(0) in the server through gdb (what the
    allocator keeps that it could hand back); the server's RSS after, kB."""
    subprocess.run(
        ["gdb", "-p", str(srv.proc.pid), "-batch", "-ex", "call (int) malloc_trim(0)"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    return srv.rss_kb()


def malloc_report(srv, name):
    """Writes the server's malloc_info(0) (through gdb: fopen, malloc_info,
    fclose in the server) and its resident memory per mapping into
    SCALE_MALLOC_INFO; read-only for the server's heap."""
    os.makedirs(SCALE_MALLOC_INFO, exist_ok=True)
    xml = os.path.abspath(os.path.join(SCALE_MALLOC_INFO, f"{name}.xml"))
    subprocess.run(
        [
            "gdb", "-p", str(srv.proc.pid), "-batch",
            "-ex", f'set $f = (void *) fopen("{xml}", "w")',
            "-ex", "call (int) malloc_info(0, $f)",
            "-ex", "call (int) fclose($f)",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )
    # Resident kB per mapping, largest first.
    maps, cur = [], None
    with open(f"/proc/{srv.proc.pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                cur = [line.strip(), 0, 0]
                maps.append(cur)
            elif line.startswith("Rss:"):
                cur[1] = int(line.split()[1])
            elif line.startswith("Size:"):
                cur[2] = int(line.split()[1])
    maps.sort(key=lambda m: -m[1])
    with open(os.path.join(SCALE_MALLOC_INFO, f"{name}.smaps"), "w") as f:
        for head, rss, size in maps:
            if rss:
                f.write(f"{rss:8} kB rss {size:8} kB size  {head}\n")
    note(f"{name}: malloc_info and smaps in {SCALE_MALLOC_INFO}")


async def scale(proto, phase, source):
    """10,000 idle connections: RSS per connection, a new request, and the
    figures once they are closed."""
    after = proto if phase == "after-request" else None
    srv = Server(proto, max_connections=SCALE_N + 1000, timeout_ms=600_000)
    try:
        for _ in range(50):
            await request(proto, srv.port)
        await asyncio.sleep(1)
        rss0, fd0 = srv.rss_kb(), srv.fds()
        t = time.monotonic()
        conns, errors = await open_idle(srv.port, SCALE_N, source, after)
        opened = time.monotonic() - t
        await asyncio.sleep(2)
        rss1, fd1 = srv.rss_kb(), srv.fds()
        if SCALE_MALLOC_INFO:
            malloc_report(srv, f"{proto}-{phase}-open")
        per_conn = (rss1 - rss0) * 1024 / max(1, len(conns))
        name = f"{proto}-{phase}"
        check(
            f"scale-open-{name}",
            not errors and fd1 - fd0 >= len(conns) * 0.99,
            f"{len(conns)}/{SCALE_N} open in {opened:.1f}s, server fds {fd0}->{fd1}"
            + (f", {len(errors)} errors ({errors[0]!r})" if errors else ""),
        )
        target = 4096
        check(
            f"scale-rss-per-conn-{name}",
            per_conn <= target,
            f"{per_conn / 1024:.2f} kB/conn (target <= {target // 1024} kB; RSS {rss0 / 1024:.1f}->{rss1 / 1024:.1f} MB)",
        )
        status, _, secs = await request(proto, srv.port, timeout=10)
        check(f"scale-new-request-{name}", status == 200 and secs < 1, f"{status} in {secs * 1000:.1f} ms")
        for _, w in conns:
            w.close()
        conns.clear()
        fd2 = await settle(srv, fd0, 20)
        await asyncio.sleep(AFTER_CLOSE_S)
        rss2 = srv.rss_kb()
        check(f"scale-fds-after-close-{name}", fd2 <= fd0 + 2, f"fds {fd0}->{fd1}->{fd2}")
        kept = (rss2 - rss0) / max(1, rss1 - rss0)
        check(
            f"scale-rss-after-close-{name}",
            kept <= 0.25,
            f"RSS {rss0 / 1024:.1f}->{rss1 / 1024:.1f}->{rss2 / 1024:.1f} MB ({kept * 100:.0f}% of the growth kept)",
        )
        if SCALE_MALLOC_INFO:
            malloc_report(srv, f"{proto}-{phase}-closed")
        if SCALE_TRIM_PROBE:
            rss3 = trim_probe(srv)
            note(
                f"{name} after malloc_trim(0) called through gdb: RSS {rss3 / 1024:.1f} MB "
                f"({(rss3 - rss0) / max(1, rss1 - rss0) * 100:.0f}% of the growth kept)"
            )
        # More rounds tell memory the allocator keeps (reused by the next
        # round) from memory that leaks (grows round after round).
        rounds = [(rss1, rss2)]
        for r in range(1, SCALE_ROUNDS):
            conns, errors = await open_idle(srv.port, SCALE_N, source_for(source, r), after)
            await asyncio.sleep(2)
            opened_rss = srv.rss_kb()
            for _, w in conns:
                w.close()
            conns.clear()
            await settle(srv, fd0, 20)
            await asyncio.sleep(AFTER_CLOSE_S)
            rounds.append((opened_rss, srv.rss_kb()))
        if SCALE_ROUNDS > 1:
            note(f"{name} rounds (RSS MB open, closed): " + ", ".join(f"({a / 1024:.1f}, {b / 1024:.1f})" for a, b in rounds))
    finally:
        srv.stop()


async def over_cap(proto):
    """Past max_connections: an immediate busy answer."""
    cap = 100
    srv = Server(proto, max_connections=cap)
    try:
        conns, errors = await open_idle(srv.port, cap, "127.0.0.1")
        await asyncio.sleep(0.5)
        t = time.monotonic()
        try:
            status, _, _ = await request(proto, srv.port, timeout=10)
        except Exception as e:  # noqa: BLE001
            status = repr(e)
        secs = time.monotonic() - t
        want = "overloaded" if proto == "fastcgi" else 503
        check(f"over-cap-{proto}", status == want and secs < 1, f"{status} in {secs * 1000:.1f} ms at {cap} open")
        for _, w in conns:
            w.close()
    finally:
        srv.stop()


# ------------------------------------------------------------------ hostile


async def slowloris(proto, port, limit):
    """A head sent one byte every 0.5 s: seconds until the server cuts it."""
    if proto == "http":
        data = b"GET /hello HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 200
    elif proto == "scgi":
        data = scgi_request("GET", "/hello")
    else:
        # A web server that stalls mid-record: a BEGIN_REQUEST, then the
        # PARAMS record a byte at a time.
        full = fcgi_request("GET", "/hello")
        data = full
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    first = 16 if proto == "fastcgi" else 4
    writer.write(data[:first])

    async def trickle():
        for b in data[first : len(data) - 1]:
            await asyncio.sleep(0.5)
            writer.write(bytes([b]))
            await writer.drain()

    task = asyncio.create_task(trickle())
    closed = await wait_closed(reader, limit)
    task.cancel()
    writer.close()
    return None if closed is None else time.monotonic() - start


async def body_stall(proto, port, limit):
    """A body that stops after 1000 of 100000 bytes."""
    body = b"x" * 100_000
    full = encode(proto, "POST", "/echo", body)
    cut = len(full) - len(body) + 1000 if proto != "fastcgi" else full.find(b"x" * 64) + 1000
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(full[:cut])
    await writer.drain()
    start = time.monotonic()
    closed = await wait_closed(reader, limit)
    writer.close()
    return closed if closed is None else time.monotonic() - start


async def never_reads(proto, port):
    """Asks for 1 GB and reads nothing; returns the open connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    writer.write(encode(proto, "GET", f"/bytes?n={1 << 30}"))
    await writer.drain()
    return reader, writer


def h2_frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


async def h2_idle_streams(port, limit):
    """HTTP/2 prior knowledge: ten streams opened (POST /echo, no body, no
    END_STREAM), then nothing. Seconds until the server closes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # :method POST (literal, indexed name 3), :scheme http, :path /echo,
    # :authority localhost.
    block = (
        b"\x43\x04POST"
        + b"\x86"
        + b"\x44\x05/echo"
        + b"\x41\x09localhost"
    )
    out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0)
    for i in range(10):
        out += h2_frame(1, 4, 1 + 2 * i, block)
    writer.write(out)
    await writer.drain()
    start = time.monotonic()
    closed = await wait_closed(reader, limit)
    writer.close()
    return closed if closed is None else time.monotonic() - start


async def hostile(proto):
    srv = Server(proto, timeout_ms=SHORT_TIMEOUT_MS)
    try:
        fd0 = srv.fds()
        base, base_fail = await probe(proto, srv.port, 4)
        limit = SHORT_TIMEOUT_MS / 1000 * 3 + 5
        attacks = [("slowloris", slowloris, 50), ("body-stall", body_stall, 20)]
        if proto == "http":
            attacks.append(("h2-idle-streams", lambda p, port, lim: h2_idle_streams(port, lim), 20))
        tasks = {}
        for name, fn, count in attacks:
            tasks[name] = [asyncio.create_task(fn(proto, srv.port, limit)) for _ in range(count)]
        slow_readers = await asyncio.gather(*(never_reads(proto, srv.port) for _ in range(5)))
        readers_since = time.monotonic()
        fds_readers = srv.fds()
        under, under_fail = await probe(proto, srv.port, 6)
        for name, ts in tasks.items():
            times = await asyncio.gather(*ts, return_exceptions=True)
            bad = [t for t in times if not isinstance(t, float)]
            worst = max((t for t in times if isinstance(t, float)), default=float("nan"))
            check(
                f"{name}-{proto}",
                not bad,
                f"{len(times) - len(bad)}/{len(times)} cut off, slowest after {worst:.1f}s"
                f" (timeouts {SHORT_TIMEOUT_MS} ms)" + (f"; not cut: {bad[:2]!r}" if bad else ""),
            )
        # The clients that read nothing still hold their sockets open: the
        # server must have given up on them (its descriptors released).
        fds = await settle(srv, fd0, limit - (time.monotonic() - readers_since))
        cut_after = time.monotonic() - readers_since
        check(
            f"never-reads-{proto}",
            fds <= fd0 + 2,
            f"server fds {fd0} before, {fds_readers} during the attacks, 5 clients not reading 1 GB responses: "
            f"{fds} fds {cut_after:.1f}s later (write timeout {SHORT_TIMEOUT_MS} ms)",
        )
        for _, w in slow_readers:
            w.close()
        bound = max(0.1, p99(base) * 3)
        check(
            f"probe-latency-under-attack-{proto}",
            under_fail == 0 and p99(under) <= bound,
            f"p99 {p99(under) * 1000:.1f} ms under attack vs {p99(base) * 1000:.1f} ms alone "
            f"(bound {bound * 1000:.0f} ms; {len(under)} probes, {under_fail + base_fail} failed)",
        )
        fds = await settle(srv, fd0)
        check(f"hostile-fds-released-{proto}", fds <= fd0 + 2, f"fds {fd0} before, {fds} after")
    finally:
        srv.stop()


# ------------------------------------------------------------------- faults


async def emfile(proto):
    """`ulimit -n 64` and 200 clients at once: every one is served."""
    srv = Server(proto, nofile=64, log=f"/tmp/reliability-emfile-{proto}.log")
    try:
        start = time.monotonic()
        results = await asyncio.gather(
            *(request(proto, srv.port, path="/sleep?ms=200", timeout=60) for _ in range(200)),
            return_exceptions=True,
        )
        secs = time.monotonic() - start
        ok = sum(1 for r in results if isinstance(r, tuple) and r[0] == 200)
        logged = "accept failed" in srv.log_text()
        status, _, t = await request(proto, srv.port, timeout=10)
        check(
            f"emfile-{proto}",
            ok == 200 and status == 200 and logged,
            f"{ok}/200 served in {secs:.1f}s with 64 fds, "
            f"{'logged' if logged else 'NOT logged'}; then {status} in {t * 1000:.1f} ms",
        )
    finally:
        srv.stop()


CHILD = r"""
import socket, sys, time
port, mode = int(sys.argv[1]), sys.argv[2]
data = open(sys.argv[3], "rb").read()
chunk = open(sys.argv[4], "rb").read()
s = socket.create_connection(("127.0.0.1", port))
if mode == "upload":
    s.sendall(data)
    while True:
        s.sendall(chunk)
        time.sleep(0.01)
else:
    s.sendall(data)
    while True:
        if not s.recv(4096):
            time.sleep(1)
        time.sleep(0.01)
"""


async def killed(proto, srv, fd0, what, mode, data, chunk=b""):
    files = []
    for i, content in enumerate((data, chunk)):
        path = f"/tmp/reliability-child-{os.getpid()}-{i}"
        with open(path, "wb") as f:
            f.write(content)
        files.append(path)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(srv.port), mode, *files])
    await asyncio.sleep(1.0)
    during = srv.fds()
    child.kill()
    child.wait()
    fds = await settle(srv, fd0)
    status, _, t = await request(proto, srv.port, timeout=10)
    check(
        f"{what}-{proto}",
        during > fd0 and fds <= fd0 + 1 and status == 200,
        f"fds {fd0}->{during}->{fds} after the kill; next request {status} in {t * 1000:.1f} ms",
    )


async def panics(proto, srv):
    """Every fourth request panics: those get the error page, the rest 200."""
    statuses = []
    sem = asyncio.Semaphore(8)

    async def one(i):
        async with sem:
            path = "/panic" if i % 4 == 0 else "/hello"
            try:
                status, _, _ = await request(proto, srv.port, path=path, timeout=30)
            except Exception as e:  # noqa: BLE001
                status = repr(e)
            statuses.append((path, status))

    await asyncio.gather(*(one(i) for i in range(400)))
    pan = [s for p, s in statuses if p == "/panic"]
    ok = [s for p, s in statuses if p != "/panic"]
    check(
        f"panics-under-load-{proto}",
        all(s == 500 for s in pan) and all(s == 200 for s in ok),
        f"{sum(s == 500 for s in pan)}/{len(pan)} panics got 500, {sum(s == 200 for s in ok)}/{len(ok)} others 200",
    )


async def sigterm(proto):
    srv = Server(proto)
    try:
        inflight = [asyncio.create_task(request(proto, srv.port, path="/sleep?ms=1500", timeout=20)) for _ in range(10)]
        await asyncio.sleep(0.5)
        srv.proc.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        try:
            status, _, _ = await request(proto, srv.port, timeout=3)
            refused = f"answered {status}"
        except (ConnectionRefusedError, ConnectionResetError, asyncio.IncompleteReadError):
            refused = "refused"
        except Exception as e:  # noqa: BLE001
            refused = repr(e)
        results = await asyncio.gather(*inflight, return_exceptions=True)
        done = sum(1 for r in results if isinstance(r, tuple) and r[0] == 200)
        try:
            code = srv.proc.wait(30)
        except subprocess.TimeoutExpired:
            code = "still running"
        check(
            f"sigterm-{proto}",
            done == 10 and refused == "refused" and code == 0,
            f"{done}/10 in flight finished, new connection {refused}, exit status {code}",
        )
    finally:
        srv.stop()


async def faults(proto):
    await emfile(proto)
    srv = Server(proto, timeout_ms=SHORT_TIMEOUT_MS)
    try:
        for _ in range(5):
            await request(proto, srv.port)
        fd0 = await steady_fds(srv)
        if proto != "http":
            await killed(
                proto, srv, fd0, "web-server-killed-mid-request", "download",
                encode(proto, "GET", "/stream?chunks=100&size=1000&delay_ms=100"),
            )
        size = 64 << 20
        if proto == "fastcgi":
            # A web server killed while it passes an upload on.
            head = fcgi_record(1, 1, struct.pack(">HB5x", 1, 1))
            head += fcgi_record(4, 1, fcgi_params("POST", "/echo", size)) + fcgi_record(4, 1)
            chunk = fcgi_record(5, 1, b"x" * 65528)
        else:
            head = encode(proto, "POST", "/echo", b"x" * size)[:-size]
            chunk = b"x" * 65536
        await killed(proto, srv, fd0, "client-killed-mid-upload", "upload", head, chunk)
        await killed(
            proto, srv, fd0, "client-killed-mid-download", "download",
            encode(proto, "GET", f"/bytes?n={1 << 30}"),
        )
        await panics(proto, srv)
    finally:
        srv.stop()
    await sigterm(proto)


# --------------------------------------------------------------------- soak


async def soak(proto):
    """Mixed traffic at a steady rate for SOAK_MINUTES; RSS and descriptors
    sampled every SOAK_SAMPLE_S. Returns the samples for the summary table:
    (seconds, RSS kB, fds, requests so far, failed so far)."""
    srv = Server(proto)
    counts = {"ok": 0, "failed": 0, "aborted": 0}
    stop = time.monotonic() + SOAK_MINUTES * 60
    body = os.urandom(64 * 1024)
    # Each worker starts a request every `gap` seconds (SOAK_RATE requests
    # a second in all); one that falls behind does not catch up in a burst.
    gap = SOAK_CLIENTS / SOAK_RATE if SOAK_RATE > 0 else 0

    async def worker(seed):
        rng = random.Random(seed)
        due = time.monotonic() + rng.random() * gap
        while time.monotonic() < stop:
            if gap:
                now = time.monotonic()
                if due > now:
                    await asyncio.sleep(due - now)
                due = max(due, now) + gap
                if time.monotonic() >= stop:
                    break
            kind = rng.randrange(4)
            try:
                if kind == 0:
                    status, _, _ = await request(proto, srv.port)
                    good = status == 200
                elif kind == 1:
                    status, n, _ = await request(proto, srv.port, "POST", "/echo", body)
                    good = status == 200 and n == len(body)
                elif kind == 2:
                    status, n, _ = await request(proto, srv.port, path="/stream?chunks=16&size=4096")
                    good = status == 200 and n == 16 * 4096
                else:
                    reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
                    data = encode(proto, "GET", "/bytes?n=10000000")
                    if rng.random() < 0.5:
                        writer.write(data[: len(data) // 2])
                    else:
                        writer.write(data)
                        await writer.drain()
                        await reader.read(1000)
                    writer.close()
                    counts["aborted"] += 1
                    continue
                counts["ok" if good else "failed"] += 1
            except Exception:  # noqa: BLE001
                counts["failed"] += 1

    try:
        workers = [asyncio.create_task(worker(i)) for i in range(SOAK_CLIENTS)]
        t0 = time.monotonic()

        def sample():
            return (
                time.monotonic() - t0,
                srv.rss_kb(),
                srv.fds(),
                counts["ok"] + counts["failed"] + counts["aborted"],
                counts["failed"],
            )

        samples = [sample()]
        while time.monotonic() < stop:
            await asyncio.sleep(min(SOAK_SAMPLE_S, max(0.1, stop - time.monotonic())))
            samples.append(sample())
        await asyncio.gather(*workers)
        await asyncio.sleep(SHORT_TIMEOUT_MS / 1000)
        fd_end = await settle(srv, samples[0][2], 70)
        rss_end = srv.rss_kb()
        note(
            f"{proto} soak samples (s, RSS kB, fds, requests, failed): "
            + ", ".join(f"({s[0]:.0f}, {s[1]}, {s[2]}, {s[3]}, {s[4]})" for s in samples)
        )
        # Flat: after the first sample's warm-up, RSS grows by at most 10 %
        # (or 4 MB), and the descriptors come back to the idle count.
        ref = samples[1][1] if len(samples) > 2 else samples[-1][1]
        grew = rss_end - ref
        total = counts["ok"] + counts["failed"]
        check(
            f"soak-{proto}",
            counts["failed"] == 0 and grew <= max(4096, ref // 10) and fd_end <= samples[0][2] + 2,
            f"rss {ref / 1024:.1f}\u2192{rss_end / 1024:.1f} MB (idle {samples[0][1] / 1024:.1f}), "
            f"fds {samples[0][2]}\u2192{fd_end} (max {max(s[2] for s in samples)}), "
            f"{total} requests (+ {counts['aborted']} aborted), {counts['failed']} errors; "
            f"{SOAK_MINUTES:g} min at {SOAK_RATE:g}/s",
        )
        return samples
    finally:
        srv.stop()


def soak_table(results):
    """The samples of servers soaked together, one row per sample:
    RSS MB / fds per server, then requests so far per server."""
    protos = list(results)
    rows = max(len(s) for s in results.values())
    head = "| min | " + " | ".join(f"{p} RSS MB / fds" for p in protos)
    head += " | " + " | ".join(f"{p} requests (failed)" for p in protos) + " |"
    print(head)
    print("|" + "---:|" * (1 + 2 * len(protos)))
    for i in range(rows):
        cells = []
        for p in protos:
            s = results[p]
            cells.append(f"{s[i][1] / 1024:.1f} / {s[i][2]}" if i < len(s) else "")
        for p in protos:
            s = results[p]
            cells.append(f"{s[i][3]} ({s[i][4]})" if i < len(s) else "")
        t = results[protos[0]][min(i, len(results[protos[0]]) - 1)][0]
        print(f"| {t / 60:.0f} | " + " | ".join(cells) + " |")


async def main():
    sources = iter(f"127.0.0.{i}" for i in range(10, 250))
    for proto in PROTOCOLS:
        if "scale" in SECTIONS:
            phases = ["idle"] if proto == "scgi" else ["idle", "after-request"]
            for phase in phases:
                await scale(proto, phase, next(sources))
            await over_cap(proto)
        if "hostile" in SECTIONS:
            await hostile(proto)
        if "faults" in SECTIONS:
            await faults(proto)
        if "soak" in SECTIONS and not SOAK_TOGETHER:
            soak_table({proto: await soak(proto)})
    if "soak" in SECTIONS and SOAK_TOGETHER:
        # Every server in the same window, each with its own clients.
        samples = await asyncio.gather(*(soak(p) for p in PROTOCOLS))
        soak_table(dict(zip(PROTOCOLS, samples)))
    passed = sum(RESULTS)
    print(f"reliability: {passed} passed, {len(RESULTS) - passed} failed")
    return 0 if passed == len(RESULTS) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
