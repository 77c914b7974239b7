"""sources → decode → normalize → enrich → route → sinks, batched.

Threads in the main process read (one per input, see netmeta.inputs) and write (one
writer owns the store); decoding, normalizing and enriching run in a pool of worker
processes on whole chunks. Between the stages are bounded queues: a full queue blocks the
file readers (backpressure); a datagram input holds datagrams, then drops and counts them.
Results are consumed in the order chunks were read, so the file positions committed with a
batch never run ahead of the events stored, which makes tailing exactly-once across crashes.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from netmeta import metrics
from netmeta.config import Config
from netmeta.enrich.geoip import GeoIP
from netmeta.event import Failure, failures_table, to_documents
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

    def shard_of(self, host: str) -> int:
        """The ordered worker of an exporter: by its address, not its port, since an
        exporter may change its source port (templates are kept per address)."""
        if self.shards == 1:
            return 0
        return zlib.crc32(host.encode()) % self.shards

    @staticmethod
    def _log_geoip(spec: EnrichSpec) -> None:
        reason = GeoIP.disabled_reason(spec.city_db, spec.asn_db)
        if reason:
            log.warning(reason)

    def submit(self, job: Job) -> None:
        """Hand a chunk over; blocks while the queue is full (backpressure)."""
        if self.error is not None:
            raise RuntimeError("pipeline writer failed") from self.error
        store = self.store
        if store is not None and store.streams_version:  # streams created since the start
            job = dataclasses.replace(job, routing=(store.streams_version,
                                                    tuple(store.router.streams)))
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
                # a client waiting for its batch is answered as soon as no finished job
                # waits (not after the next one, which may take a worker's whole job time,
                # nor at the batch timeout: senders that wait for answers would be paced by it)
                waiting = bool(pend_acks) and not self._next_done()
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

    def _next_done(self) -> bool:
        """Whether the next job's result is there already (FIFO: the writer's own queue)."""
        with self.futures.mutex:
            head = self.futures.queue[0] if self.futures.queue else None
        return head is not None and head is not _STOP and head.done()

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
        if res.exporters:  # the exporters page's live counters (last datagram, records/s)
            metrics.LIVE.observe(res.input, res.exporters)
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


# formats whose jobs go to the ordered workers (decoder state per exporter)
UDP_FORMATS = ("netflow", "sflow")


def build_store(cfg: Config, *, read_only: bool = False) -> Store:
    sets = [IndexSet(n, s.title, s.retention_days) for n, s in cfg.index_sets.items()]
    return Store(cfg.data_dir, sets, streams_of(cfg), read_only=read_only,
                 rollups=cfg.pipeline.rollups)


def ndjson_sink(write: Callable[[bytes], Any]) -> Callable[[pa.Table], None]:
    def sink(table: pa.Table) -> None:
        write(b"".join(orjson.dumps(d) + b"\n" for d in to_documents(table)))
    return sink
