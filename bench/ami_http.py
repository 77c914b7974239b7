"""End-to-end Gigamon benchmark: AMI JSON over HTTP and CEF over TCP syslog into `netmeta serve`,
each against a bare receiver that does only the reading/parsing, same clients, same run.

Method
------
- One ``netmeta serve`` (fresh temp config and data dir, ``pipeline.workers: 2``, input
  defaults otherwise) with two inputs: ``gigamon_ami`` over HTTP on ``/ami`` (a secret
  header) and ``syslog`` over TCP. One warm-up batch and a few CEF lines go first (they
  start the worker processes); figures are what the counters gained in each phase.
- AMI batches: 1000 entries cycled from the 70 records of the peer pipeline test
  (``gigamon/pipeline/test-ami.json``). Every batch is unique: each record's ``id`` and
  ``src_ip`` (where the record has them) carry the batch number, because netmeta
  recognizes an identical body as a retry and does not store it again. Plain JSON bodies
  (~750 KB) are made per request by two ``bytes.replace`` on a template; gzip bodies
  (``Content-Encoding: gzip``, level 6, ~60 KB) come from a pool each client compresses
  before the timing (sized for ``GZIP_POOL_RATE`` batches/s; past the pool a client
  compresses on the fly, which is printed).
- Clients: ``--clients`` processes (spawn, no GIL shared), each one keep-alive HTTP/1.1
  connection (``http.client``), one request at a time, for ``--duration`` seconds; all
  start at the same instant. netmeta answers 200 only once a batch is stored, so
  events/s = events stored (sum of ``netmeta_stream_events_stored_total`` gained, checked
  against the ``stored`` counts of the answers) / time from the start to the last answer.
  Requests/s and p50/p99 latency are over all clients.
- Reference for AMI: a bare FastAPI app on uvicorn (one process, the same defaults
  netmeta's listeners get) that reads the body, gunzips when asked and ``orjson``-parses
  it, answering 200 with the entry count; same clients, same bodies (for it the gzip
  pool is reused in a cycle, plain bodies are still made per request).
- CEF over TCP syslog: a sender process with ``--connections`` threads, each one TCP
  connection streaming newline-framed Gigamon CEF lines (pre-built blocks with varied
  addresses and ports) with ``sendall`` as fast as it can for ``--duration`` s; events/s =
  events stored / time from the start until the stored count reached the lines sent
  (TCP has back-pressure: nothing is lost, the sender is slowed down instead).
  Reference: a minimal asyncio server in its own process that reads the same streams and
  splits them into lines (and counts them): lines / time until it read the last byte.
  Also printed: netmeta's per-line normalization (``netmeta.normalize.syslog.normalize``:
  syslog header + ``netmeta.decode.cef.decode`` + Gigamon mapping) and CEF decode alone
  in this process, on one core.

Caveats
-------
- 2 cores shared by everything: clients/sender, netmeta's HTTP/TCP listeners and writer
  (main process) and its 2 worker processes; the load average at start is printed.
  Figures are lower bounds for dedicated cores, and the bare references are single
  processes that have the client competing for the other core only.
- The references do far less than netmeta (no normalization to ECS, no store, no dedup
  of retries, no answer only-after-stored); the ratio is the cost of collecting over the
  cost of receiving, not a comparison of equal work.
- Stored counts are sampled from /metrics every 0.1 s and the writer stores about once a
  second, so the CEF figure has ~1 s of granularity in its elapsed time (AMI does not: the
  answer itself says "stored").
- The batches repeat the same 70 records' shapes; real AMX traffic has more variety
  (field sets, string lengths), so per-event costs may differ.

    .venv/bin/python bench/ami_http.py [--quick] [--duration S] [--clients N]
        [--connections N] [--skip-cef] [--skip-ami]
    (env NETMETA_BENCH_DURATION also sets the duration)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import http.client
import json
import math
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netflow_udp import free_port, process_group, prom, stop, tail, wait_until  # noqa: E402

NETMETA = str(Path(sys.executable).with_name("netmeta"))
ROOT = Path(__file__).resolve().parents[1]
AMI_SAMPLES = Path(os.environ.get("NETMETA_PEER", "/work/shared/peer")) / "gigamon" / \
    "pipeline" / "test-ami.json"
BATCH = 1000  # entries per POST (AMX's default)
CLIENTS = 4
CONNECTIONS = 4
SNDBUF = 64 << 10  # CEF sender's socket send buffer, bytes
GZIP_POOL_RATE = 30  # batches/s the pre-built gzip pool is sized for (all clients)
GOAL = 150_000  # AMI events/s
PATH = "/ami"
SECRET = {"X-Secret": "s"}
MARK_BATCH, MARK_IP = b"@B@", b"@I@"
GZIP_BASE = 10_000_000  # batch numbers of gzip bodies start here (never equal to plain)
WARM_BASE = 20_000_000
CEF = ("{ts} 9/3/e1 CEF:23|Gigamon|metadata|5.3.00|4|metadatageneration|6| src={src} "
       "dst={dst} spt={spt} dpt=53 proto=17 GigamonMdataDnsAdditionalType=41 "
       "GigamonMdataDnsAdditionalTypeText=OPT")
CEF_TS = "Fri Feb 23 02:25:37 2018"
STORED = "netmeta_stream_events_stored_total"

BARE_APP = '''
import zlib
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.post("/ami")
async def ami(request: Request) -> Response:
    body = await request.body()
    if request.headers.get("content-encoding", "").lower() == "gzip":
        body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
    n = len(orjson.loads(body))
    return Response(orjson.dumps({"stored": n}), media_type="application/json")
'''


# ---------------------------------------------------------------- AMI bodies

def ami_template() -> bytes:
    """A 1000-entry JSON array with ``@B@`` (batch number) in every ``id`` and ``@I@``
    (two octets from it) in every ``src_ip`` of the records that have those fields."""
    records = [e["json"] for e in json.loads(AMI_SAMPLES.read_text())["events"]]
    out = []
    for j in range(BATCH):
        rec = dict(records[j % len(records)])
        if "id" in rec:
            rec["id"] = f"@B@{j:04d}"
        if "src_ip" in rec:
            rec["src_ip"] = f"10.@I@.{j % 250 + 1}"
        out.append(rec)
    return orjson.dumps(out)


def make_body(template: bytes, n: int) -> bytes:
    return template.replace(MARK_BATCH, b"%d" % n).replace(
        MARK_IP, b"%d.%d" % ((n >> 8) & 255, n & 255))


# ---------------------------------------------------------------- HTTP clients

def client(idx: int, nclients: int, template: bytes, pool_size: int,
           conn: Connection) -> None:
    """One client process. Builds its gzip pool, answers "ready", then runs phases sent
    through ``conn``: ``(port, headers, gzip, start, duration, unique)``; answers each with
    ``(requests, events acked, errors, latencies, first, last, compressed on the fly)``.
    None ends."""
    seq = {False: 0, True: 0}  # per encoding: bodies made so far by this client

    def number(gz: bool, k: int) -> int:
        return (GZIP_BASE if gz else 0) + idx + k * nclients

    pool = [gzip.compress(make_body(template, number(True, k)), 6) for k in range(pool_size)]
    conn.send("ready")
    while True:
        try:
            phase = conn.recv()
        except EOFError:
            break
        if phase is None:
            break
        port, headers, gz, start, duration, unique = phase
        http_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        lat: list[float] = []
        requests = acked = errors = on_the_fly = 0
        k_pool = 0
        time.sleep(max(0.0, start - time.monotonic()))
        first = time.monotonic()
        end = first + duration
        last = first
        while time.monotonic() < end:
            if gz:
                if not unique:
                    body = pool[k_pool % len(pool)] if pool else gzip.compress(
                        make_body(template, number(True, 0)), 6)
                    k_pool += 1
                elif seq[True] < len(pool):
                    body = pool[seq[True]]
                    seq[True] += 1
                else:
                    body = gzip.compress(make_body(template, number(True, seq[True])), 6)
                    seq[True] += 1
                    on_the_fly += 1
            else:
                body = make_body(template, number(False, seq[False]))
                seq[False] += 1
            t = time.perf_counter()
            try:
                http_conn.request("POST", PATH, body, headers)
                resp = http_conn.getresponse()
                data = resp.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                http_conn.close()
                http_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                continue
            lat.append(time.perf_counter() - t)
            last = time.monotonic()
            requests += 1
            if resp.status == 200:
                acked += int(orjson.loads(data).get("stored", 0))
            else:
                errors += 1
        http_conn.close()
        conn.send((requests, acked, errors, lat, first, last, on_the_fly))


@dataclass(slots=True)
class HttpResult:
    requests: int
    acked: int
    errors: int
    latencies: list[float]
    seconds: float  # start of the clients to the last answer
    on_the_fly: int
    stored: float = 0.0  # netmeta's counter gained; the bare app: acked

    @property
    def events_rate(self) -> float:
        return self.stored / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        s = sorted(self.latencies)
        return s[min(len(s) - 1, math.ceil(q * len(s)) - 1)]


class Clients:
    def __init__(self, n: int, template: bytes, pool_total: int) -> None:
        ctx = mp.get_context("spawn")
        self.procs: list[mp.process.BaseProcess] = []
        self.conns: list[Connection] = []
        per = math.ceil(pool_total / n)
        try:
            for i in range(n):
                parent, child = ctx.Pipe()
                p = ctx.Process(target=client, args=(i, n, template, per, child), daemon=True)
                p.start()
                child.close()
                self.procs.append(p)
                self.conns.append(parent)
            for c in self.conns:
                if not c.poll(120) or c.recv() != "ready":
                    raise RuntimeError("client did not start")
        except BaseException:
            self.close()
            raise

    def run(self, port: int, headers: dict[str, str], gz: bool, duration: float,
            unique: bool) -> HttpResult:
        start = time.monotonic() + 0.2
        for c in self.conns:
            c.send((port, headers, gz, start, duration, unique))
        res = []
        for c in self.conns:
            if not c.poll(duration + 180):
                raise RuntimeError("client did not finish")
            res.append(c.recv())
        lat = [x for r in res for x in r[3]]
        return HttpResult(sum(r[0] for r in res), sum(r[1] for r in res),
                          sum(r[2] for r in res), lat,
                          max(r[5] for r in res) - min(r[4] for r in res),
                          sum(r[6] for r in res))

    def close(self) -> None:
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.send(None)
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.kill()
                p.join(5)
        for c in self.conns:
            c.close()


# ---------------------------------------------------------------- CEF over TCP

def cef_blocks(n_blocks: int = 64, lines: int = 100) -> list[tuple[bytes, int]]:
    rnd = random.Random(7)
    out = []
    for _ in range(n_blocks):
        text = "".join(CEF.format(
            ts=CEF_TS, src=f"68.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}",
            dst=f"10.0.{rnd.randrange(256)}.{rnd.randrange(1, 255)}",
            spt=rnd.randrange(1024, 65536)) + "\n" for _ in range(lines))
        out.append((text.encode(), lines))
    return out


def cef_sender(port: int, connections: int, duration: float, conn: Connection) -> None:
    """Streams CEF lines over ``connections`` TCP connections for ``duration`` s; sends
    back (lines, start, end)."""
    blocks = cef_blocks()
    counts = [0] * connections
    start = time.monotonic()
    end = start + duration

    def stream(i: int) -> None:
        with socket.create_connection(("127.0.0.1", port)) as s:
            # a small send buffer: little still in flight when the time is up
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
            k = i
            while time.monotonic() < end:
                data, n = blocks[k % len(blocks)]
                s.sendall(data)
                counts[i] += n
                k += 1
            s.shutdown(socket.SHUT_WR)
            with contextlib.suppress(OSError):
                s.settimeout(30)
                while s.recv(65536):
                    pass

    threads = [threading.Thread(target=stream, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conn.send((sum(counts), start, time.monotonic()))


def run_cef_sender(port: int, connections: int, duration: float, patience: float
                   ) -> tuple[Any, ...]:
    """Run the CEF sender in a process of its own; its (sent, start, end) once done."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=cef_sender, args=(port, connections, duration, child),
                    daemon=True)
    p.start()
    child.close()
    try:
        if not parent.poll(duration + patience):
            raise RuntimeError("CEF sender did not finish")
        return tuple(parent.recv())
    finally:
        p.join(10)
        if p.is_alive():
            p.kill()


def bare_tcp(connections: int, conn: Connection) -> None:
    """Minimal asyncio server: reads ``connections`` streams, splits lines, counts them;
    sends back (lines, last byte read time)."""
    async def main() -> None:
        total = [0, 0.0]
        done = asyncio.Event()
        closed = [0]

        class Proto(asyncio.Protocol):
            def __init__(self) -> None:
                self.rest = b""

            def data_received(self, data: bytes) -> None:
                parts = (self.rest + data).split(b"\n")
                self.rest = parts.pop()
                total[0] += len(parts)
                total[1] = time.monotonic()

            def connection_lost(self, exc: Exception | None) -> None:
                closed[0] += 1
                if closed[0] >= connections:
                    done.set()

            def eof_received(self) -> bool:
                return False

        loop = asyncio.get_running_loop()
        server = await loop.create_server(Proto, "127.0.0.1", 0)
        conn.send(server.sockets[0].getsockname()[1])
        await done.wait()
        server.close()
        conn.send((total[0], total[1]))

    asyncio.run(main())


def cef_bare(connections: int, duration: float) -> tuple[int, float]:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    srv = ctx.Process(target=bare_tcp, args=(connections, child), daemon=True)
    srv.start()
    child.close()
    try:
        if not parent.poll(60):
            raise RuntimeError("bare TCP server did not start")
        port = parent.recv()
        sent, start, _ = run_cef_sender(port, connections, duration, 120)
        if not parent.poll(60):
            raise RuntimeError("bare TCP server did not finish")
        lines, last = parent.recv()
        if lines != sent:
            print(f"  bare TCP: {lines} lines read, {sent} sent", file=sys.stderr)
        return lines, last - start
    finally:
        srv.join(5)
        if srv.is_alive():
            srv.kill()
            srv.join(5)


def decode_only(seconds: float = 1.0) -> tuple[float, float]:
    """Lines/s of netmeta's syslog normalize (full per-line work) and of CEF decode alone,
    in this process."""
    from netmeta.decode import cef
    from netmeta.normalize import syslog as nsyslog

    data, n = cef_blocks(1, 2000)[0]  # ~500 KB
    lines = data.split(b"\n")[:n]
    msgs = [(ln, "127.0.0.1:5000") for ln in lines]
    now = time.time()
    times = [now] * n

    def rate(fn: Callable[[], None]) -> float:
        fn()
        done, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            fn()
            done += n
        return done / (time.perf_counter() - t0)

    full = rate(lambda: None if nsyslog.normalize(msgs, times, "sys", "tcp") else None)
    texts = [ln.decode().split(" 9/3/e1 ", 1)[1] for ln in lines]
    only = rate(lambda: [cef.decode(t) for t in texts] and None)
    return full, only


# ---------------------------------------------------------------- netmeta serve

class Serve:
    def __init__(self, tmp: Path, ami_port: int, sys_port: int) -> None:
        import yaml

        self.http = free_port()
        cfg = {"data_dir": str(tmp / "data"),
               "http": {"listen": "127.0.0.1", "port": self.http},
               "pipeline": {"workers": 2},
               "inputs": {
                   "ami": {"type": "gigamon_ami", "listen": "127.0.0.1", "port": ami_port,
                           "http": {"path": PATH, "secret": {"header": "X-Secret",
                                                             "value": "s"}}},
                   "sys": {"type": "syslog", "protocol": "tcp", "listen": "127.0.0.1",
                           "port": sys_port}}}
        self.config = tmp / "netmeta.yml"
        self.config.write_text(yaml.safe_dump(cfg))
        self.log = tmp / "serve.log"
        self.tmp = tmp
        self.proc: Any = None

    def metrics(self) -> dict[str, float] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics",
                                        timeout=5) as r:
                return prom(r.read().decode())
        except OSError:
            return None

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"netmeta serve exited ({self.proc.returncode}):\n"
                               f"{tail(self.log)}")

    def healthy(self) -> bool:
        self.check()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/healthz", timeout=2):
                return True
        except OSError:
            return False

    def stored(self) -> float:
        self.check()
        m = self.metrics() or {}
        return m.get(STORED, 0.0)

    def settle(self, expected: float, timeout: float = 120) -> float:
        """Stored count once it reaches ``expected`` or stays the same for 5 s."""
        last, since = -1.0, time.monotonic()
        deadline = time.monotonic() + timeout
        s = 0.0
        while time.monotonic() < deadline:
            s = self.stored()
            if s >= expected:
                break
            if s != last:
                last, since = s, time.monotonic()
            if time.monotonic() - since >= 5:
                break
            time.sleep(0.1)
        return s


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def post(port: int, body: bytes) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{PATH}", data=body, method="POST",
                                 headers={"Content-Type": "application/json", **SECRET})
    with urllib.request.urlopen(req, timeout=60) as r:
        return int(r.status)


# ---------------------------------------------------------------- main

def show_http(label: str, r: HttpResult) -> None:
    extra = f", {r.on_the_fly} gzip bodies made on the fly" if r.on_the_fly else ""
    print(f"  {label:<22} {r.events_rate:>10,.0f} events/s stored  "
          f"{r.requests / r.seconds if r.seconds else 0:>7,.1f} req/s  "
          f"p50 {r.pct(0.5) * 1e3:>7.1f} ms  p99 {r.pct(0.99) * 1e3:>7.1f} ms  "
          f"({r.requests} requests, {r.errors} errors, {r.stored:.0f} events in "
          f"{r.seconds:.1f} s{extra})", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--duration", type=float,
                    default=float(os.environ.get("NETMETA_BENCH_DURATION", 15)),
                    help="seconds per phase (default 15)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 s per phase")
    ap.add_argument("--clients", type=int, default=CLIENTS, help="HTTP client processes")
    ap.add_argument("--connections", type=int, default=CONNECTIONS,
                    help="TCP syslog connections")
    ap.add_argument("--skip-ami", action="store_true")
    ap.add_argument("--skip-cef", action="store_true")
    args = ap.parse_args()
    duration = 3.0 if args.quick else args.duration
    if not 0 < duration <= 600:
        raise SystemExit("--duration: 0 < seconds <= 600")
    if not AMI_SAMPLES.is_file() and not args.skip_ami:
        print(f"{AMI_SAMPLES} not found: the AMI part is skipped (NETMETA_PEER sets the root)")
        args.skip_ami = True
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _: sys.exit(128 + signum))

    t_start = time.perf_counter()
    print(f"Gigamon AMI over HTTP and CEF over TCP syslog on 127.0.0.1, {os.cpu_count()} "
          f"cores, {duration:g} s per phase; load average {os.getloadavg()[0]:.2f} "
          "before the start", flush=True)

    base = Path(tempfile.mkdtemp(prefix="netmeta-bench-ami-"))
    clients: Clients | None = None
    ami: dict[str, HttpResult] = {}
    bare: dict[str, HttpResult] = {}
    cef_nm: tuple[float, float, int] | None = None
    cef_ref: tuple[int, float] | None = None
    try:
        if not args.skip_ami:
            template = ami_template()
            t = time.perf_counter()
            pool = math.ceil(duration * GZIP_POOL_RATE)
            clients = Clients(max(1, args.clients), template, pool)
            print(f"AMI: {BATCH}-entry batches, {len(make_body(template, 1)) / 1e3:.0f} KB "
                  f"plain, ~{len(gzip.compress(make_body(template, 1), 6)) / 1e3:.0f} KB "
                  f"gzip; {args.clients} clients (processes, keep-alive, one request at a "
                  f"time); {pool} gzip bodies pre-built in {time.perf_counter() - t:.1f} s",
                  flush=True)
            # the bare reference
            port = free_port()
            (base / "bare_ami.py").write_text(BARE_APP)
            cmd = [sys.executable, "-m", "uvicorn", "bare_ami:app", "--host", "127.0.0.1",
                   "--port", str(port), "--log-level", "warning", "--no-access-log"]
            log = base / "bare.log"
            with process_group(cmd, log, cwd=base) as proc:
                def up() -> bool:
                    if proc.poll() is not None:
                        raise RuntimeError(f"bare app exited:\n{tail(log)}")
                    return port_open(port)
                if not wait_until(up, 60):
                    raise RuntimeError(f"bare app did not come up:\n{tail(log)}")
                for gz in (False, True):
                    hdr = {"Content-Type": "application/json", **SECRET,
                           **({"Content-Encoding": "gzip"} if gz else {})}
                    r = clients.run(port, hdr, gz, duration, unique=False)
                    r.stored = r.acked
                    bare["gzip" if gz else "json"] = r
                    show_http(f"bare app, {'gzip' if gz else 'plain JSON'}:", r)
                stop(proc, 10)

        ami_port, sys_port = free_port(), free_port()
        d = base / "netmeta"
        d.mkdir()
        srv = Serve(d, ami_port, sys_port)
        with process_group([NETMETA, "serve", "--config", str(srv.config)], srv.log,
                           cwd=d) as proc:
            srv.proc = proc
            if not wait_until(srv.healthy, 60) or not wait_until(
                    lambda: port_open(ami_port) and port_open(sys_port), 30):
                raise RuntimeError(f"netmeta serve did not come up:\n{tail(srv.log)}")
            # warm-up: starts the workers
            template_w = ami_template()
            if post(ami_port, make_body(template_w, WARM_BASE)) != 200:
                raise RuntimeError("warm-up batch refused")
            with socket.create_connection(("127.0.0.1", sys_port)) as s:
                s.sendall(cef_blocks(1, 20)[0][0])
            before = srv.settle(BATCH + 20, 60)
            if before < BATCH + 20:
                raise RuntimeError(f"warm-up: {before:.0f} of {BATCH + 20} stored:\n"
                                   f"{tail(srv.log)}")
            if clients is not None:
                for gz in (False, True):
                    hdr = {"Content-Type": "application/json", **SECRET,
                           **({"Content-Encoding": "gzip"} if gz else {})}
                    s0 = srv.stored()
                    r = clients.run(ami_port, hdr, gz, duration, unique=True)
                    r.stored = srv.settle(s0 + r.acked, 30) - s0
                    if r.stored != r.acked:
                        print(f"  (netmeta: {r.stored:.0f} stored, {r.acked} acked)")
                    ami["gzip" if gz else "json"] = r
                    show_http(f"netmeta, {'gzip' if gz else 'plain JSON'}:", r)
            if not args.skip_cef:
                s0 = srv.stored()
                sent, start, send_end = run_cef_sender(sys_port, args.connections, duration,
                                                       180)
                deadline = time.monotonic() + 120
                got, last, since = 0.0, -1.0, time.monotonic()
                while time.monotonic() < deadline:
                    got = srv.stored() - s0
                    if got >= sent:
                        break
                    if got != last:
                        last, since = got, time.monotonic()
                    if time.monotonic() - since >= 10:
                        break
                    time.sleep(0.1)
                took = time.monotonic() - start
                cef_nm = (got, took, sent)
                print(f"  netmeta, CEF over TCP: {got / took:>10,.0f} events/s stored "
                      f"({got:.0f} of {sent} lines stored in {took:.1f} s; sending took "
                      f"{send_end - start:.1f} s, {args.connections} connections)",
                      flush=True)
            if stop(proc) is None:
                print(f"  netmeta serve did not stop within 60 s:\n{tail(srv.log)}",
                      file=sys.stderr)
        if not args.skip_cef:
            cef_ref = cef_bare(args.connections, duration)
            print(f"  bare asyncio, CEF over TCP: {cef_ref[0] / cef_ref[1]:>10,.0f} lines/s "
                  f"read and split ({cef_ref[0]} lines in {cef_ref[1]:.1f} s)", flush=True)
    finally:
        if clients is not None:
            clients.close()
        shutil.rmtree(base, ignore_errors=True)

    print()
    if ami:
        print(f"AMI over HTTP ({BATCH}-entry batches, {args.clients} clients) — goal "
              f">= {GOAL:,} events/s")
        print(f"  {'body':<10} {'netmeta ev/s':>12} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}"
              f" | {'bare ev/s':>10} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} | "
              f"{'netmeta/bare':>12} {'of goal':>7}")
        for k in ("json", "gzip"):
            n, b = ami[k], bare.get(k)
            line = (f"  {k:<10} {n.events_rate:>12,.0f} {n.requests / n.seconds:>7.1f} "
                    f"{n.pct(0.5) * 1e3:>7.1f} {n.pct(0.99) * 1e3:>7.1f} | ")
            if b is not None and b.events_rate:
                line += (f"{b.events_rate:>10,.0f} {b.requests / b.seconds:>7.1f} "
                         f"{b.pct(0.5) * 1e3:>7.1f} {b.pct(0.99) * 1e3:>7.1f} | "
                         f"{n.events_rate / b.events_rate:>11.3f}x")
            else:
                line += f"{'-':>10} {'-':>7} {'-':>7} {'-':>7} | {'-':>12}"
            print(line + f" {n.events_rate / GOAL:>7.1%}")
    if cef_nm is not None:
        full, only = decode_only()
        nm_rate = cef_nm[0] / cef_nm[1]
        line = f"CEF over TCP syslog: netmeta {nm_rate:,.0f} events/s stored"
        if cef_ref is not None and cef_ref[1] > 0:
            ref_rate = cef_ref[0] / cef_ref[1]
            line += f", bare read+split {ref_rate:,.0f} lines/s, netmeta/bare " \
                    f"{nm_rate / ref_rate:.3f}x"
        print(line)
        print(f"  in this process, one core: netmeta syslog normalize (syslog + CEF decode + "
              f"Gigamon mapping) {full:,.0f} lines/s, CEF decode alone {only:,.0f} lines/s; "
              f"netmeta stored/normalize-only {nm_rate / full:.2f}x")
    print(f"{time.perf_counter() - t_start:.0f} s in all")


if __name__ == "__main__":
    main()
