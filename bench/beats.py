"""Beats benchmark: Packetbeat events into `netmeta serve` over Lumberjack v2 (compressed
windows, several connections) and over the Elasticsearch _bulk API, each against a bare
receiver measured in the same run with the same clients.

Method
------
- Events: the network_traffic sample events (flow, dns, http; ../shared/peer/packetbeat)
  with addresses and ports varied, ~1.5 KB of JSON each, as Packetbeat ships them
  (``@metadata``, ``agent.type: packetbeat``).
- Lumberjack: ``--connections`` connections from one client process (spawn), each sending
  windows of 2048 events (Beats' bulk_max_size for output.logstash) with two windows in
  flight (Beats' ``pipelining: 2``), sequence numbers restarting at 1 per window as
  go-lumber does. A window is one zlib frame (level 3, Beats' default) of 2047 events
  taken from 8 blocks compressed before the timing, plus one uncompressed frame holding an
  event unique to the window (``event.sequence``): netmeta recognizes a window it stored
  before and does not store it again, so every window must differ. Events/s = events
  acknowledged (netmeta acknowledges only what is stored; checked against
  ``netmeta_stream_events_stored_total``) / time from the start to the last ACK.
- _bulk: the same number of keep-alive HTTP connections, each POSTing bodies of 1600
  create actions (Beats' bulk_max_size for output.elasticsearch) gzip-compressed
  (``Content-Encoding: gzip``, level 1 as Beats), one request at a time per connection;
  a body is a pre-compressed gzip member with 1599 pairs followed by a small member with
  the unique pair (gzip members concatenate). Events/s = items answered 201 / time.
- References, each in a process of its own: netmeta's own Lumberjack server
  (netmeta.sources.beats) with a hand-over that stores nothing (it frames, inflates,
  parses and ACKs), and netmeta's _bulk app with a submit that stores nothing (it reads,
  gunzips, parses the NDJSON, checks every source and answers). The ratio is the cost of
  collecting over the cost of receiving.
- Also printed: what a worker process spends per event (normalize.packetbeat and the
  event table), measured in this process on one core: the ceiling of the stored figures
  with 2 workers whatever the transport.
- ``netmeta serve``: fresh temp config and data dir, ``pipeline.workers: 2``, both inputs
  on 127.0.0.1. One warm-up window and one warm-up bulk go first (they start the workers).

Caveats
-------
- 2 cores shared by the client process, netmeta's main process (listeners, writer) and its
  2 worker processes: figures are lower bounds for dedicated cores. The load average at
  the start is printed.
- The blocks repeat (8 blocks of 2047 events), so the store sees repeated content apart
  from the unique event per window; parsing, normalizing and writing are per event anyway.

    .venv/bin/python bench/beats.py [--duration S] [--connections N] [--quick]
        [--skip-lumberjack] [--skip-bulk]
"""

from __future__ import annotations

import argparse
import glob
import gzip
import http.client
import multiprocessing as mp
import os
import socket
import sys
import tempfile
import threading
import time
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netflow_udp import free_port, process_group, prom, stop, tail, wait_until  # noqa: E402
from netmeta.decode.lumberjack import encode_compressed, encode_json, encode_window  # noqa: E402

NETMETA = str(Path(sys.executable).with_name("netmeta"))
PEER = Path(os.environ.get("NETMETA_PEER", "/work/shared/peer")) / "packetbeat"
WINDOW = 2048
BULK = 1600
BLOCKS = 8
GOAL = 150_000
STORED = "netmeta_stream_events_stored_total"


# ---------------------------------------------------------------- events

def samples() -> list[dict[str, Any]]:
    out = []
    for f in sorted(glob.glob(str(PEER / "network_traffic" / "*" / "sample_event.json"))):
        doc = orjson.loads(Path(f).read_bytes())
        for k in ("elastic_agent", "data_stream"):  # Fleet's, not Packetbeat's
            doc.pop(k, None)
        doc.setdefault("agent", {})["type"] = "packetbeat"
        doc["@metadata"] = {"beat": "packetbeat", "type": "_doc", "version": "8.17.0"}
        out.append(doc)
    if not out:
        raise SystemExit(f"no sample events under {PEER}")
    return out


def event(base: dict[str, Any], i: int) -> bytes:
    doc = orjson.loads(orjson.dumps(base))
    for side in ("source", "client"):
        if isinstance(doc.get(side), dict) and "ip" in doc[side]:
            doc[side]["ip"] = f"10.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"
            doc[side]["port"] = 1024 + i % 60000
    return orjson.dumps(doc)


def blocks(n_events: int) -> list[list[bytes]]:
    base = samples()
    return [[event(base[(b * n_events + i) % len(base)], b * n_events + i)
             for i in range(n_events)] for b in range(BLOCKS)]


def unique_event(base: dict[str, Any], n: int) -> bytes:
    doc = orjson.loads(orjson.dumps(base))
    doc.setdefault("event", {})["sequence"] = n
    return orjson.dumps(doc)


# ---------------------------------------------------------------- clients

def lumberjack_client(port: int, conns: int, duration: float, start: float, base_n: int,
                      out: Connection) -> None:
    evs = blocks(WINDOW - 1)
    compressed = [encode_compressed(b"".join(encode_json(i + 1, e) for i, e in enumerate(b)))
                  for b in evs]
    first = samples()[0]
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def one(k: int) -> None:
        s = socket.create_connection(("127.0.0.1", port), timeout=120)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        acked, w, inflight = 0, 0, 0
        time.sleep(max(0.0, start - time.monotonic()))
        end = start + duration
        last = time.monotonic()
        buf = b""
        while True:
            while inflight < 2 and time.monotonic() < end:
                n = base_n + k * 1_000_000 + w
                s.sendall(encode_window(WINDOW) + compressed[w % BLOCKS]
                          + encode_json(WINDOW, unique_event(first, n)))
                w += 1
                inflight += 1
            if inflight == 0:
                break
            while len(buf) < 6:
                chunk = s.recv(4096)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                buf += chunk
            seq = int.from_bytes(buf[2:6], "big")
            buf = buf[6:]
            if seq == WINDOW:
                acked += WINDOW
                inflight -= 1
                last = time.monotonic()
        s.close()
        with lock:
            results.append((acked, last))

    threads = [threading.Thread(target=one, args=(k,)) for k in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.send((sum(a for a, _ in results), max(t for _, t in results)))


def bulk_client(port: int, conns: int, duration: float, start: float, base_n: int,
                out: Connection) -> None:
    evs = blocks(BULK - 1)
    action = b'{"create":{"_index":"packetbeat-8.17.0"}}\n'
    static = [gzip.compress(b"".join(action + e + b"\n" for e in b), 1) for b in evs]
    first = samples()[0]
    results: list[tuple[int, float, int]] = []
    lock = threading.Lock()

    def one(k: int) -> None:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        created, errors, r = 0, 0, 0
        time.sleep(max(0.0, start - time.monotonic()))
        end = start + duration
        last = time.monotonic()
        while time.monotonic() < end:
            n = base_n + k * 1_000_000 + r
            body = static[r % BLOCKS] + gzip.compress(
                action + unique_event(first, n) + b"\n", 1)
            r += 1
            c.request("POST", "/_bulk?filter_path=errors,items.*.status", body,
                      {"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"})
            resp = c.getresponse()
            data = resp.read()
            if resp.status != 200:
                errors += 1
                continue
            items = orjson.loads(data).get("items", [])
            created += sum(1 for i in items if i["create"]["status"] == 201)
            last = time.monotonic()
        c.close()
        with lock:
            results.append((created, last, errors))

    threads = [threading.Thread(target=one, args=(k,)) for k in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.send((sum(a for a, _, _ in results), max(t for _, t, _ in results),
              sum(e for _, _, e in results)))


def run_clients(kind: str, port: int, conns: int, duration: float, base_n: int
                ) -> tuple[int, float]:
    """Events acknowledged and the seconds from the start to the last acknowledgement."""
    ctx = mp.get_context("spawn")
    rx, tx = ctx.Pipe(duplex=False)
    start = time.monotonic() + 4.0  # the client builds its blocks first
    target = lumberjack_client if kind == "lumberjack" else bulk_client
    p = ctx.Process(target=target, args=(port, conns, duration, start, base_n, tx))
    p.start()
    res = rx.recv()
    p.join(30)
    if kind == "bulk" and res[2]:
        print(f"  ({res[2]} bulk requests answered with an error)")
    return int(res[0]), float(res[1]) - start


# ---------------------------------------------------------------- bare references

def bare_lumberjack(port: int, ready: Any, done: Any) -> None:
    import concurrent.futures as cf

    from netmeta.sources.beats import BeatsServer

    def handover(batch: object) -> cf.Future[None]:
        f: cf.Future[None] = cf.Future()
        f.set_result(None)
        return f

    s = BeatsServer("127.0.0.1", port, handover)
    s.start()
    ready.set()
    done.wait()
    s.stop()


def bare_bulk(port: int, ready: Any, done: Any) -> None:
    import concurrent.futures as cf

    from netmeta.config import EsInput
    from netmeta.sources.es_bulk import create_app
    from netmeta.web.app import HttpServer

    def submit(docs: list[bytes], rejects: list[Any], digest: str, ids: Any
               ) -> cf.Future[None]:
        f: cf.Future[None] = cf.Future()
        f.set_result(None)
        return f

    s = HttpServer(create_app("bare", EsInput(), submit), "127.0.0.1", port)
    s.start()
    ready.set()
    done.wait()
    s.stop()


def reference(kind: str, conns: int, duration: float) -> tuple[int, float]:
    ctx = mp.get_context("spawn")
    ready, done = ctx.Event(), ctx.Event()
    port = free_port()
    p = ctx.Process(target=bare_lumberjack if kind == "lumberjack" else bare_bulk,
                    args=(port, ready, done))
    p.start()
    if not ready.wait(60):
        raise RuntimeError(f"bare {kind} server did not start")
    try:
        return run_clients(kind, port, conns, duration, 50_000_000)
    finally:
        done.set()
        p.join(30)


# ---------------------------------------------------------------- netmeta serve

def serve_config(tmp: Path, http: int, lj: int, es: int) -> Path:
    import yaml

    cfg = {"data_dir": str(tmp / "data"), "http": {"listen": "127.0.0.1", "port": http},
           "pipeline": {"workers": 2},
           "inputs": {"pb": {"type": "beats", "listen": "127.0.0.1", "port": lj},
                      "pbes": {"type": "elasticsearch", "listen": "127.0.0.1", "port": es}}}
    path = tmp / "netmeta.yml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def metrics(http: int) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5) as r:
            return prom(r.read().decode())
    except OSError:
        return {}


def report(name: str, events: int, secs: float, ref: tuple[int, float] | None) -> None:
    rate = events / secs if secs > 0 else 0.0
    line = f"{name}: {events} events in {secs:.1f} s = {rate:,.0f} events/s"
    if ref is not None:
        ref_rate = ref[0] / ref[1] if ref[1] > 0 else 0.0
        line += (f"; bare receiver {ref_rate:,.0f} events/s; ratio "
                 f"{rate / ref_rate if ref_rate else 0:.2f}")
    line += f" (goal {GOAL:,}: {'met' if rate >= GOAL else 'not met'})"
    print(line, flush=True)


def worker_cost() -> tuple[float, float, float]:
    """Microseconds per event of what a worker does with a window, in this process on one
    core (best of 3): the batch normalizer and the event table; the same by the reference
    normalizer (netmeta.normalize.packetbeat and the generic document split); and the whole
    worker job (normalize, enrich, route, write the Parquet file)."""
    from netmeta.event import Origin, from_documents, from_rows
    from netmeta.normalize import packetbeat, packetbeat_batch
    from netmeta.worker import EnrichSpec, Job, Processor

    data = b"[" + b",".join(blocks(WINDOW)[0]) + b"]"

    def batch() -> None:
        rows = packetbeat_batch.normalize_json(data)
        from_rows(rows.typed, rows.extras, "pb", [str(i) for i in rows.index])

    def reference() -> None:
        out = packetbeat.normalize_json(data)
        from_documents(out.docs, "pb", [str(i) for i in out.index])

    with tempfile.TemporaryDirectory() as root:
        spec = EnrichSpec(None, None, 10_000, 0, (), {}, 1 << 20, store_root=root)
        processor = Processor(spec)
        job = Job("pb", "packetbeat", Origin("pb"), data, digest="0" * 64)

        def whole() -> None:
            processor(job)

        out = []
        for f in (batch, reference, whole):
            f()  # shapes compiled, caches warm
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                f()
                best = min(best, time.perf_counter() - t)
            out.append(best / WINDOW * 1e6)
    return out[0], out[1], out[2]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float,
                    default=float(os.environ.get("NETMETA_BENCH_DURATION", 15)))
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="3 s phases")
    ap.add_argument("--skip-lumberjack", action="store_true")
    ap.add_argument("--skip-bulk", action="store_true")
    args = ap.parse_args()
    duration = 3.0 if args.quick else args.duration
    kinds = [k for k, skip in (("lumberjack", args.skip_lumberjack),
                               ("bulk", args.skip_bulk)) if not skip]
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {args.connections} connections, "
          f"{duration:.0f} s per phase", flush=True)
    refs = {k: reference(k, args.connections, duration) for k in kinds}
    us, ref_us, job_us = worker_cost()
    print(f"worker: normalize + event table {us:.0f} us per event on one core (reference "
          f"normalizer {ref_us:.0f} us: {ref_us / us:.1f}x); whole worker job {job_us:.0f} us "
          f"(= {1e6 / job_us:,.0f} events/s per worker process)", flush=True)
    with tempfile.TemporaryDirectory(prefix="netmeta-bench-beats-") as d:
        tmp = Path(d)
        http, lj, es = free_port(), free_port(), free_port()
        log = tmp / "serve.log"
        with process_group([NETMETA, "serve", "--config", str(serve_config(tmp, http, lj, es))],
                           log) as proc:
            if not wait_until(lambda: bool(metrics(http)), 60):
                raise SystemExit(f"netmeta serve did not come up:\n{tail(log)}")
            ports = {"lumberjack": lj, "bulk": es}
            for k in kinds:  # warm-up: the worker processes start
                run_clients(k, ports[k], 1, 0.5, 90_000_000 + len(k))
            for k in kinds:
                before = metrics(http).get(STORED, 0.0)
                events, secs = run_clients(k, ports[k], args.connections, duration,
                                           60_000_000 if k == "lumberjack" else 70_000_000)
                stored = metrics(http).get(STORED, 0.0) - before
                report(f"netmeta {k} (stored)", events, secs, refs[k])
                if stored < events:
                    print(f"  stored counter {stored:.0f} < acknowledged {events}", flush=True)
            if stop(proc) is None:
                print(f"netmeta serve did not stop within 60 s:\n{tail(log)}")


if __name__ == "__main__":
    main()
