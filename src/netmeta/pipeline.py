"""sources → decode → normalize → enrich → route → sinks, batched.

Threads in the main process read (one per input) and write (one writer owns the store);
decoding, normalizing and enriching run in a pool of worker processes on whole chunks.
Between the stages are bounded queues: a full queue blocks the file readers
(backpressure); a datagram source would count a drop instead. Results are consumed in the
order chunks were read, so the file positions committed with a batch never run ahead of
the events stored, which makes tailing exactly-once across crashes.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import itertools
import logging
import multiprocessing
import os
import queue
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from netmeta import metrics
from netmeta.config import Config, Input
from netmeta.enrich.geoip import GeoIP
from netmeta.event import Failure, Origin, failures_table, to_documents
from netmeta.normalize.exporters import exporter_ip
from netmeta.sources.files import Chunk, Tailer
from netmeta.sources.pcap import udp_datagrams
from netmeta.sources.udp import Datagrams, UdpListener, rcvbuf_errors
from netmeta.store.duckdb import IndexSet, Position, Store
from netmeta.store.partitions import EventFile
from netmeta.worker import (
    EnrichSpec,
    InlineExecutor,
    Job,
    Result,
    init_worker,
    run_job,
    streams_of,
)

log = logging.getLogger("netmeta")


# ---------------------------------------------------------------- the pipeline

@dataclass(slots=True)
class Stats:
    records: int = 0
    events: int = 0
    failures: int = 0
    bytes: int = 0
    stored: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


_STOP = object()


class Pipeline:
    """Owns the workers and the writer; sources feed it with :meth:`submit`."""

    def __init__(self, cfg: Config, store: Store | None,
                 sink: Callable[[pa.Table], None] | None = None) -> None:
        self.cfg = cfg
        self.store = store
        self.sink = sink  # instead of the store (``ingest --stdout``)
        spec = EnrichSpec.from_config(
            cfg, str(store.root) if store is not None and sink is None else None)
        self._log_geoip(spec)
        self._spec = spec
        self.executor = self._pool(cfg.pipeline.workers)
        # NetFlow v9 / IPFIX data needs the templates its exporter sent before, and sequence
        # numbers are followed per exporter: UDP jobs go, in order, to one of ``shards``
        # single-process workers chosen by the exporter's address (exporter affinity)
        self.shards = max(1, cfg.pipeline.workers)
        self._ordered: dict[int, cf.Executor] = {}
        self._ordered_lock = threading.Lock()
        self.futures: queue.Queue[Any] = queue.Queue(maxsize=cfg.pipeline.queue_size)
        # push inputs wait for their jobs to be stored: ack id -> future
        self._acks: dict[int, cf.Future[None]] = {}
        self._ack_ids = itertools.count(1)
        self._acks_lock = threading.Lock()
        self.stats = Stats()
        self.error: BaseException | None = None
        self._writer = threading.Thread(target=self._write_loop, name="writer", daemon=True)
        self._writer.start()

    def _pool(self, workers: int, shard: int = 0) -> cf.Executor:
        if workers <= 0:
            return InlineExecutor(self._spec)
        # spawn, not fork: a forked worker would inherit the open store and the threads'
        # locks of this process
        return cf.ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"),
            initializer=init_worker, initargs=(self._spec, os.getpid(), shard))

    def _executor_for(self, job: Job) -> cf.Executor:
        if job.format not in UDP_FORMATS:
            return self.executor
        shard = job.shard % self.shards
        with self._ordered_lock:  # several UDP inputs may send their first job at once
            if shard not in self._ordered:
                self._ordered[shard] = (self.executor
                                        if isinstance(self.executor, InlineExecutor)
                                        else self._pool(1, shard))
            return self._ordered[shard]

    def shard_of(self, exporter: str) -> int:
        """The ordered worker of an exporter ("ip:port"): by address, not port, since an
        exporter may change its source port (templates are kept per address)."""
        if self.shards == 1:
            return 0
        return zlib.crc32(exporter_ip(exporter).encode()) % self.shards

    @staticmethod
    def _log_geoip(spec: EnrichSpec) -> None:
        reason = GeoIP.disabled_reason(spec.city_db, spec.asn_db)
        if reason:
            log.warning(reason)

    def submit(self, job: Job) -> None:
        """Hand a chunk over; blocks while the queue is full (backpressure)."""
        if self.error is not None:
            raise RuntimeError("pipeline writer failed") from self.error
        fut = self._executor_for(job).submit(run_job, job)
        while True:
            try:
                self.futures.put(fut, timeout=0.5)
                break
            except queue.Full:
                if self.error is not None:
                    raise RuntimeError("pipeline writer failed") from self.error
        metrics.queue_depth.labels("chunks").set(self.futures.qsize())

    def submit_acked(self, job: Job) -> cf.Future[None]:
        """Hand a job over (blocking while the queue is full); the future is resolved once
        its events are committed to the store, or fails with the reason they were not."""
        fut: cf.Future[None] = cf.Future()
        with self._acks_lock:
            ack = next(self._ack_ids)
            self._acks[ack] = fut
        try:
            self.submit(dataclasses.replace(job, ack=ack))
        except BaseException:
            with self._acks_lock:
                self._acks.pop(ack, None)
            raise
        return fut

    def _settle(self, acks: list[int], error: BaseException | None = None) -> None:
        with self._acks_lock:
            futs = [self._acks.pop(a) for a in acks if a in self._acks]
        for f in futs:
            if error is None:
                f.set_result(None)
            else:
                f.set_exception(error)

    def try_submit(self, job: Job) -> bool:
        """Hand a chunk over unless the queue is full (datagram sources must not block)."""
        if self.error is not None or self.futures.full():
            return False
        self.submit(job)
        return True

    def close(self) -> None:
        """Flush everything in flight, then stop (graceful shutdown)."""
        self.futures.put(_STOP)
        self._writer.join()
        self.executor.shutdown(wait=True)
        for ex in self._ordered.values():
            if ex is not self.executor:
                ex.shutdown(wait=True)
        if self.error is not None:
            raise RuntimeError(f"pipeline writer failed: {self.error}") from self.error

    # -------------------------------------------------------- writer

    def _write_loop(self) -> None:
        pend_events: list[pa.Table] = []
        pend_files: list[EventFile] = []
        pend_counts: dict[str, int] = {}
        pend_fail: list[Failure] = []
        pend_acks: list[int] = []
        pend_batches: list[tuple[str, str]] = []
        positions: dict[tuple[str, int, int], Position] = {}
        forget: list[tuple[str, int, int]] = []
        rows = 0
        deadline = time.monotonic() + self.cfg.pipeline.batch_timeout
        try:
            while True:
                timeout = max(0.0, deadline - time.monotonic())
                try:
                    item = self.futures.get(timeout=timeout)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    break
                if item is not None:
                    res: Result = item.result()
                    self._count(res)
                    if res.events is not None and res.events.num_rows:
                        pend_events.append(res.events)
                    pend_files += res.files
                    for stream, n in res.counts.items():
                        pend_counts[stream] = pend_counts.get(stream, 0) + n
                    rows += res.n_events
                    pend_fail += res.failures
                    if res.position is not None:
                        p = res.position
                        positions[(p.input, p.device, p.inode)] = p
                    forget += [(res.input, d, i) for d, i in res.forget]
                    if res.ack:
                        pend_acks.append(res.ack)
                    if res.digest:
                        pend_batches.append((res.input, res.digest))
                due = time.monotonic() >= deadline
                # a client waiting for its batch is answered as soon as nothing else waits
                waiting = bool(pend_acks) and self.futures.empty()
                if rows >= self.cfg.pipeline.batch_size or waiting or (due and (
                        pend_events or pend_files or pend_fail or positions or forget)):
                    try:
                        self._flush(pend_events, pend_files, pend_counts, pend_fail,
                                    list(positions.values()), forget, rows, pend_batches)
                    except BaseException as e:
                        self._settle(pend_acks, e)
                        raise
                    self._settle(pend_acks)
                    pend_events, pend_files, pend_counts = [], [], {}
                    pend_fail, positions, forget, rows = [], {}, [], 0
                    pend_acks, pend_batches = [], []
                if due or item is None:
                    deadline = time.monotonic() + self.cfg.pipeline.batch_timeout
            self._flush(pend_events, pend_files, pend_counts, pend_fail,
                        list(positions.values()), forget, rows, pend_batches)
            self._settle(pend_acks)
        except BaseException as e:  # noqa: BLE001 - reported by submit()/close()
            with self._acks_lock:
                waiting = list(self._acks)
            self._settle(waiting, RuntimeError(f"pipeline writer failed: {e}"))
            log.exception("writer failed")
            self.error = e
            # unblock a reader waiting on a full queue
            while True:
                try:
                    self.futures.get_nowait()
                except queue.Empty:
                    break

    def _count(self, res: Result) -> None:
        n_ev = res.n_events
        n_fail = len(res.failures)
        metrics.received.labels(res.input).inc(n_ev + n_fail)
        metrics.received_bytes.labels(res.input).inc(res.nbytes)
        metrics.events.labels(res.input).inc(n_ev)
        metrics.failed.labels(res.input).inc(n_fail)
        for c in res.exporters:
            labels = (res.input, c.exporter, c.protocol)
            metrics.exporter_datagrams.labels(*labels).inc(c.datagrams)
            metrics.exporter_records.labels(*labels).inc(c.records)
            metrics.exporter_lost.labels(*labels).set(c.lost)
            metrics.exporter_resets.labels(*labels).set(c.resets)
        with self.stats.lock:
            self.stats.records += n_ev + n_fail
            self.stats.events += n_ev
            self.stats.failures += n_fail
            self.stats.bytes += res.nbytes

    def _flush(self, events: list[pa.Table], files: list[EventFile], counts: dict[str, int],
               fails: list[Failure], positions: list[Position],
               forget: list[tuple[str, int, int]], n_events: int,
               batches: list[tuple[str, str]] | None = None) -> None:
        metrics.queue_depth.labels("chunks").set(self.futures.qsize())
        table = pa.concat_tables(events, promote_options="default") if events else None
        if self.sink is not None:
            if table is not None:
                self.sink(table)
            if fails:
                for f in fails:
                    log.warning("failure at %s:%s: %s", f.path or "-", f.offset, f.message)
            return
        if self.store is None:
            return
        if table is None and not files and not fails and not positions and not forget \
                and not batches:
            return
        failures = failures_table(fails) if fails else None
        with metrics.append_seconds.time():
            if table is not None:  # events that were not written by a worker
                for stream, n in self.store.append(table).items():
                    counts[stream] = counts.get(stream, 0) + n
            self.store.commit(files, failures, positions, forget,
                              busy=not self.futures.empty(), batches=batches or ())
        for stream, n in counts.items():
            metrics.stored.labels(stream).inc(n)
        with self.stats.lock:
            self.stats.stored += n_events


# ---------------------------------------------------------------- sources

def job_from_chunk(input_name: str, fmt: str, chunk: Chunk, tracked: bool,
                   forget: Iterable[tuple[int, int]] = ()) -> Job:
    stdin = chunk.path == "-"
    origin = Origin(input_name, None if stdin else chunk.path, chunk.device,
                            chunk.inode, chunk.offset)
    return Job(input_name, fmt, origin, chunk.data, chunk.oversized,
               chunk.end if tracked else None, tuple(forget))


UDP_FORMATS = ("netflow", "sflow")
_NETFLOW_VERSIONS = (b"\x00\x05", b"\x00\x09", b"\x00\x0a")  # NetFlow v5, v9, IPFIX
_SFLOW_VERSION = b"\x00\x00\x00\x05"


def _wanted(fmt: str, payload: bytes) -> bool:
    if fmt == "sflow":
        return payload[:4] == _SFLOW_VERSION
    return payload[:2] in _NETFLOW_VERSIONS


def datagram_jobs(input_name: str, fmt: str, path: str, exporter: str, batch: int = 512
                  ) -> Iterable[Job]:
    """Jobs of export datagrams (``fmt``: netflow or sflow) from a capture (pcap/pcapng),
    or from a file holding one raw datagram (exporter given). UDP datagrams of a capture
    that are not of the format (DNS, ...) are passed over."""
    origin = Origin(input_name, path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic not in _CAPTURE_MAGICS:
        yield Job(input_name, fmt, origin, b"",
                  datagrams=((Path(path).read_bytes(), exporter),))
        return
    pending: list[tuple[bytes, str]] = []
    for d in udp_datagrams(path):
        if _wanted(fmt, d.payload):
            pending.append((d.payload, f"{d.src}:{d.sport}"))
        if len(pending) >= batch:
            yield Job(input_name, fmt, origin, b"", datagrams=tuple(pending))
            pending = []
    if pending:
        yield Job(input_name, fmt, origin, b"", datagrams=tuple(pending))


# pcap (both byte orders, micro- and nanosecond) and pcapng
_CAPTURE_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                   b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a"}


class _InputThread(threading.Thread):
    """An input feeding the pipeline until ``stop``; a failure is logged and kept, and the
    rest of the service goes on."""

    def __init__(self, name: str, pipeline: Pipeline, stop: threading.Event) -> None:
        super().__init__(name=f"input-{name}", daemon=True)
        self.input_name, self.pipeline, self.stop = name, pipeline, stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.loop()
        except BaseException as e:  # noqa: BLE001 - logged, the service keeps running
            if not self.stop.is_set():
                log.exception("input %s stopped", self.input_name)
                self.error = e
        finally:
            self.close()

    def loop(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class TailSource(_InputThread):
    """Tails an input's globs and feeds the pipeline until stopped."""

    def __init__(self, name: str, inp: Input, pipeline: Pipeline, store: Store,
                 stop: threading.Event) -> None:
        super().__init__(name, pipeline, stop)
        self.inp = inp
        pl = pipeline.cfg.pipeline
        self.tailer = Tailer(inp.paths, store.positions(name), read_size=pl.read_size,
                             max_line=pl.max_line)

    def loop(self) -> None:
        truncs = 0
        while not self.stop.is_set():
            chunks = self.tailer.poll()
            forgotten = self.tailer.forgotten()
            for i, c in enumerate(chunks):
                last = i == len(chunks) - 1
                self.pipeline.submit(job_from_chunk(
                    self.input_name, self.inp.type, c, True, forgotten if last else ()))
            if forgotten and not chunks:
                self.pipeline.submit(Job(self.input_name, self.inp.type,
                                         Origin(self.input_name), b"",
                                         forget=tuple(forgotten)))
            if self.tailer.truncations > truncs:
                metrics.truncations.labels(self.input_name).inc(
                    self.tailer.truncations - truncs)
                truncs = self.tailer.truncations
            if not self.tailer.behind:
                self.stop.wait(self.inp.poll_interval)

    def close(self) -> None:
        self.tailer.close()


class UdpSource(_InputThread):
    """Receives an input's export datagrams and feeds the pipeline until stopped.

    Datagrams wait here, per ordered worker (exporter affinity), until there are
    ``FLUSH_DATAGRAMS`` of them or the oldest is ``FLUSH_AGE`` old: a job has a fixed cost
    (an event file is written and fsynced), so jobs grow with the load instead of the load
    drowning in small jobs. While the pipeline's queue is full they keep waiting, up to
    ``MAX_PENDING`` bytes; beyond that the oldest are dropped and counted (reason
    ``queue_full``), since a stalled socket would lose more, silently, in the kernel."""

    FLUSH_DATAGRAMS = 4096
    FLUSH_AGE = 0.5  # seconds
    MAX_JOB = 16384  # datagrams per job at most (a backlog is handed over in pieces)
    MAX_PENDING = 256 << 20  # bytes

    def __init__(self, name: str, inp: Input, pipeline: Pipeline,
                 stop: threading.Event) -> None:
        super().__init__(name, pipeline, stop)
        self.format = {"sflow": "sflow", "syslog": "syslog"}.get(inp.type, "netflow")
        self.transport = "udp" if self.format == "syslog" else ""
        self.listener = UdpListener(inp.listen, inp.listen_port, rcvbuf=inp.rcvbuf)
        warning = self.listener.rcvbuf_warning()
        if warning:
            log.warning("input %s: %s", name, warning)
        self._kernel_checked = 0.0
        # per shard: datagrams, when each arrived (time.time()), their bytes, and the
        # monotonic time of the oldest
        self._pending: dict[int, tuple[list[tuple[bytes, str]], list[float], int, float]] = {}
        self._pending_bytes = 0

    def deliver(self, batch: Datagrams) -> bool:
        now = time.monotonic()
        if batch.payloads:
            metrics.received_datagrams.labels(self.input_name).inc(len(batch.payloads))
        received = batch.received or time.time()
        for p, (h, port) in zip(batch.payloads, batch.peers, strict=True):
            peer = f"[{h}]:{port}" if ":" in h else f"{h}:{port}"
            shard = self.pipeline.shard_of(peer)
            entry = self._pending.get(shard)
            if entry is None:
                entry = self._pending[shard] = ([], [], 0, now)
            entry[0].append((p, peer))
            entry[1].append(received)
            self._pending[shard] = (entry[0], entry[1], entry[2] + len(p), entry[3])
            self._pending_bytes += len(p)
        self.flush(now)
        self._kernel_counters(now)
        return True

    def _kernel_counters(self, now: float) -> None:
        if now - self._kernel_checked > 1.0:  # /proc is read at most once a second
            self._kernel_checked = now
            metrics.kernel_drops.labels(self.input_name).set(self.listener.kernel_drops())
            metrics.rcvbuf_errors.set(rcvbuf_errors())

    def idle(self) -> None:
        now = time.monotonic()
        self.flush(now)
        self._kernel_counters(now)

    def flush(self, now: float, force: bool = False) -> None:
        """Hand over what is due, in jobs of at most MAX_JOB datagrams; stop at the first
        job the queue refuses. Beyond MAX_PENDING bytes, the oldest are dropped."""
        full = False
        for shard in list(self._pending):
            while not full and shard in self._pending:
                datagrams, times, nbytes, since = self._pending[shard]
                if not force and len(datagrams) < self.FLUSH_DATAGRAMS and \
                        now - since < self.FLUSH_AGE:
                    break
                k = self.MAX_JOB
                job = Job(self.input_name, self.format, Origin(self.input_name), b"",
                          datagrams=tuple(datagrams[:k]), shard=shard, received=times[0],
                          times=tuple(times[:k]), transport=self.transport)
                if not self.pipeline.try_submit(job):
                    full = True  # the rest waits too
                    break
                self._take(shard, k)
        while self._pending_bytes > self.MAX_PENDING:
            shard = min(self._pending, key=lambda k: self._pending[k][3])
            n = self._take(shard, self.MAX_JOB)
            metrics.dropped.labels(self.input_name, "queue_full").inc(n)
            log.warning("input %s: pipeline behind, %d datagrams dropped", self.input_name, n)

    def _take(self, shard: int, k: int) -> int:
        """Forget the first ``k`` datagrams waiting for ``shard``; returns how many."""
        datagrams, times, nbytes, since = self._pending[shard]
        gone = sum(len(p) for p, _ in datagrams[:k])
        self._pending_bytes -= gone
        if len(datagrams) <= k:
            del self._pending[shard]
            return len(datagrams)
        self._pending[shard] = (datagrams[k:], times[k:], nbytes - gone, since)
        return k

    def loop(self) -> None:
        self.listener.run(self.deliver, self.stop, idle=self.idle)
        self._drain()

    def _drain(self) -> None:
        """At stop: what was received is handed over (blocking), not lost."""
        for shard in list(self._pending):
            while shard in self._pending:
                datagrams, times, _, _ = self._pending[shard]
                k = self.MAX_JOB
                self.pipeline.submit(Job(self.input_name, self.format,
                                         Origin(self.input_name), b"",
                                         datagrams=tuple(datagrams[:k]), shard=shard,
                                         received=times[0], times=tuple(times[:k]),
                                         transport=self.transport))
                self._take(shard, k)

    def close(self) -> None:
        self.listener.close()


class TcpSource(_InputThread):
    """Syslog over TCP (TLS optional). Connection threads add framed messages here; they
    are handed over in jobs of up to FLUSH messages or every FLUSH_AGE seconds. A full
    pipeline blocks the connection that delivers (TCP backpressure), nothing is dropped."""

    FLUSH = 4096
    FLUSH_AGE = 0.25  # seconds

    def __init__(self, name: str, inp: Input, pipeline: Pipeline,
                 stop: threading.Event) -> None:
        from netmeta.sources.tcp import TcpListener

        super().__init__(name, pipeline, stop)
        self.listener = TcpListener(inp.listen, inp.listen_port, max_size=inp.max_message,
                                    framing=inp.framing, certfile=inp.tls.cert,
                                    keyfile=inp.tls.key)
        self._lock = threading.Lock()
        self._messages: list[tuple[bytes, str]] = []
        self._times: list[float] = []
        self._rejects: list[tuple[str, bytes]] = []
        self._since = 0.0

    def deliver(self, items: list[Any], peer: str, at: float) -> None:
        from netmeta.decode.syslog import FrameError

        with self._lock:
            if not self._messages and not self._rejects:
                self._since = time.monotonic()
            for item in items:
                if isinstance(item, FrameError):
                    self._rejects.append((f"{peer}: {item.reason} ({item.size} bytes)",
                                          item.head))
                else:
                    self._messages.append((item, peer))
                    self._times.append(at)
            full = len(self._messages) >= self.FLUSH
        metrics.received_datagrams.labels(self.input_name).inc(
            sum(1 for i in items if isinstance(i, bytes)))
        if full:
            self.flush()

    def flush(self, due_only: bool = False) -> None:
        with self._lock:
            if not self._messages and not self._rejects:
                return
            if due_only and time.monotonic() - self._since < self.FLUSH_AGE:
                return
            job = Job(self.input_name, "syslog", Origin(self.input_name), b"",
                      datagrams=tuple(self._messages), times=tuple(self._times),
                      rejects=tuple(self._rejects), transport="tcp")
            self._messages, self._times, self._rejects = [], [], []
        self.pipeline.submit(job)  # blocks while the pipeline is full

    def loop(self) -> None:
        self.listener.run(self.deliver, self.stop, idle=lambda: self.flush(due_only=True))
        self.flush()

    def close(self) -> None:
        self.listener.close()


class PushSource:
    """An HTTP push input: its own port (TLS optional), answering once batches are stored."""

    def __init__(self, name: str, inp: Input, pipeline: Pipeline, store: Store) -> None:
        from netmeta.sources.http_push import Batch, create_app
        from netmeta.web.app import HttpServer

        self.input_name, self.inp, self.pipeline = name, inp, pipeline

        def submit(batch: Batch) -> cf.Future[None]:
            return pipeline.submit_acked(Job(
                name, inp.type, Origin(name), orjson.dumps(batch.records), digest=batch.digest))

        app = create_app(name, inp.http, submit, lambda d: store.seen_batch(name, d))
        self.server = HttpServer(app, inp.listen, inp.listen_port, certfile=inp.http.tls.cert,
                                 keyfile=inp.http.tls.key)

    @property
    def address(self) -> tuple[str, int]:
        return self.inp.listen, self.inp.listen_port

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()


def build_store(cfg: Config, *, read_only: bool = False) -> Store:
    sets = [IndexSet(n, s.title, s.retention_days) for n, s in cfg.index_sets.items()]
    return Store(cfg.data_dir, sets, streams_of(cfg), read_only=read_only)


def ndjson_sink(write: Callable[[bytes], Any]) -> Callable[[pa.Table], None]:
    def sink(table: pa.Table) -> None:
        write(b"".join(orjson.dumps(d) + b"\n" for d in to_documents(table)))
    return sink
