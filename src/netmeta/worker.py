"""One chunk of one input in, events (or event files) out: decode → normalize → enrich,
and, when storing, routing and writing the event files. Runs in the pipeline's worker
processes (or inline with ``workers: 0``)."""

from __future__ import annotations

import concurrent.futures as cf
import datetime as dt
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa

from netmeta.config import Config, Input
from netmeta.decode import custom_fields
from netmeta.decode import netflow as netflow_decode
from netmeta.decode import sflow as sflow_decode
from netmeta.decode.jsonlines import decode_lines, line_bounds
from netmeta.decode.sequence import ExporterCount, SequenceTracker, netflow_counts, sflow_counts
from netmeta.decode.templates import TemplateState
from netmeta.enrich.community_id import add_community_id
from netmeta.enrich.geoip import GeoIP
from netmeta.enrich.locality import Locality
from netmeta.event import (
    FIELDS,
    META_EXTRA,
    Failure,
    Origin,
    add_ip_keys,
    flatten,
    from_documents,
    from_rows,
)
from netmeta.normalize import gelf as gelf_normalize
from netmeta.normalize import gigamon_batch, goflow2, packetbeat_batch
from netmeta.normalize import netflow as netflow_normalize
from netmeta.normalize import packetbeat as packetbeat_normalize
from netmeta.normalize import sflow as sflow_normalize
from netmeta.normalize import syslog as syslog_normalize
from netmeta.normalize.exporters import Exporters
from netmeta.route import packetbeat as packetbeat_routes
from netmeta.route.streams import Router, Stream
from netmeta.store.duckdb import Position
from netmeta.store.partitions import EventFile, write_routed

log = logging.getLogger("netmeta")


def streams_of(cfg: Config) -> list[Stream]:
    """Configured streams plus the default stream of every input (named after it)."""
    rules = {name: packetbeat_routes.default_stream_rule(cfg, name) for name in cfg.inputs}
    out = [Stream(name, inp.index_set, (name,), rules[name] or "")
           for name, inp in cfg.inputs.items() if rules[name] is not None]
    out += [Stream(s.name, s.index_set, tuple(s.inputs), s.rule) for s in cfg.streams]
    return out


# ---------------------------------------------------------------- work items

@dataclass(frozen=True, slots=True)
class Job:
    """One chunk of one input, to be turned into events in a worker."""

    input: str
    format: str
    origin: Origin
    data: bytes
    oversized: tuple[tuple[int, bytes], ...] = ()
    end: int | None = None  # file position after this chunk (None: not tracked)
    forget: tuple[tuple[int, int], ...] = ()  # positions to delete once this is stored
    datagrams: tuple[tuple[bytes, str], ...] = ()  # (payload, "exporter:port"): UDP inputs
    shard: int = 0  # UDP inputs: the ordered worker whose decoder state this exporter uses
    received: float = 0.0  # UDP inputs: time.time() the first datagram arrived (0: now)
    times: tuple[float, ...] = ()  # UDP inputs: time.time() each datagram arrived
    ack: int = 0  # push inputs: resolved by the pipeline once this job is stored (0: none)
    digest: str = ""  # push inputs: content digest, remembered with the stored batch
    rejects: tuple[tuple[str, bytes], ...] = ()  # stream inputs: (why, first bytes) of frames
    transport: str = ""  # syslog: udp or tcp (input.type)
    ids: tuple[str, ...] = ()  # shipped events: each event's id, when the sender chose some
    # the store's streams when they changed since the workers started (streams created
    # through the API): (version, streams); None: route with EnrichSpec.streams
    routing: tuple[int, tuple[Stream, ...]] | None = None

    @property
    def nbytes(self) -> int:
        return len(self.data) + sum(len(d) for d, _ in self.datagrams)


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
    exporters: list[ExporterCount] = field(default_factory=list)  # UDP inputs
    ack: int = 0
    digest: str = ""


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
    # UDP inputs: renormalize by the sampling rate, rates per exporter, custom definitions
    udp: dict[str, tuple[bool, tuple[tuple[str, int], ...]]] = field(default_factory=dict)
    custom_definitions: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: Config, store_root: str | None = None) -> EnrichSpec:
        g = cfg.enrich.geoip
        return cls(g.city_db or None, g.asn_db or None, g.cache_size,
                   cfg.enrich.community_id.seed, tuple(cfg.enrich.internal_networks),
                   {name: _input_spec(i) for name, i in cfg.inputs.items()},
                   cfg.pipeline.max_line, store_root, tuple(streams_of(cfg)),
                   {name: (_renormalize(i), tuple(i.sampling.rates.items()))
                    for name, i in cfg.inputs.items() if i.udp},
                   tuple(dict.fromkeys(p for i in cfg.inputs.values()
                                       for p in i.custom_definitions)))


def _renormalize(i: Input) -> bool:
    """As Elastic does unless configured: sFlow samples stand for ``rate`` packets, NetFlow
    and IPFIX counters are kept as the exporter sent them."""
    return i.sampling.renormalize if i.sampling.renormalize is not None else i.type == "sflow"


def _input_spec(i: Input) -> tuple[bool, bool, bool, tuple[str, ...], tuple[tuple[str, Any], ...]]:
    return (i.enrich.geoip, i.enrich.community_id, i.enrich.locality, tuple(i.tag_list),
            tuple(flatten(i.fields).items()))


class Processor:
    """decode → normalize → enrich for one chunk; one per worker process."""

    def __init__(self, spec: EnrichSpec, shard: int = 0) -> None:
        self.spec = spec
        self.shard = shard
        self.geoip = GeoIP(spec.city_db, spec.asn_db, spec.cache_size)
        self.locality = Locality(list(spec.internal_networks))
        self.router = Router(list(spec.streams))
        self.routes = self.router.routes()
        self._routing_version = 0
        self._con: duckdb.DuckDBPyConnection | None = None  # routing SQL runs here
        # NetFlow v9 / IPFIX templates seen by this process, saved in the data dir so that
        # a restart decodes data at once instead of waiting for templates to be resent
        self.templates = _load_templates(spec.store_root)
        self._templates_saved = (self.templates.changes, 0.0)
        if spec.custom_definitions:  # before any template is compiled in this process
            custom_fields.register(custom_fields.load_all(spec.custom_definitions))
        self.exporters = {name: Exporters(dict(rates)) for name, (_, rates) in spec.udp.items()}
        self.sequences = SequenceTracker()

    def __call__(self, job: Job) -> Result:
        fails: list[Failure] = [
            Failure(job.input, f"line longer than {self.spec.max_line} bytes (pipeline.max_line);"
                    " its first bytes are kept", first, job.origin.path, off)
            for off, first in job.oversized]
        table = None
        result_exporters: list[ExporterCount] = []
        try:
            if job.format == "netflow":
                table = self._netflow(job, fails, result_exporters)
            elif job.format == "sflow":
                table = self._sflow(job, fails, result_exporters)
            elif job.format == "gigamon_ami":
                table = self._pushed(job, fails)
            elif job.format in SHIPPED_FORMATS:
                table = self._shipped(job, fails)
            elif job.format == "syslog":
                table = self._syslog(job, fails)
            elif job.data:
                table = self._lines(job, fails)
            if table is not None:
                table = self.enrich(job.input, table)
        except Exception as e:  # a bug must not lose the chunk nor stop the input
            log.exception("input %s: chunk at offset %d failed", job.input, job.origin.offset)
            table = None
            fails = _chunk_failed(job, f"{type(e).__name__}: {e}")
        position = None
        if job.end is not None:
            o = job.origin
            position = Position(job.input, o.device, o.inode, o.path, job.end)
        n = table.num_rows if table is not None else 0
        result = Result(job.input, table, fails, position, job.forget, job.nbytes, n,
                        exporters=result_exporters, ack=job.ack, digest=job.digest)
        if table is not None and self.spec.store_root is not None:
            # route and write here, in parallel; the writer only commits the files
            if self._con is None:
                self._con = duckdb.connect()
                self._con.execute("SET threads = 1")
            day = dt.datetime.now(dt.UTC).date()
            self._follow_routing(job)
            result.counts, result.files = write_routed(
                table, self.router, self.routes, Path(self.spec.store_root), day, self._con)
            result.events = None
        return result

    def _follow_routing(self, job: Job) -> None:
        """Route with the streams the job carries when they are newer than ours (compiled
        once per version, not per job)."""
        if job.routing is None or job.routing[0] == self._routing_version:
            return
        self._routing_version, streams = job.routing
        self.router = Router(list(streams))
        self.routes = self.router.routes()

    def _lines(self, job: Job, fails: list[Failure]) -> pa.Table | None:
        decoded = decode_lines(job.data, goflow2.SCHEMA)
        out = goflow2.normalize(decoded, job.data, job.origin)
        fails += out.failures
        if not out.events:
            return None
        return (out.events[0] if len(out.events) == 1
                else pa.concat_tables(out.events, promote_options="default"))

    def _netflow(self, job: Job, fails: list[Failure], counts: list[ExporterCount]
                 ) -> pa.Table | None:
        """Datagrams of this shard's exporters, in order: templates live in this process."""
        decoded = netflow_decode.decode_many(job.datagrams, self.templates,
                                             job.received or time.time())
        fails += netflow_normalize.failures(decoded, job.input, job.datagrams)
        counts += netflow_counts(decoded, self.sequences)
        self._save_templates()
        loc = self.locality if self.spec.inputs.get(job.input, (1, 1, 1))[2] else None
        renormalize, _ = self.spec.udp.get(job.input, (False, ()))
        exporters = self.exporters.setdefault(job.input, Exporters())
        table = netflow_normalize.normalize(decoded, job.input, loc, exporters, renormalize)
        return table if table.num_rows else None

    def _sflow(self, job: Job, fails: list[Failure], counts: list[ExporterCount]
               ) -> pa.Table | None:
        decoded = sflow_decode.decode_many(job.datagrams)
        counts += sflow_counts(decoded, self.sequences)
        renormalize, rates = self.spec.udp.get(job.input, (True, ()))
        received = job.times or job.received or time.time()
        table, failed = sflow_normalize.normalize(decoded, job.input, received, renormalize,
                                                  dict(rates))
        fails += failed
        return table

    def _shipped(self, job: Job, fails: list[Failure]) -> pa.Table | None:
        """Beats events (a JSON array) or GELF messages (``datagrams``): normalized in
        normalize/packetbeat.py; ids from the batch digest, as for pushed AMI batches."""
        fails += [Failure(job.input, why, head) for why, head in job.rejects]
        out = SHIPPED_FORMATS[job.format](job)
        fails += [Failure(job.input, f"{job.format}: {why}", original)
                  for why, original in out.failures]
        if not out.index:
            return None
        prefix = f"{job.input}:{(job.digest or _content_digest(job))[:32]}:"
        ids = [job.ids[i] for i in out.index] if job.ids else [prefix + str(i) for i in out.index]
        if isinstance(out, packetbeat_batch.Rows):
            return from_rows(out.typed, out.extras, job.input, ids)
        return from_documents(out.docs, job.input, ids)

    def _syslog(self, job: Job, fails: list[Failure]) -> pa.Table | None:
        fails += [Failure(job.input, f"syslog: {why}", head) for why, head in job.rejects]
        docs, ids, failed = syslog_normalize.normalize(
            job.datagrams, job.times, job.input, job.transport or "udp")
        fails += failed
        return from_documents(docs, job.input, ids) if docs else None

    def _pushed(self, job: Job, fails: list[Failure]) -> pa.Table | None:
        """A pushed batch of AMI records (JSON array): one event per record; ids from the
        batch digest, so that the same batch always has the same ids."""
        records = orjson.loads(job.data)
        rows = gigamon_batch.normalize_batch(records)
        fails += [Failure(job.input, f"gigamon_ami: record {i + 1}: {why}",
                          orjson.dumps(records[i])) for i, why in rows.errors]
        if not rows.typed:
            return None
        prefix = f"{job.input}:{job.digest[:32]}:"
        return from_rows(rows.typed, rows.extras, job.input, [prefix + str(i) for i in rows.index])

    def _save_templates(self) -> None:
        changes, at = self._templates_saved
        now = time.monotonic()
        # at most once a second: exporters resend templates every few seconds anyway
        if self.spec.store_root is None or changes == self.templates.changes or now - at < 1:
            return
        path = _templates_path(self.spec.store_root, self.shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(self.templates.to_dict()))
        os.replace(tmp, path)
        self._templates_saved = (self.templates.changes, now)

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


# worker formats of shipped events: Job → documents or rows, with failures
SHIPPED_FORMATS: dict[str, Callable[[Job], packetbeat_normalize.Normalized
                                    | packetbeat_batch.Rows]] = {
    "packetbeat": lambda job: packetbeat_batch.normalize_json(job.data),
    "gelf": lambda job: gelf_normalize.normalize_messages(job.datagrams, job.times),
}


def _content_digest(job: Job) -> str:
    """Ids for inputs without a batch digest (GELF over UDP/TCP): content and arrival."""
    h = hashlib.sha256(job.data)
    for payload, peer in job.datagrams:
        h.update(len(payload).to_bytes(8, "big") + payload + peer.encode())
    h.update(repr(job.times).encode())
    return h.hexdigest()


def _templates_path(root: str, shard: int = 0) -> Path:
    """Each ordered worker saves the templates of its exporters in a file of its own."""
    suffix = f"-{shard}" if shard else ""
    return Path(root) / "state" / f"netflow-templates{suffix}.json"


def _load_templates(root: str | None) -> TemplateState:
    """The templates every worker saved: an exporter's next datagrams may go to another
    worker when the number of workers changed."""
    state = TemplateState()
    if root is None:
        return state
    for path in sorted((Path(root) / "state").glob("netflow-templates*.json")):
        try:
            saved = TemplateState.from_dict(orjson.loads(path.read_bytes()))
        except (ValueError, KeyError, TypeError, orjson.JSONDecodeError) as e:
            log.warning("NetFlow templates in %s not loaded (%s); waiting for exporters to "
                        "resend them", path, e)
            continue
        for key, template in saved.items():
            if state.get(key) is None:
                state.learn(key, template)
    return state


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


def init_worker(spec: EnrichSpec, parent: int, shard: int = 0) -> None:
    global _PROCESSOR
    _PROCESSOR = Processor(spec, shard)
    threading.Thread(target=_exit_with_parent, args=(parent,), name="orphan-check",
                     daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent was killed (kill -9) would wait for work forever: every worker
    holds a write end of the pool's call queue, so none ever sees end-of-file."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def run_job(job: Job) -> Result:
    assert _PROCESSOR is not None
    return _PROCESSOR(job)


class InlineExecutor(cf.Executor):
    """workers: 0 — run jobs in the calling thread (tests, tiny inputs)."""

    def __init__(self, spec: EnrichSpec) -> None:
        self.processor = Processor(spec)
        self._lock = threading.Lock()  # inputs run in threads of their own; one at a time

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> cf.Future[Any]:
        # fn is run_job, which reads the worker-process global; here the processor is ours
        fut: cf.Future[Any] = cf.Future()
        try:
            with self._lock:
                fut.set_result(self.processor(*args))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            fut.set_exception(e)
        return fut


