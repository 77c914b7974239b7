"""End-to-end UDP benchmark: netmeta's NetFlow collector against nfcapd, same datagrams.

Method
------
- Datagrams are built before any timing by a small encoder (the record layout and values
  of ``bench/netflow_decode.py``): a few exporters, each a socket of its own bound on
  127.0.0.1 (distinct source ports), half of them NetFlow v9 and half IPFIX, each with its
  own source id / observation domain. Every exporter has a cycle of ``CYCLE`` ~1400-byte
  datagrams of 20-field IPv4 flow records; the first datagram of a cycle carries the
  template first, so templates are sent first and re-sent every ``CYCLE`` datagrams
  (the records repeat from cycle to cycle).
  Sequence numbers are patched in at send time (4 bytes, in place) so that they are
  correct per exporter: v9 counts export packets (RFC 3954), IPFIX counts data records
  sent before the message (RFC 7011).
- A sender process (multiprocessing, spawn: no GIL shared with the collector or with the
  measuring process) offers a fixed rate in flows/s for ``--duration`` seconds: bursts of
  ~1 ms worth of flows, then a sleep to keep the schedule. When it falls more than 20 ms
  behind it does not catch up in one burst (the backlog is skipped), so the *achieved*
  offered rate is what is reported and what losses are counted against.
- netmeta: ``netmeta serve`` with a fresh temp data dir and a netflow input only (GeoIP,
  Community ID and locality enrichment on; without GeoIP databases GeoIP is a no-op).
  A warm-up of 1 s at 10k flows/s comes first (the first NetFlow datagrams start netmeta's
  worker process; what it loses meanwhile is printed, not counted), then the measured
  phase from the same exporters; figures are what the counters gained in between. After
  the send, the stored count (sum of ``netmeta_stream_events_stored_total``) is polled
  until it reaches what was sent or stops growing with nothing left in flight (every
  datagram handed to the pipeline decoded, every event taken by the writer stored); then
  serve is stopped with SIGTERM.
  Stored flows/s = stored / send duration; loss = 1 - stored / sent.
  Where loss happens: kernel drops of the listening socket (``drops`` of /proc/net/udp,
  read by this script, the same way for both collectors; netmeta's own
  ``netmeta_udp_kernel_drops`` gauge is printed too, it is refreshed at most once a
  second while datagrams arrive) and netmeta's ``netmeta_dropped_total`` (batches dropped
  on a full pipeline queue).
- nfcapd (nfdump 1.7, Debian package ``nfdump``): the same rates and datagrams, run in the
  foreground with a temp flow dir, stopped with SIGTERM (it flushes its file), flows
  counted with ``nfdump -R DIR -I``; its own exit summary gives its sequence errors. It
  needs no warm-up. A short low-rate run first checks that nfcapd stores exactly what was
  sent. Without ``nfcapd`` on PATH the reference is skipped.
- Decode only: ``netmeta.decode.netflow.decode_many`` over the same datagrams in this
  process, receive batches of 256: records/s on one core.
- Exporters all send from 127.0.0.1 by default. netmeta gives each exporter *address* to
  one of its ordered workers (templates and sequence numbers live there), so all of them
  land on one worker process; ``--spread`` sends exporter i from 127.0.0.(1+i) instead
  (``--spread --exporters 8`` happens to split evenly over 2 workers).

Caveats
-------
- Everything runs on one host with 2 cores. The collectors run one after the other, but
  each shares the cores with the sender (whose ``sendto`` on loopback also does the
  receive-side kernel work) and with whatever else runs on the machine (the load average
  at start is printed): netmeta's receive thread + writer and its worker process compete
  with the sender for 2 cores. Figures are lower bounds of what each collector does on
  dedicated cores; the sender itself kept up with 2M flows/s here (see the achieved
  offered rate and schedule slips).
- Receive buffers differ: netmeta asks for 8 MiB with SO_RCVBUFFORCE (granted when run
  as root); nfcapd is asked for the same with ``-B`` but uses SO_RCVBUF, which
  net.core.rmem_max caps. The granted sizes are printed as ``ss``'s rb (the kernel
  doubles the size asked for).
- netmeta does much more per flow than nfcapd (ECS normalization, enrichment, DuckDB
  store); the ratio is a cost comparison of collecting flows, not of equal work.

    .venv/bin/python bench/netflow_udp.py [--quick] [--duration S] [--rates 100k,1M]
        [--exporters N] [--spread] [--no-nfcapd]
    (env NETMETA_BENCH_DURATION also sets the duration)
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netflow_decode import IPFIX_FIELDS, V9_FIELDS, record_values  # noqa: E402

NETMETA = str(Path(sys.executable).with_name("netmeta"))
DGRAM = 1400  # bytes of a datagram at most
CYCLE = 1000  # datagrams per exporter before its template is sent again
EXPORTERS = 4
BATCH = 256  # decode-only receive batch
LOSS_FREE = 0.001  # < 0.1 % loss
MAX_LAG = 3.0  # seconds after the last datagram by which everything must be stored
DEFAULT_RATES = "25k,100k,250k,500k,1M"
V9_HEADER = struct.Struct(">HHIIII")  # version, count, sys uptime, unix secs, sequence, source id
IPFIX_HEADER = struct.Struct(">HHIII")  # version, length, export time, sequence, domain
SEQ = struct.Struct(">I")
UPTIME_MS = 3_700_000  # sys uptime in v9 headers (record times are 3.60M-3.66M ms)


# ---------------------------------------------------------------- encoder

@dataclass(slots=True)
class Exporter:
    ipfix: bool
    domain: int  # v9 source id / IPFIX observation domain
    datagrams: list[bytearray]  # one cycle; the first carries the template
    flows: list[int]  # data records of each datagram

    @property
    def seq_offset(self) -> int:
        return 8 if self.ipfix else 12


def build_exporter(ipfix: bool, domain: int, seed: int) -> Exporter:
    rnd = random.Random(seed)
    fields = IPFIX_FIELDS if ipfix else V9_FIELDS
    rec = struct.Struct(">" + "".join(code for _, _, code in fields))
    tpl = struct.pack(">HH", 256, len(fields)) + b"".join(
        struct.pack(">HH", eid, length) for eid, length, _ in fields)
    tpl_set = struct.pack(">HH", 2 if ipfix else 0, 4 + len(tpl)) + tpl
    head = IPFIX_HEADER.size if ipfix else V9_HEADER.size
    now = int(time.time())
    # record times: IPFIX absolute ms (moved from 2023 to now), v9 sys uptime ms
    shift = now * 1000 - 60_000 - 1_700_000_000_000 if ipfix else 0
    datagrams, flows = [], []
    for i in range(CYCLE):
        with_tpl = i == 0
        room = DGRAM - head - 4 - (len(tpl_set) if with_tpl else 0)
        n = room // rec.size
        records = []
        for _ in range(n):
            v = record_values(rnd, ipfix)
            if ipfix:
                v[10] = int(v[10]) + shift
                v[11] = int(v[11]) + shift
            records.append(rec.pack(*v))
        data = b"".join(records)
        sets = (tpl_set if with_tpl else b"") + struct.pack(">HH", 256, 4 + len(data)) + data
        if ipfix:
            hdr = IPFIX_HEADER.pack(10, IPFIX_HEADER.size + len(sets), now, 0, domain)
        else:  # count: all records of the packet, the template record included
            hdr = V9_HEADER.pack(9, n + int(with_tpl), UPTIME_MS, now, 0, domain)
        datagrams.append(bytearray(hdr + sets))
        flows.append(n)
    return Exporter(ipfix, domain, datagrams, flows)


def build_exporters(n: int) -> list[Exporter]:
    return [build_exporter(i % 2 == 1, 100 + i, seed=11 + i) for i in range(n)]


def send_order(exporters: list[Exporter], cycles: int = 1) -> list[tuple[bytes, int]]:
    """(datagram, exporter index) as the sender sends them (round robin), sequence
    numbers patched, for the decode-only run."""
    out: list[tuple[bytes, int]] = []
    seqs = [0] * len(exporters)
    for i in range(CYCLE * cycles):
        for e, ex in enumerate(exporters):
            buf = bytearray(ex.datagrams[i % CYCLE])
            SEQ.pack_into(buf, ex.seq_offset, seqs[e] & 0xFFFFFFFF)
            seqs[e] += ex.flows[i % CYCLE] if ex.ipfix else 1
            out.append((bytes(buf), e))
    return out


# ---------------------------------------------------------------- sender (own process)

@dataclass(slots=True)
class Sent:
    flows: int
    datagrams: int
    seconds: float
    errors: int
    slips: int  # times the schedule was reset after falling > 20 ms behind

    @property
    def rate(self) -> float:
        return self.flows / self.seconds if self.seconds > 0 else 0.0


def sender(exporters: list[Exporter], sources: list[str], dest: tuple[str, int],
           conn: Connection) -> None:
    """Runs phases as asked through ``conn``: ``(rate, duration)`` offers ``rate`` flows/s to
    ``dest`` for ``duration`` s and answers with a :class:`Sent` tuple; None ends. The
    exporters (sockets, sequence numbers, places in their cycles) go on from phase to
    phase, as real exporters would."""
    socks = []
    for source in sources:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        s.bind((source, 0))  # an exporter = a source port of its own
        socks.append(s)
    n = len(exporters)
    cycles = [ex.datagrams for ex in exporters]
    flows = [ex.flows for ex in exporters]
    offsets = [ex.seq_offset for ex in exporters]
    per_packet = [not ex.ipfix for ex in exporters]
    seqs, pos = [0] * n, [0] * n
    sends = [s.sendto for s in socks]
    pack_into = SEQ.pack_into
    monotonic, sleep = time.monotonic, time.sleep
    e = 0
    conn.send("ready")
    while True:
        try:
            phase = conn.recv()
        except EOFError:  # the parent is gone
            break
        if phase is None:
            break
        rate, duration = phase
        burst = max(1.0, rate * 0.001)  # flows per burst: ~1 ms worth
        max_lag = rate * 0.020  # flows; further behind than this, the schedule moves on
        sent_flows = sent_dg = errors = slips = 0
        skipped = 0.0  # flows the schedule skipped
        t0 = monotonic()
        end = t0 + duration
        while True:
            now = monotonic()
            if now >= end:
                break
            due = (now - t0) * rate - skipped
            if due - sent_flows > max_lag:
                skipped += due - sent_flows - burst
                due = sent_flows + burst
                slips += 1
            if sent_flows >= due:
                sleep(min(end - now, (sent_flows + burst + skipped) / rate - (now - t0)))
                continue
            stop_at = min(due, sent_flows + 4 * burst)  # re-read the clock now and then
            while sent_flows < stop_at:
                i = pos[e]
                buf = cycles[e][i]
                pack_into(buf, offsets[e], seqs[e] & 0xFFFFFFFF)
                try:
                    sends[e](buf, dest)
                except OSError:
                    errors += 1  # not sent: the exporter's sequence numbers stay as they are
                else:
                    k = flows[e][i]
                    seqs[e] += 1 if per_packet[e] else k
                    pos[e] = i + 1 if i + 1 < CYCLE else 0
                    sent_flows += k
                    sent_dg += 1
                e = e + 1 if e + 1 < n else 0
        # a tuple: a class would be pickled as one of the child's __mp_main__
        conn.send((sent_flows, sent_dg, monotonic() - t0, errors, slips))
    for s in socks:
        s.close()


class Sender:
    """The sender process; exporters keep their state across :meth:`offer` calls."""

    def __init__(self, exporters: list[Exporter], port: int, spread: bool = False) -> None:
        # exporter i on 127.0.0.1, or on 127.0.0.(1 + i) when spread
        sources = [f"127.0.0.{1 + i if spread else 1}" for i in range(len(exporters))]
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=sender, daemon=True,
                                args=(exporters, sources, ("127.0.0.1", port), child))
        self.proc.start()
        child.close()
        try:
            if not self.conn.poll(60) or self.conn.recv() != "ready":
                raise RuntimeError("sender did not start")
        except BaseException:
            self.close()
            raise

    def offer(self, rate: float, duration: float) -> Sent:
        self.conn.send((rate, duration))
        if not self.conn.poll(duration + 60):
            raise RuntimeError("sender did not finish")
        return Sent(*self.conn.recv())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------- helpers

def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def udp_socket_stats(port: int) -> tuple[int, int] | None:
    """(bytes waiting in the receive queue, drops) of the UDP socket bound on
    127.0.0.1:``port``, from /proc/net/udp; None when there is none."""
    local = f"0100007F:{port:04X}"
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        cols = line.split()
        if len(cols) >= 13 and cols[1] == local:
            return int(cols[4].split(":")[1], 16), int(cols[12])
    return None


def rcvbuf_of(port: int) -> int | None:
    """Receive buffer granted to the UDP socket on ``port`` (``ss``'s skmem rb), bytes."""
    if not shutil.which("ss"):
        return None
    try:
        out = subprocess.run(["ss", "-Hunlm", f"sport = :{port}"], capture_output=True,
                             text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"\brb(\d+)", out)
    return int(m.group(1)) if m else None


def wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return False


def drain(port: int, timeout: float = 30) -> None:
    """Wait until the collector has read everything waiting in its socket."""
    def empty() -> bool:
        st = udp_socket_stats(port)
        return st is None or st[0] == 0
    wait_until(empty, timeout, 0.05)


@contextlib.contextmanager
def process_group(cmd: list[str], log: Path, **kw: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A subprocess in a session of its own; whatever is left of its group is killed on
    the way out (the caller stops the leader gracefully first)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, **kw)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # workers that outlived the leader


def stop(proc: subprocess.Popen[bytes], timeout: float = 60) -> int | None:
    """SIGTERM the leader and wait for it (it flushes); None when it did not exit."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def tail(log: Path, n: int = 2000) -> str:
    try:
        return log.read_text(errors="replace")[-n:]
    except OSError:
        return ""


# ---------------------------------------------------------------- runs

@dataclass(slots=True)
class Run:
    sent: Sent
    stored: int
    kernel_drops: int  # from /proc/net/udp
    extra: dict[str, float]
    rcvbuf: int | None
    lag: float = 0.0  # seconds after the last datagram was sent until all was stored

    @property
    def loss(self) -> float:
        return 1 - self.stored / self.sent.flows if self.sent.flows else 0.0

    @property
    def stored_rate(self) -> float:
        """Sustained: what was stored over the time from the first datagram sent until the
        last one was stored (a burst absorbed by buffers does not count as throughput)."""
        took = self.sent.seconds + self.lag
        return self.stored / took if took else 0.0


LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def prom(text: str) -> dict[str, float]:
    """Prometheus text: each family summed over its labels (``name``), and summed per
    label value (``name{label=value}``)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        try:
            value = float(line.rsplit(" ", 1)[1])
        except (ValueError, IndexError):
            continue
        name, _, labels = line.rsplit(" ", 1)[0].partition("{")
        out[name] = out.get(name, 0.0) + value
        for k, v in LABEL.findall(labels):
            key = f"{name}{{{k}={v}}}"
            out[key] = out.get(key, 0.0) + value
    return out


WARMUP = (10_000.0, 1.0)  # flows/s, seconds: templates in, worker processes started
NETMETA_COUNTERS = ("netmeta_stream_events_stored_total", "netmeta_input_datagrams_total",
                    "netmeta_input_records_total", "netmeta_input_failures_total",
                    "netmeta_dropped_total", "netmeta_exporter_lost",
                    "netmeta_exporter_sequence_resets")


def netmeta_run(exporters: list[Exporter], rate: float, duration: float, tmp: Path,
                spread: bool = False) -> Run:
    """One ``netmeta serve``: a warm-up at a low rate (its first NetFlow datagrams start the
    worker processes), then the measured phase; figures are what changed in between."""
    import yaml

    http, udp = free_port(), free_port(socket.SOCK_DGRAM)
    cfg = {"data_dir": str(tmp / "data"), "http": {"listen": "127.0.0.1", "port": http},
           "pipeline": {"workers": 2},
           "inputs": {"nf": {"type": "netflow", "listen": "127.0.0.1", "port": udp,
                             "enrich": {"geoip": True, "community_id": True,
                                        "locality": True}}}}
    config = tmp / "netmeta.yml"
    config.write_text(yaml.safe_dump(cfg))
    log = tmp / "serve.log"

    def metrics() -> dict[str, float] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5) as r:
                return prom(r.read().decode())
        except OSError:
            return None

    def healthy() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"netmeta serve exited ({proc.returncode}):\n{tail(log)}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/healthz", timeout=2):
                return udp_socket_stats(udp) is not None
        except OSError:
            return False

    def settled(expected: float) -> dict[str, float]:
        """Metrics once the stored count reaches ``expected`` or stops growing: the same
        for 3 s (batches are stored every second) with every datagram handed to the
        pipeline decoded and every event the writer took stored, or the same for 20 s
        whatever else; 120 s at most."""
        drain(udp)
        last, since = -1.0, time.monotonic()
        deadline = time.monotonic() + 120
        m: dict[str, float] = {}
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"netmeta serve exited ({proc.returncode}):\n{tail(log)}")
            m = metrics() or m
            stored = m.get("netmeta_stream_events_stored_total", 0.0)
            if stored >= expected:
                break
            if stored != last:
                last, since = stored, time.monotonic()
            still = time.monotonic() - since
            taken = m.get("netmeta_input_events_total", 0.0)
            handed = (m.get("netmeta_input_datagrams_total", 0.0)
                      - m.get("netmeta_dropped_total", 0.0))
            pending = (handed - m["netmeta_exporter_datagrams_total"]
                       if "netmeta_exporter_datagrams_total" in m else 0.0)
            if (stored > 0 and still >= 3.0 and stored >= taken and pending <= 0
                    ) or still >= 20.0:
                break
            time.sleep(0.25)
        return m

    with process_group([NETMETA, "serve", "--config", str(config)], log, cwd=tmp) as proc:
        if not wait_until(healthy, 60):
            raise RuntimeError(f"netmeta serve did not come up:\n{tail(log)}")
        rcvbuf = rcvbuf_of(udp)
        with Sender(exporters, udp, spread) as snd:
            warm = snd.offer(*WARMUP)
            m0 = settled(warm.flows)
            st0 = udp_socket_stats(udp)
            sent = snd.offer(rate, duration)
            sent_end = time.monotonic()
        m1 = settled(m0.get("netmeta_stream_events_stored_total", 0.0) + sent.flows)
        lag = time.monotonic() - sent_end
        st1 = udp_socket_stats(udp)
        if stop(proc) is None:
            print(f"  netmeta serve did not stop within 60 s:\n{tail(log)}", file=sys.stderr)
    extra = {k: m1.get(k, 0.0) - m0.get(k, 0.0) for k in m1
             if k.startswith(NETMETA_COUNTERS)}
    extra["netmeta_udp_kernel_drops"] = m1.get("netmeta_udp_kernel_drops", 0.0)
    extra["warmup_sent"] = warm.flows
    extra["warmup_stored"] = m0.get("netmeta_stream_events_stored_total", 0.0)
    extra["warmup_kernel_drops"] = st0[1] if st0 else -1
    return Run(sent, int(extra.get("netmeta_stream_events_stored_total", 0)),
               st1[1] - st0[1] if st0 and st1 else -1, extra, rcvbuf, lag)


NFDUMP_FLOWS = re.compile(r"^Flows:\s*(\d+)", re.M)
NFCAPD_SEQ = re.compile(r"Sequence Errors:\s*(\d+)")


def nfdump_flows(flowdir: Path) -> int:
    """Flows stored in nfcapd's files, from their stat records (``nfdump -I``)."""
    out = subprocess.run(["nfdump", "-R", str(flowdir), "-I"], capture_output=True, text=True,
                         timeout=300)
    m = NFDUMP_FLOWS.search(out.stdout)
    if m is None:
        raise RuntimeError(f"no flow count from nfdump -I:\n{out.stdout[-1000:]}"
                           f"{out.stderr[-1000:]}")
    return int(m.group(1))


def nfcapd_run(exporters: list[Exporter], rate: float, duration: float, tmp: Path,
               spread: bool = False) -> Run:
    udp = free_port(socket.SOCK_DGRAM)
    flowdir = tmp / "flows"
    flowdir.mkdir()
    log = tmp / "nfcapd.log"
    cmd = ["nfcapd", "-b", "127.0.0.1", "-p", str(udp), "-w", str(flowdir), "-t", "60",
           "-B", str(8 << 20), "-C", "none"]
    with process_group(cmd, log, cwd=tmp) as proc:
        def listening() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"nfcapd exited ({proc.returncode}):\n{tail(log)}")
            return udp_socket_stats(udp) is not None
        if not wait_until(listening, 20):
            raise RuntimeError(f"nfcapd did not bind UDP {udp}:\n{tail(log)}")
        rcvbuf = rcvbuf_of(udp)
        with Sender(exporters, udp, spread) as snd:
            sent = snd.offer(rate, duration)
        drain(udp)
        time.sleep(0.5)
        st = udp_socket_stats(udp)
        code = stop(proc)
        if code is None:
            raise RuntimeError(f"nfcapd did not stop within 60 s:\n{tail(log)}")
    # nfcapd's own summary at exit: sequence errors would mean wrong numbers or loss
    seq = NFCAPD_SEQ.search(tail(log, 20000))
    return Run(sent, nfdump_flows(flowdir), st[1] if st else -1,
               {"sequence_errors": float(seq.group(1)) if seq else -1.0}, rcvbuf)


# ---------------------------------------------------------------- decode only

def decode_only(exporters: list[Exporter], seconds: float = 1.0) -> float:
    """netmeta decode_many over the datagrams in send order; best records/s of 3 runs."""
    from netmeta.decode import netflow
    from netmeta.decode.templates import TemplateState

    order = send_order(exporters)
    datagrams = [(d, f"127.0.0.1:{40000 + e}") for d, e in order]
    total = sum(ex.flows[i] for ex in exporters for i in range(CYCLE))
    best = 0.0
    for _ in range(3):
        state = TemplateState()
        rows = 0
        t0 = time.perf_counter()
        for i in range(0, len(datagrams), BATCH):
            rows += sum(b.records.num_rows
                        for b in netflow.decode_many(datagrams[i:i + BATCH], state, 0.0).data)
        dt = time.perf_counter() - t0
        if rows != total:
            raise SystemExit(f"decode-only: {rows} records decoded, {total} sent")
        best = max(best, rows / dt)
    return best


# ---------------------------------------------------------------- main

def parse_rate(s: str) -> float:
    s = s.strip().lower()
    mult = {"k": 1e3, "m": 1e6}.get(s[-1:], 1.0)
    return float(s[:-1] if s[-1:] in "km" else s) * mult


def fmt_rate(r: float) -> str:
    return f"{r / 1e6:.2f}M" if r >= 1e6 else f"{r / 1e3:.0f}k"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--duration", type=float,
                    default=float(os.environ.get("NETMETA_BENCH_DURATION", 20)),
                    help="seconds of sending per rate and collector (default 20)")
    ap.add_argument("--quick", action="store_true", help="smoke run: 3 s per rate")
    ap.add_argument("--rates", default=DEFAULT_RATES, help="offered flows/s, comma separated")
    ap.add_argument("--exporters", type=int, default=EXPORTERS)
    ap.add_argument("--spread", action=argparse.BooleanOptionalAction, default=True,
                    help="exporter i sends from 127.0.0.(1+i), as separate routers would "
                         "(netmeta spreads exporters over its workers by address); "
                         "--no-spread: all from 127.0.0.1")
    ap.add_argument("--no-nfcapd", action="store_true", help="skip the reference")
    args = ap.parse_args()
    duration = 3.0 if args.quick else args.duration
    if not 0 < duration <= 600:
        raise SystemExit("--duration: 0 < seconds <= 600")
    rates = [parse_rate(r) for r in args.rates.split(",") if r.strip()]
    # SIGTERM/SIGHUP run the finally blocks (subprocesses are stopped there)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _: sys.exit(128 + signum))

    nfcapd = None if args.no_nfcapd else shutil.which("nfcapd")
    if nfcapd is None and not args.no_nfcapd:
        print("nfcapd not found: the reference is skipped (Debian: apt-get install -y nfdump)")
    if nfcapd is not None and not shutil.which("nfdump"):
        print("nfdump not found (needed to count nfcapd's flows): the reference is skipped")
        nfcapd = None

    t_start = t_build = time.perf_counter()
    load = os.getloadavg()[0]
    exporters = build_exporters(min(max(1, args.exporters), 254))
    per = sorted({f for ex in exporters for f in ex.flows[1:]})
    print(f"NetFlow over UDP on 127.0.0.1, {os.cpu_count()} cores; {len(exporters)} exporters "
          f"{'on 127.0.0.1-' + str(len(exporters)) if args.spread else 'on 127.0.0.1'} "
          f"({sum(not e.ipfix for e in exporters)} v9, {sum(e.ipfix for e in exporters)} "
          f"IPFIX), {'/'.join(map(str, per))} flows per ~{DGRAM}-byte datagram, template "
          f"every {CYCLE} datagrams; {duration:g} s per rate "
          f"(built in {time.perf_counter() - t_build:.1f} s); load average {load:.2f} "
          f"before the start")

    dec = decode_only(exporters)
    print(f"decode only (netmeta decode_many, batches of {BATCH}, this process): "
          f"{dec:,.0f} records/s on one core")

    rows: list[tuple[float, Run, Run | None]] = []
    base = Path(tempfile.mkdtemp(prefix="netmeta-bench-udp-"))
    try:
        if nfcapd is not None:  # nfcapd must store exactly what it is sent at a low rate
            d = base / "nfcapd-check"
            d.mkdir()
            chk = nfcapd_run(exporters, 20_000, 1.0, d, args.spread)
            shutil.rmtree(d, ignore_errors=True)
            ok = chk.stored == chk.sent.flows
            print(f"nfcapd check at 20k flows/s: sent {chk.sent.flows}, stored {chk.stored}"
                  f" {'(equal)' if ok else '(MISMATCH: the reference figures are suspect)'}")
        for rate in rates:
            d = base / f"netmeta-{int(rate)}"
            d.mkdir()
            nm = netmeta_run(exporters, rate, duration, d, args.spread)
            shutil.rmtree(d, ignore_errors=True)
            x = nm.extra
            lost = ", ".join(f"{k.split('=', 1)[1].rstrip('}')} {v:.0f}" for k, v in x.items()
                             if k.startswith("netmeta_exporter_lost{protocol="))
            resets = x.get("netmeta_exporter_sequence_resets", 0)
            print(f"  {fmt_rate(rate):>6} netmeta: offered {nm.sent.rate:,.0f} flows/s "
                  f"({nm.sent.datagrams} datagrams, {nm.sent.slips} schedule slips, "
                  f"{nm.sent.errors} send errors), stored {nm.stored}, all stored "
                  f"{nm.lag:.1f} s after the last datagram\n"
                  f"{'':>16}received "
                  f"{x.get('netmeta_input_datagrams_total', 0):.0f} datagrams, "
                  f"{x.get('netmeta_input_records_total', 0):.0f} records, "
                  f"{x.get('netmeta_input_failures_total', 0):.0f} failures; dropped: kernel "
                  f"{nm.kernel_drops} datagrams (/proc; gauge netmeta_udp_kernel_drops "
                  f"{x['netmeta_udp_kernel_drops']:.0f}), queue_full "
                  f"{x.get('netmeta_dropped_total', 0):.0f} datagrams\n"
                  f"{'':>16}sequence loss seen by netmeta: {lost or '-'} (resets "
                  f"{resets:.0f}); warm-up "
                  f"{x['warmup_stored']:.0f}/"
                  f"{x['warmup_sent']:.0f} flows stored; rcvbuf (ss rb) {nm.rcvbuf}",
                  flush=True)
            ref = None
            if nfcapd is not None:
                d = base / f"nfcapd-{int(rate)}"
                d.mkdir()
                ref = nfcapd_run(exporters, rate, duration, d, args.spread)
                shutil.rmtree(d, ignore_errors=True)
                print(f"  {fmt_rate(rate):>6} nfcapd:  offered {ref.sent.rate:,.0f} flows/s "
                      f"({ref.sent.datagrams} datagrams, {ref.sent.slips} schedule slips), "
                      f"stored {ref.stored}; kernel drops {ref.kernel_drops}, sequence errors "
                      f"{ref.extra['sequence_errors']:.0f}; rcvbuf (ss rb) {ref.rcvbuf}",
                      flush=True)
            rows.append((rate, nm, ref))
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print()
    print(f"{'rate':>6} {'offered':>11} | {'netmeta stored/s':>16} {'loss':>7} | "
          f"{'offered':>11} {'nfcapd stored/s':>15} {'loss':>7} | {'netmeta/nfcapd':>14}")
    for rate, nm, ref in rows:
        line = (f"{fmt_rate(rate):>6} {nm.sent.rate:>11,.0f} | {nm.stored_rate:>16,.0f} "
                f"{nm.loss:>7.2%} | ")
        if ref is None:
            line += f"{'-':>11} {'-':>15} {'-':>7} | {'-':>14}"
        else:
            ratio = nm.stored_rate / ref.stored_rate if ref.stored_rate else float("nan")
            line += (f"{ref.sent.rate:>11,.0f} {ref.stored_rate:>15,.0f} {ref.loss:>7.2%} | "
                     f"{ratio:>13.2f}x")
        print(line)

    def loss_free(runs: list[Run]) -> str:
        # keeping up: nothing lost, and stored within MAX_LAG of the last datagram (not
        # a burst held in buffers that a longer run would overflow)
        ok = [r.sent.rate for r in runs if r.loss < LOSS_FREE and r.lag <= MAX_LAG]
        return f"{max(ok):,.0f} flows/s" if ok else f"none of the rates (< {LOSS_FREE:.1%} loss)"

    print(f"highest loss-free (< {LOSS_FREE:.1%}, stored within {MAX_LAG:.0f} s) offered "
          "rate: netmeta "
          f"{loss_free([nm for _, nm, _ in rows])}", end="")
    refs = [ref for _, _, ref in rows if ref is not None]
    print(f", nfcapd {loss_free(refs)}" if refs else "")
    print(f"decode only: {dec:,.0f} records/s on one core; "
          f"{time.perf_counter() - t_start:.0f} s in all")


if __name__ == "__main__":
    main()
