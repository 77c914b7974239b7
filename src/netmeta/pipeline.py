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
import datetime as dt
import logging
import multiprocessing
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa

from netmeta import metrics
from netmeta.config import Config, Input
from netmeta.decode.jsonlines import decode_lines, line_bounds
from netmeta.enrich.community_id import add_community_id
from netmeta.enrich.geoip import GeoIP
from netmeta.enrich.locality import Locality
from netmeta.event import (
    FIELDS,
    META_EXTRA,
    Failure,
    add_ip_keys,
    failures_table,
    flatten,
    to_documents,
)
from netmeta.normalize import goflow2
from netmeta.route.streams import Router, Stream
from netmeta.sources.files import Chunk, Tailer
from netmeta.store.duckdb import IndexSet, Position, Store
from netmeta.store.partitions import EventFile, write_routed

log = logging.getLogger("netmeta")


# ---------------------------------------------------------------- work items

@dataclass(frozen=True, slots=True)
class Job:
    """One chunk of one input, to be turned into events in a worker."""

    input: str
    format: str
    origin: goflow2.Origin
    data: bytes
    oversized: tuple[tuple[int, bytes], ...] = ()
    end: int | None = None  # file position after this chunk (None: not tracked)
    forget: tuple[tuple[int, int], ...] = ()  # positions to delete once this is stored


@dataclass(slots=True)
class Result:
    input: str
    events: pa.Table | None  # when the pipeline prints instead of storing
    failures: list[Failure]
    position: Position | None
    forget: tuple[tuple[int, int], ...]
    nbytes: int
    n_events: int = 0
    files: list[EventFile] = field(default_factory=list)  # written, not yet committed
    counts: dict[str, int] = field(default_factory=dict)  # events per stream in ``files``


@dataclass(frozen=True, slots=True)
class EnrichSpec:
    """Everything a worker needs to build its enrichers (picklable)."""

    city_db: str | None
    asn_db: str | None
    cache_size: int
    seed: int
    internal_networks: tuple[str, ...]
    inputs: dict[str, tuple[bool, bool, bool, tuple[str, ...], tuple[tuple[str, Any], ...]]]
    max_line: int
    store_root: str | None = None  # workers write event files there (None: return events)
    streams: tuple[Stream, ...] = ()

    @classmethod
    def from_config(cls, cfg: Config, store_root: str | None = None) -> EnrichSpec:
        g = cfg.enrich.geoip
        return cls(g.city_db or None, g.asn_db or None, g.cache_size,
                   cfg.enrich.community_id.seed, tuple(cfg.enrich.internal_networks),
                   {name: _input_spec(i) for name, i in cfg.inputs.items()},
                   cfg.pipeline.max_line, store_root, tuple(streams_of(cfg)))


def _input_spec(i: Input) -> tuple[bool, bool, bool, tuple[str, ...], tuple[tuple[str, Any], ...]]:
    return (i.enrich.geoip, i.enrich.community_id, i.enrich.locality, tuple(i.tags),
            tuple(flatten(i.fields).items()))


class Processor:
    """decode → normalize → enrich for one chunk; one per worker process."""

    def __init__(self, spec: EnrichSpec) -> None:
        self.spec = spec
        self.geoip = GeoIP(spec.city_db, spec.asn_db, spec.cache_size)
        self.locality = Locality(list(spec.internal_networks))
        self.router = Router(list(spec.streams))
        self.routes = self.router.routes()
        self._con: duckdb.DuckDBPyConnection | None = None  # routing SQL runs here

    def __call__(self, job: Job) -> Result:
        fails: list[Failure] = [
            Failure(job.input, f"line longer than {self.spec.max_line} bytes (pipeline.max_line);"
                    " its first bytes are kept", first, job.origin.path, off)
            for off, first in job.oversized]
        table = None
        if job.data:
            try:
                decoded = decode_lines(job.data, goflow2.SCHEMA)
                out = goflow2.normalize(decoded, job.data, job.origin)
                fails += out.failures
                if out.events:
                    table = (out.events[0] if len(out.events) == 1
                             else pa.concat_tables(out.events, promote_options="default"))
                    table = self.enrich(job.input, table)
            except Exception as e:  # a bug must not lose the chunk nor stop the input
                log.exception("input %s: chunk at offset %d failed", job.input,
                              job.origin.offset)
                table = None
                fails = _chunk_failed(job, f"{type(e).__name__}: {e}")
        position = None
        if job.end is not None:
            o = job.origin
            position = Position(job.input, o.device, o.inode, o.path, job.end)
        n = table.num_rows if table is not None else 0
        result = Result(job.input, table, fails, position, job.forget, len(job.data), n)
        if table is not None and self.spec.store_root is not None:
            # route and write here, in parallel; the writer only commits the files
            if self._con is None:
                self._con = duckdb.connect()
                self._con.execute("SET threads = 1")
            day = dt.datetime.now(dt.UTC).date()
            result.counts, result.files = write_routed(
                table, self.router, self.routes, Path(self.spec.store_root), day, self._con)
            result.events = None
        return result

    def enrich(self, input_name: str, table: pa.Table) -> pa.Table:
        geo, cid, loc, tags, fields = self.spec.inputs.get(
            input_name, (True, True, True, (), ()))
        table = _static(table, tags, fields)
        if geo:
            table = self.geoip.apply(table)
        if loc:
            table = self.locality.apply(table)
        if cid:
            table = add_community_id(table, self.spec.seed)
        return add_ip_keys(table)


def _chunk_failed(job: Job, why: str) -> list[Failure]:
    """Every line of a chunk as a failure event, when processing it raised."""
    starts, ends = line_bounds(job.data)
    o = job.origin
    return [Failure(job.input, f"{job.format}: internal error: {why}",
                    job.data[int(s):int(e)], o.path, o.offset + int(s))
            for s, e in zip(starts, ends, strict=True) if job.data[int(s):int(e)].strip()]


def _static(table: pa.Table, tags: tuple[str, ...], fields: tuple[tuple[str, Any], ...]
            ) -> pa.Table:
    """The input's configured tags and fields (Filebeat's ``tags`` / ``fields``), on every event."""
    n = table.num_rows
    if tags:
        k = len(tags)
        arr = pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)),
                                       pa.array(list(tags) * n, pa.string()))
        table = table.append_column("tags", arr) if "tags" not in table.column_names \
            else table.set_column(table.column_names.index("tags"), "tags", arr)
    loose: dict[str, Any] = {}
    for name, value in fields:
        f = FIELDS.get(name)
        if f is None or name in table.column_names:
            loose[name] = value
            continue
        table = table.append_column(name, pa.array([value] * n, f.arrow_type))
    if loose:
        extra = table.column(META_EXTRA).to_pylist()
        merged = []
        for text in extra:
            doc = orjson.loads(text) if text else {}
            for name, value in loose.items():
                cur = doc
                *parents, last = name.split(".")
                for p in parents:
                    cur = cur.setdefault(p, {})
                cur[last] = value
            merged.append(orjson.dumps(doc).decode())
        table = table.set_column(table.column_names.index(META_EXTRA), META_EXTRA,
                                 pa.array(merged, pa.string()))
    return table


# worker-process state (set by the pool initializer)
_PROCESSOR: Processor | None = None


def _init_worker(spec: EnrichSpec, parent: int) -> None:
    global _PROCESSOR
    _PROCESSOR = Processor(spec)
    threading.Thread(target=_exit_with_parent, args=(parent,), name="orphan-check",
                     daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent was killed (kill -9) would wait for work forever: every worker
    holds a write end of the pool's call queue, so none ever sees end-of-file."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _run_job(job: Job) -> Result:
    assert _PROCESSOR is not None
    return _PROCESSOR(job)


class _Inline(cf.Executor):
    """workers: 0 — run jobs in the calling thread (tests, tiny inputs)."""

    def __init__(self, spec: EnrichSpec) -> None:
        self.processor = Processor(spec)

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        # fn is _run_job, which reads the worker-process global; here the processor is ours
        fut: cf.Future[Any] = cf.Future()
        try:
            fut.set_result(self.processor(*args))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            fut.set_exception(e)
        return fut


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
        if cfg.pipeline.workers > 0:
            # spawn, not fork: a forked worker would inherit the open store and the
            # threads' locks of this process
            self.executor: cf.Executor = cf.ProcessPoolExecutor(
                cfg.pipeline.workers, mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker, initargs=(spec, os.getpid()))
        else:
            self.executor = _Inline(spec)
        self.futures: queue.Queue[Any] = queue.Queue(maxsize=cfg.pipeline.queue_size)
        self.stats = Stats()
        self.error: BaseException | None = None
        self._writer = threading.Thread(target=self._write_loop, name="writer", daemon=True)
        self._writer.start()

    @staticmethod
    def _log_geoip(spec: EnrichSpec) -> None:
        reason = GeoIP.disabled_reason(spec.city_db, spec.asn_db)
        if reason:
            log.warning(reason)

    def submit(self, job: Job) -> None:
        """Hand a chunk over; blocks while the queue is full (backpressure)."""
        if self.error is not None:
            raise RuntimeError("pipeline writer failed") from self.error
        fut = self.executor.submit(_run_job, job)
        while True:
            try:
                self.futures.put(fut, timeout=0.5)
                break
            except queue.Full:
                if self.error is not None:
                    raise RuntimeError("pipeline writer failed") from self.error
        metrics.queue_depth.labels("chunks").set(self.futures.qsize())

    def close(self) -> None:
        """Flush everything in flight, then stop (graceful shutdown)."""
        self.futures.put(_STOP)
        self._writer.join()
        self.executor.shutdown(wait=True)
        if self.error is not None:
            raise RuntimeError(f"pipeline writer failed: {self.error}") from self.error

    # -------------------------------------------------------- writer

    def _write_loop(self) -> None:
        pend_events: list[pa.Table] = []
        pend_files: list[EventFile] = []
        pend_counts: dict[str, int] = {}
        pend_fail: list[Failure] = []
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
                due = time.monotonic() >= deadline
                if rows >= self.cfg.pipeline.batch_size or (due and (
                        pend_events or pend_files or pend_fail or positions or forget)):
                    self._flush(pend_events, pend_files, pend_counts, pend_fail,
                                list(positions.values()), forget, rows)
                    pend_events, pend_files, pend_counts = [], [], {}
                    pend_fail, positions, forget, rows = [], {}, [], 0
                if due or item is None:
                    deadline = time.monotonic() + self.cfg.pipeline.batch_timeout
            self._flush(pend_events, pend_files, pend_counts, pend_fail,
                        list(positions.values()), forget, rows)
        except BaseException as e:  # noqa: BLE001 - reported by submit()/close()
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
        with self.stats.lock:
            self.stats.records += n_ev + n_fail
            self.stats.events += n_ev
            self.stats.failures += n_fail
            self.stats.bytes += res.nbytes

    def _flush(self, events: list[pa.Table], files: list[EventFile], counts: dict[str, int],
               fails: list[Failure], positions: list[Position],
               forget: list[tuple[str, int, int]], n_events: int) -> None:
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
        if table is None and not files and not fails and not positions and not forget:
            return
        failures = failures_table(fails) if fails else None
        with metrics.append_seconds.time():
            if table is not None:  # events that were not written by a worker
                for stream, n in self.store.append(table).items():
                    counts[stream] = counts.get(stream, 0) + n
            self.store.commit(files, failures, positions, forget)
        for stream, n in counts.items():
            metrics.stored.labels(stream).inc(n)
        with self.stats.lock:
            self.stats.stored += n_events


# ---------------------------------------------------------------- sources

def job_from_chunk(input_name: str, fmt: str, chunk: Chunk, tracked: bool,
                   forget: Iterable[tuple[int, int]] = ()) -> Job:
    stdin = chunk.path == "-"
    origin = goflow2.Origin(input_name, None if stdin else chunk.path, chunk.device,
                            chunk.inode, chunk.offset)
    return Job(input_name, fmt, origin, chunk.data, chunk.oversized,
               chunk.end if tracked else None, tuple(forget))


class TailSource(threading.Thread):
    """Tails an input's globs and feeds the pipeline until stopped."""

    def __init__(self, name: str, inp: Input, pipeline: Pipeline, store: Store,
                 stop: threading.Event) -> None:
        super().__init__(name=f"input-{name}", daemon=True)
        self.input_name, self.inp, self.pipeline, self.stop = name, inp, pipeline, stop
        pl = pipeline.cfg.pipeline
        self.tailer = Tailer(inp.paths, store.positions(name), read_size=pl.read_size,
                             max_line=pl.max_line)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
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
                                             goflow2.Origin(self.input_name), b"",
                                             forget=tuple(forgotten)))
                if self.tailer.truncations > truncs:
                    metrics.truncations.labels(self.input_name).inc(
                        self.tailer.truncations - truncs)
                    truncs = self.tailer.truncations
                if not self.tailer.behind:
                    self.stop.wait(self.inp.poll_interval)
        except BaseException as e:  # noqa: BLE001 - logged, the service keeps running
            if not self.stop.is_set():
                log.exception("input %s stopped", self.input_name)
                self.error = e
        finally:
            self.tailer.close()


def build_store(cfg: Config, *, read_only: bool = False) -> Store:
    sets = [IndexSet(n, s.title, s.retention_days) for n, s in cfg.index_sets.items()]
    return Store(cfg.data_dir, sets, streams_of(cfg), read_only=read_only)


def streams_of(cfg: Config) -> list[Stream]:
    """Configured streams plus the default stream of every input (named after it)."""
    out = [Stream(name, inp.index_set, (name,)) for name, inp in cfg.inputs.items()]
    out += [Stream(s.name, s.index_set, tuple(s.inputs), s.rule) for s in cfg.streams]
    return out


def ndjson_sink(write: Callable[[bytes], Any]) -> Callable[[pa.Table], None]:
    def sink(table: pa.Table) -> None:
        write(b"".join(orjson.dumps(d) + b"\n" for d in to_documents(table)))
    return sink


def cpu_count() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
