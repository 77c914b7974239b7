"""Beats server (Lumberjack v2, what ``output.logstash`` speaks; TLS and client certificates
optional): one asyncio loop in a thread of its own serves every connection.

Per connection, the events of a window are handed over as one batch (windows larger than
``max_batch`` events in parts) to ``handover``, which returns a future resolved once the
batch is durably stored; only then is the ACK sent, carrying the sequence number of the
batch's last event — whether the writer restarts at 1 every window (go-lumber, i.e. every
Beat) or keeps counting across windows (pylogbeat), the last event of the batch is its
highest. ACKs go out in the order the batches came in; while the oldest waits, an ACK of
sequence 0 is sent every ``keepalive`` seconds, as go-lumber's server and Logstash's beats
input do: a Beat reads it as "still working", which resets its read timeout without
acknowledging anything. Events of a window not yet handed over when the writer goes away
are not acknowledged, so the writer sends them again; nothing acknowledged is lost.

A protocol error (bad version or frame type, a frame or inflated size over the limits)
closes the connection, becomes a failure (with the frame's first bytes) and is counted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from netmeta import metrics
from netmeta.decode.lumberjack import (
    VERSION_2,
    Data,
    LumberjackError,
    Parser,
    Window,
    encode_ack,
)

log = logging.getLogger("netmeta")

READ_SIZE = 1 << 20


@dataclass(frozen=True, slots=True)
class Settings:
    max_payload: int = 64 << 20  # bytes of one frame as sent
    max_decompressed: int = 256 << 20  # bytes a compressed frame inflates to
    max_batch: int = 8192  # events handed over at once; a bigger window is acked in parts
    keepalive: float = 3.0  # seconds between keep-alive ACKs while a batch is being stored
    idle_timeout: float = 60.0  # close a connection silent that long (Logstash: 60 s); 0: never
    max_connections: int = 1024
    inflight: int = 4  # batches of one connection waiting for storage before reading pauses


@dataclass(slots=True)
class Batch:
    """The events of (part of) one window, as the writer sent them."""

    payloads: list[bytes]
    peer: str
    last_seq: int


@dataclass(slots=True)
class Stats:
    connections: int = 0  # open now
    accepted: int = 0
    refused: int = 0  # over max_connections
    errors: dict[str, int] = field(default_factory=dict)  # protocol errors by reason


# handover(batch) -> future resolved once stored (or failed: the connection is closed)
Handover = Callable[[Batch], "cf.Future[None]"]
# on_error(peer, error): a protocol error, recorded as a failure
OnError = Callable[[str, LumberjackError], None]


def server_context(cert: str, key: str, ca: str = "", client_auth: str = "none"
                   ) -> ssl.SSLContext:
    """TLS as Logstash's beats input: ``client_auth`` none, optional (a certificate, when
    given, must verify against ``ca``) or required."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    if client_auth != "none":
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_REQUIRED if client_auth == "required" else ssl.CERT_OPTIONAL
    return ctx


class BeatsServer:
    """Listens at construction (so a busy port is reported at once); ``start`` serves in a
    thread, ``stop`` closes the listener and every connection."""

    def __init__(self, host: str, port: int, handover: Handover, *,
                 settings: Settings | None = None, tls: ssl.SSLContext | None = None,
                 on_error: OnError | None = None, name: str = "beats") -> None:
        self.settings = settings or Settings()
        self.handover, self.tls, self.on_error, self.name = handover, tls, on_error, name
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(512)
        self.sock.setblocking(False)
        self.address: tuple[str, int] = self.sock.getsockname()[:2]
        self.stats = Stats()
        # submitting may block (a full pipeline): in threads, never on the loop
        self._pool = cf.ThreadPoolExecutor(max(4, min(32, self.settings.max_connections)),
                                           thread_name_prefix=f"{name}-submit")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=f"input-{name}", daemon=True)
        self._started = threading.Event()
        self._start_error: Exception | None = None
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def record_error(self, peer: str, e: LumberjackError) -> None:
        try:
            if self.on_error is not None:
                self.on_error(peer, e)
        except Exception:  # noqa: BLE001 - recording must not take the listener down
            log.exception("beats %s: recording a protocol error failed", self.name)

    def start(self) -> None:
        self._thread.start()
        self._started.wait(10)
        if self._start_error is not None:
            raise OSError(f"beats {self.name}: cannot serve: {self._start_error}")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except Exception as e:  # noqa: BLE001 - reported by start()
            self._start_error = e
            self._started.set()
            self._loop.close()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.close()

    async def _serve(self) -> None:
        tls = {"ssl": self.tls, "ssl_handshake_timeout": 10} if self.tls else {}
        self._server = await asyncio.start_server(
            self._connection, sock=self.sock, limit=READ_SIZE, **tls)  # type: ignore[arg-type]

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting and reading; batches already handed over are still acknowledged
        (up to ``timeout``), then every connection is closed."""
        if not self._thread.is_alive():
            self.sock.close()
            self._pool.shutdown(wait=False)
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(timeout), self._loop)
        with contextlib.suppress(Exception):
            fut.result(timeout + 5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _shutdown(self, timeout: float) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    # ------------------------------------------------------------ one connection

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peername = writer.get_extra_info("peername") or ("?", 0)
        peer = (f"[{peername[0]}]:{peername[1]}" if ":" in str(peername[0])
                else f"{peername[0]}:{peername[1]}")
        st = self.stats
        if st.connections >= self.settings.max_connections:
            st.refused += 1
            log.warning("beats %s: %d connections open, refusing %s", self.name,
                        st.connections, peer)
            writer.close()
            return
        st.connections += 1
        st.accepted += 1
        metrics.beats_connections.labels(self.name).set(st.connections)
        self._tasks.add(task)
        conn = _Connection(self, reader, writer, peer)
        try:
            await conn.run()
        except asyncio.CancelledError:
            pass  # stopping: whatever was handed over is acked by conn.finish (bounded)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as e:
            log.info("beats %s: %s: connection ended: %s", self.name, peer, e)
        finally:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await conn.finish()
            st.connections -= 1
            metrics.beats_connections.labels(self.name).set(st.connections)
            self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def _stored(handed: asyncio.Future[cf.Future[None]]) -> None:
    """Resolved once the batch handed over is stored (or failed either way)."""
    await asyncio.wrap_future(await handed)


class _Connection:
    def __init__(self, server: BeatsServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, peer: str) -> None:
        self.server, self.reader, self.writer, self.peer = server, reader, writer, peer
        s = server.settings
        self.settings = s
        self.parser = Parser(s.max_payload, s.max_decompressed)
        self.version = VERSION_2
        self.remaining = 0  # data frames still expected in the current window
        self.in_window = False
        self.events: list[Data] = []
        self.last_acked = 0
        # (future of the stored batch or None, sequence to ACK); consumed in order
        self.acks: asyncio.Queue[tuple[asyncio.Future[None] | None, int] | None] = \
            asyncio.Queue(maxsize=s.inflight)
        self.acker = asyncio.create_task(self._ack_loop())
        self.failed = False

    async def run(self) -> None:
        idle = self.settings.idle_timeout or None
        while not self.acker.done():
            try:
                # idle only counts while nothing waits for an ACK
                waiting = self.in_window or not self.acks.empty()
                data = await asyncio.wait_for(self.reader.read(READ_SIZE),
                                              None if waiting else idle)
            except TimeoutError:
                log.info("beats %s: %s idle for %.0f s, closing", self.server.name,
                         self.peer, idle or 0)
                return
            if not data:
                return
            try:
                frames = self.parser.feed(data)
            except LumberjackError as e:
                self._protocol_error(e)
                return
            for f in frames:
                if isinstance(f, Data):
                    if not self.in_window:
                        self._protocol_error(LumberjackError(
                            "bad_frame", "data frame before any window size frame",
                            f.payload[:64]))
                        return
                    self.events.append(f)
                    self.remaining -= 1
                    if self.remaining <= 0:
                        self.in_window = False
                        await self._handover()
                    elif len(self.events) >= self.settings.max_batch:
                        await self._handover()
                else:
                    await self._window(f)

    async def _window(self, w: Window) -> None:
        if self.events:  # a new window before the last was complete: Logstash hands it on
            await self._handover()
        self.version = w.version
        self.remaining = w.size
        self.in_window = w.size > 0
        if w.size == 0:  # nothing to store; answer with what is already acknowledged
            await self.acks.put((None, self.last_acked))

    async def _handover(self) -> None:
        """Hand the events collected over (in a thread: it may block while the pipeline is
        full) and queue their ACK; keep-alives cover the hand-over too. At most
        ``inflight`` batches wait per connection: then reading pauses (TCP back-pressure)."""
        events, self.events = self.events, []
        batch = Batch([e.payload for e in events], self.peer, events[-1].seq)
        loop = asyncio.get_running_loop()
        handed = loop.run_in_executor(self.server._pool, self.server.handover, batch)
        await self.acks.put((asyncio.ensure_future(_stored(handed)), batch.last_seq))

    def _protocol_error(self, e: LumberjackError) -> None:
        st = self.server.stats
        st.errors[e.reason] = st.errors.get(e.reason, 0) + 1
        metrics.beats_errors.labels(self.server.name, e.reason).inc()
        log.warning("beats %s: %s: %s; closing the connection", self.server.name, self.peer, e)
        self.events = []  # not acked: the writer sends them again
        if self.server.on_error is not None:  # it may block (a full pipeline): not here
            self.server._pool.submit(self.server.record_error, self.peer, e)

    async def _ack_loop(self) -> None:
        keepalive = self.settings.keepalive
        while True:
            item = await self.acks.get()
            if item is None:
                return
            stored, seq = item
            if stored is not None:
                while True:
                    try:
                        await asyncio.wait_for(asyncio.shield(stored), keepalive)
                        break
                    except TimeoutError:
                        self.writer.write(encode_ack(0, self.version))
                        await self.writer.drain()
                    except Exception as e:  # noqa: BLE001 - not stored: not acked, closed
                        log.warning("beats %s: %s: batch not stored (%s); closing so that "
                                    "it is sent again", self.server.name, self.peer, e)
                        self.failed = True
                        self.writer.transport.abort()  # the reader stops at once
                        return
            self.writer.write(encode_ack(seq, self.version))
            await self.writer.drain()
            self.last_acked = seq

    async def finish(self, timeout: float = 10.0) -> None:
        """After the last read: ACK what was handed over (bounded), then stop the acker."""
        if not self.acker.done():
            try:
                await asyncio.wait_for(self.acks.put(None), timeout)
                await asyncio.wait_for(asyncio.shield(self.acker), timeout)
            except (TimeoutError, asyncio.CancelledError):
                pass
        if not self.acker.done():
            self.acker.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.acker
        while not self.acks.empty():  # not acked (the writer is gone): stored all the same
            item = self.acks.get_nowait()
            if item is not None and item[0] is not None:
                item[0].add_done_callback(_consume)


def _consume(f: asyncio.Future[None]) -> None:
    if not f.cancelled():
        f.exception()  # retrieved: its failure was logged with the connection's
