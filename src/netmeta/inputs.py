"""Inputs: the threads and servers that feed the pipeline, one per configured input.

File tails (goflow2), UDP receivers (flow export, syslog), TCP syslog and HTTP push; and
the jobs ``netmeta ingest`` makes of files. Each turns what its source reads into
:class:`~netmeta.worker.Job` s and hands them to the :class:`~netmeta.pipeline.Pipeline`.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from netmeta import metrics
from netmeta.config import Input
from netmeta.event import Origin
from netmeta.pipeline import Pipeline
from netmeta.sources.files import Chunk, Tailer
from netmeta.sources.pcap import udp_datagrams
from netmeta.sources.udp import Datagrams, UdpListener, rcvbuf_errors
from netmeta.store.duckdb import Store
from netmeta.worker import Job

log = logging.getLogger("netmeta")


def job_from_chunk(input_name: str, fmt: str, chunk: Chunk, tracked: bool,
                   forget: Iterable[tuple[int, int]] = ()) -> Job:
    stdin = chunk.path == "-"
    origin = Origin(input_name, None if stdin else chunk.path, chunk.device,
                            chunk.inode, chunk.offset)
    return Job(input_name, fmt, origin, chunk.data, chunk.oversized,
               chunk.end if tracked else None, tuple(forget))


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


def shipped_jobs(input_name: str, fmt: str, path: str, read_size: int, max_line: int
                 ) -> Iterable[Job]:
    """Jobs of a file (``"-"``: stdin) of Packetbeat events — NDJSON, as Packetbeat's file
    output writes them (``fmt`` packetbeat) — or of GELF messages, one JSON object per line
    (``fmt`` gelf), for the worker formats the Beats and GELF inputs use. A line that is not
    a JSON object becomes a failure naming the file and byte offset, the line kept. Ids come
    from the chunk's content and place in the file."""
    import hashlib

    from netmeta.decode.beats_meta import split_tagged
    from netmeta.sources.files import read_file

    for chunk in read_file(path, read_size=read_size, max_line=max_line):
        origin = Origin(input_name, None if path == "-" else chunk.path, chunk.device,
                        chunk.inode, chunk.offset)
        lines: list[bytes] = []
        offsets: list[int] = []
        at = 0
        for line in chunk.data.split(b"\n"):
            if line.strip():
                lines.append(line.rstrip(b"\r"))
                offsets.append(chunk.offset + at)
            at += len(line) + 1
        digest = hashlib.sha256(f"{path}\0{chunk.offset}\0".encode() + chunk.data).hexdigest()
        if fmt == "gelf":
            now = time.time()
            yield Job(input_name, "gelf", origin, b"", chunk.oversized, digest=digest,
                      datagrams=tuple((line, f"{path} at byte {off}")
                                      for line, off in zip(lines, offsets, strict=True)),
                      times=(now,) * len(lines))
            continue
        good, bad = split_tagged(lines)
        job = events_job(input_name, good, [
            (f"packetbeat: {path} at byte {offsets[i]}: {why}", lines[i]) for i, why in bad],
            digest)
        yield dataclasses.replace(job, origin=origin, oversized=chunk.oversized)


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
            shard = self.pipeline.shard_of(h)
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


# ---------------------------------------------------------------- Beats transports

BEATS_FORMAT = "packetbeat"  # the worker's format for JSON arrays of Beats events
_FAILED_HEAD = 65536  # bytes of a refused document kept as event.original


def events_job(input_name: str, docs: list[bytes], rejects: list[tuple[str, bytes]],
               digest: str = "", ids: list[str] | None = None) -> Job:
    """A batch of Beats events — JSON objects as they were sent, already checked — as one
    job holding their JSON array; ``rejects`` (why, document) become failures. The digest
    (unless the caller has one, e.g. a _bulk request's) covers the content only (not
    sequence numbers nor the sender), so a retried batch has the same digest, hence the
    same event ids, and is not stored twice. ``ids``: one per document, when chosen by the
    sender."""
    import hashlib

    data = b"[" + b",".join(docs) + b"]"
    if not digest:
        h = hashlib.sha256(data)
        for _, doc in rejects:
            h.update(len(doc).to_bytes(8, "big") + doc)
        digest = h.hexdigest()
    return Job(input_name, BEATS_FORMAT, Origin(input_name), data, digest=digest,
               rejects=tuple((why, doc[:_FAILED_HEAD]) for why, doc in rejects),
               ids=tuple(ids or ()))


class BeatsSource:
    """A Beats (Lumberjack v2) input: its own port (TLS and client certificates optional);
    a window is acknowledged once its events are stored. A batch sent again with the same
    content is recognized by its digest here; events a Beat resends after a broken
    connection, in other windows, are taken out by the server before the handover
    (:mod:`netmeta.sources.beats`)."""

    def __init__(self, name: str, inp: Input, pipeline: Pipeline, store: Store) -> None:
        from netmeta.decode.beats_meta import split_tagged
        from netmeta.decode.lumberjack import LumberjackError
        from netmeta.sources.acked import OnceStored
        from netmeta.sources.beats import Batch, BeatsServer, Settings, server_context

        self.input_name, self.inp = name, inp
        b = inp.beats
        once = OnceStored(lambda d: store.seen_batch(name, d),
                          metrics.push_duplicates.labels(name).inc)

        def handover(batch: Batch) -> cf.Future[None]:
            good, bad = split_tagged(batch.payloads)  # each with the _index it was sent to
            job = events_job(name, good, [
                (f"beats: {batch.peer}: event {i + 1} of the batch: {why}", batch.payloads[i])
                for i, why in bad])
            return once.submit(job.digest, lambda: pipeline.submit_acked(job))

        def on_error(peer: str, e: LumberjackError) -> None:
            pipeline.submit(Job(name, BEATS_FORMAT, Origin(name), b"[]", rejects=(
                (f"beats: {peer}: {e} (connection closed)", e.head),)))

        tls = server_context(b.tls.cert, b.tls.key, b.tls.ca, b.tls.client_auth) \
            if b.tls.cert else None
        self.server = BeatsServer(
            inp.listen, inp.listen_port, handover, tls=tls, on_error=on_error, name=name,
            settings=Settings(max_payload=b.max_payload, max_decompressed=b.max_decompressed,
                              max_batch=b.max_batch, keepalive=b.keepalive,
                              idle_timeout=b.idle_timeout, max_connections=b.max_connections,
                              resend_window=b.resend_window))

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    def describe(self) -> str:
        t = self.inp.beats.tls
        auth = f", client certificates {t.client_auth}" if t.client_auth != "none" else ""
        return f"Lumberjack{' TLS' if t.cert else ''} %s:%d{auth}" % self.address

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()


class EsBulkSource:
    """An Elasticsearch-compatible input (``_bulk`` and the calls Beats make at start): its
    own port (TLS and client certificates optional), answering once batches are stored."""

    def __init__(self, name: str, inp: Input, pipeline: Pipeline, store: Store) -> None:
        from netmeta.sources.acked import OnceStored
        from netmeta.sources.es_bulk import create_app
        from netmeta.store.explicit_ids import ExplicitIds
        from netmeta.web.app import HttpServer

        self.input_name, self.inp = name, inp
        once = OnceStored(lambda d: store.seen_batch(name, d),
                          metrics.push_duplicates.labels(name).inc)

        def submit(docs: list[bytes], rejects: list[tuple[str, bytes]], digest: str,
                   ids: list[str] | None) -> cf.Future[None]:
            job = events_job(name, docs, rejects, digest, ids)
            return once.submit(digest, lambda: pipeline.submit_acked(job))

        t = inp.elasticsearch.tls
        app = create_app(name, inp.elasticsearch, submit, ExplicitIds(store, name))
        self.server = HttpServer(app, inp.listen,
                                 inp.listen_port, certfile=t.cert, keyfile=t.key, ca=t.ca,
                                 client_auth=t.client_auth)

    @property
    def address(self) -> tuple[str, int]:
        return self.inp.listen, self.inp.listen_port

    def describe(self) -> str:
        t = self.inp.elasticsearch.tls
        auth = f", client certificates {t.client_auth}" if t.client_auth != "none" else ""
        return f"Elasticsearch _bulk HTTP{'S' if t.cert else ''} %s:%d{auth}" % self.address

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()


# ---------------------------------------------------------------- GELF

def gelf_job(input_name: str, messages: list[tuple[bytes, str]], times: list[float],
             rejects: list[tuple[str, bytes]]) -> Job:
    """Complete GELF payloads (sender beside each) as one job of the worker's "gelf" format."""
    return Job(input_name, "gelf", Origin(input_name), b"", datagrams=tuple(messages),
               times=tuple(times), rejects=tuple(rejects))


class GelfSource(_InputThread):
    """GELF over UDP (chunks reassembled first) or TCP (null-delimited, TLS optional).

    UDP never waits for the pipeline, as the flow inputs: batches it does not take at once
    are held, then dropped and counted (``netmeta_dropped_total``, reason ``queue_full``,
    and a failure event saying how many); the socket's kernel drops are on /metrics too.
    TCP blocks the connection that delivers (TCP backpressure), nothing is dropped."""

    KERNEL_EVERY = 1.0  # seconds between reads of /proc for the socket's drops

    def __init__(self, name: str, inp: Input, pipeline: Pipeline,
                 stop: threading.Event) -> None:
        from netmeta.sources.gelf import Batcher, GelfTcp, GelfUdp, HeldBatcher

        super().__init__(name, pipeline, stop)
        self._kernel_checked = 0.0
        self.listener: GelfUdp | GelfTcp
        self.held: HeldBatcher | None = None
        if inp.protocol == "udp":
            self.held = HeldBatcher(self.offer, on_drop=self._dropped)
            self.listener = GelfUdp(inp.listen, inp.listen_port, inp.gelf, self.held,
                                    inp.rcvbuf)
        else:
            self.listener = GelfTcp(inp.listen, inp.listen_port, inp.gelf,
                                    Batcher(self.submit), inp.tls.cert, inp.tls.key)

    def offer(self, messages: list[tuple[bytes, str]], times: list[float],
              rejects: list[tuple[str, bytes]]) -> bool:
        self._kernel_counters()
        if not self.pipeline.try_submit(gelf_job(self.input_name, messages, times, rejects)):
            return False
        metrics.received_datagrams.labels(self.input_name).inc(len(messages))
        return True

    def _dropped(self, n: int) -> None:
        metrics.dropped.labels(self.input_name, "queue_full").inc(n)
        log.warning("input %s: pipeline behind, %d GELF messages dropped", self.input_name, n)

    def _kernel_counters(self) -> None:
        now = time.monotonic()
        udp = getattr(self.listener, "listener", None)
        if udp is not None and now - self._kernel_checked > self.KERNEL_EVERY:
            self._kernel_checked = now
            metrics.kernel_drops.labels(self.input_name).set(udp.kernel_drops())

    def submit(self, messages: list[tuple[bytes, str]], times: list[float],
               rejects: list[tuple[str, bytes]]) -> None:
        metrics.received_datagrams.labels(self.input_name).inc(len(messages))
        self.pipeline.submit(gelf_job(self.input_name, messages, times, rejects))

    def loop(self) -> None:
        self.listener.run(self.stop)
        if self.held is not None:
            self.held.drain(self.submit)

    def close(self) -> None:
        self.listener.close()


class GelfHttpSource:
    """GELF over HTTP (POST /gelf): answered 202 once the message is stored."""

    def __init__(self, name: str, inp: Input, pipeline: Pipeline, store: Store) -> None:
        from netmeta.sources.gelf import create_app
        from netmeta.web.app import HttpServer

        self.input_name, self.inp = name, inp

        def stored(messages: list[tuple[bytes, str]], rejects: list[tuple[str, bytes]]
                   ) -> cf.Future[None]:
            now = time.time()
            return pipeline.submit_acked(gelf_job(name, messages, [now] * len(messages),
                                                  rejects))

        self.server = HttpServer(create_app(name, inp.gelf, stored), inp.listen,
                                 inp.listen_port, certfile=inp.tls.cert, keyfile=inp.tls.key)

    @property
    def address(self) -> tuple[str, int]:
        return self.inp.listen, self.inp.listen_port

    def describe(self) -> str:
        return (f"GELF HTTP{'S' if self.inp.tls.cert else ''} %s:%d{self.inp.gelf.path}"
                % self.address)

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()
