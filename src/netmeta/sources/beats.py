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

Resends after a broken connection are stored once. A Beat sends again every event whose
ACK it did not get, on a new connection (a new source port) and often split into other
windows (libbeat shrinks its window after an error), so the handover's whole-batch digest
does not recognize them. Therefore, when a connection ends, the events it may be asked for
again become *suspects* of the peer's host (its IP): a 16-byte BLAKE2b digest of each
event's bytes as sent, counted (two equal events are two suspects), tied to the future of
the original batch's storage. They are

- the events of batches handed over whose ACK had not been written when reading stopped;
- unless the connection ended cleanly, also those of the last ``resend_batches`` batches
  acknowledged less than ``resend_window`` seconds before the end — an ACK written is not
  an ACK read — or, when some bytes written never reached the peer's TCP (or that cannot
  be known), before the connection was last active (data read or an ACK written): a
  broken network is noticed late (a reset once it is back, the idle timeout). Clean means
  the peer closed (or was idle past ``idle_timeout``) and its TCP had acknowledged every
  byte written (Linux: SIOCOUTQ): a peer that closes with data unread resets the
  connection instead, so after a clean end every ACK written was read. Anything else — a
  reset, a protocol error, a batch not stored, the socket's state unknown — is not clean.

Only futures that are stored or still being stored make suspects; one that fails takes its
suspects with it (that batch was not stored: its resend must be). While a host has
suspects, each batch from it (on any connection) is checked event by event before the
handover: an event matching a suspect is not handed over again (one count of the suspect
is used up; ``netmeta_beats_resent_events_total``), the rest of the batch is, and the ACK
waits for both the batch's storage and the originals' (they may still be in flight; if one
fails, the batch is not acknowledged and the connection is closed, as for any batch not
stored). A batch made only of resent events is acknowledged once the originals are stored.
Hosts without suspects pay nothing (no hashing). Suspects expire ``resend_ttl`` seconds
after their connection ended (Beats back off at most 60 s between attempts) and are at most
``resend_max`` per server (past that the oldest are forgotten, with a warning). They live
in memory: after a restart a resend is recognized only by the whole-batch digest.

A protocol error (bad version or frame type, a frame or inflated size over the limits)
closes the connection, becomes a failure (with the frame's first bytes) and is counted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import hashlib
import logging
import socket
import ssl
import struct
import sys
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeAlias

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
    # resends after a broken connection (module docstring): batches acknowledged this long
    # before the end may not have reached the Beat (0: only batches not acknowledged) ...
    resend_window: float = 10.0
    resend_batches: int = 8  # ... at most this many of them per connection (a Beat's
    # pipelining, default 2, bounds the windows whose ACK it may miss)
    resend_ttl: float = 900.0  # seconds suspects are kept after their connection ended
    resend_max: int = 1_000_000  # suspects per server (about 110 bytes each)


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
    resent: int = 0  # events recognized as resent after a broken connection, not handed over


# handover(batch) -> future resolved once stored (or failed: the connection is closed)
Handover = Callable[[Batch], "cf.Future[None]"]
# on_error(peer, error): a protocol error, recorded as a failure
OnError = Callable[[str, LumberjackError], None]
# the storage of an original batch, as the suspect table keeps it
Stored: TypeAlias = "asyncio.Future[None] | cf.Future[None]"


def payload_digest(payload: bytes) -> bytes:
    """What identifies an event among the suspects: its bytes as sent, hashed."""
    return hashlib.blake2b(payload, digest_size=16).digest()


@dataclass(slots=True, eq=False)
class _Group:
    """The suspects of one original batch's storage."""

    host: str
    stored: Stored
    expires: float
    digests: list[bytes]
    left: int  # not used up yet


class Suspects:
    """Events that a host's Beat may send again, by digest (a multiset), each with the future
    of its original storage; see the module docstring. Pure (``clock`` gives the time) and
    for one thread: the server's loop (a future's failure is called back there)."""

    def __init__(self, ttl: float, max_entries: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.max_entries, self.clock = ttl, max_entries, clock
        self._groups: OrderedDict[int, _Group] = OrderedDict()  # oldest first
        # host -> digest -> the group holding it, or the groups, oldest first (a group once
        # per count); mostly one: an int costs less than a list
        self._hosts: dict[str, dict[bytes, int | list[int]]] = {}
        self._next = 0
        self._entries = 0

    def __len__(self) -> int:
        self._expire(self.clock())
        return self._entries

    def active(self, host: str) -> bool:
        """Whether batches from ``host`` need checking."""
        if self._groups:
            self._expire(self.clock())
        return host in self._hosts

    def add(self, host: str, digests: Iterable[bytes], stored: Stored) -> int:
        """Suspects of ``host`` stored by ``stored``; none if it failed already. Returns the
        number of older suspects forgotten to stay within ``max_entries``."""
        if stored.done() and (stored.cancelled() or stored.exception() is not None):
            return 0
        digests = list(digests)[:self.max_entries]
        if not digests:
            return 0
        now = self.clock()
        self._expire(now)
        gid = self._next
        self._next += 1
        self._groups[gid] = _Group(host, stored, now + self.ttl, digests, len(digests))
        table = self._hosts.setdefault(host, {})
        for d in digests:
            held = table.get(d)
            if held is None:
                table[d] = gid
            elif isinstance(held, int):
                table[d] = [held, gid]
            else:
                held.append(gid)
        self._entries += len(digests)
        forgotten = 0
        while self._entries > self.max_entries:  # never the new group: it fits alone
            oldest = next(iter(self._groups))
            forgotten += self._groups[oldest].left
            self._discard(oldest)
        if not stored.done():
            stored.add_done_callback(lambda f: self._settled(gid, f))
        return forgotten

    def take(self, host: str, digest: bytes) -> Stored | None:
        """Use up one suspect of ``host`` with ``digest`` (the oldest): the future of its
        original storage, or None when the event is no suspect."""
        table = self._hosts.get(host)
        if table is None:
            return None
        held = table.get(digest)
        if held is None:
            return None
        if isinstance(held, int):
            gid = held
            del table[digest]
            if not table:
                del self._hosts[host]
        else:
            gid = held.pop(0)
            if len(held) == 1:
                table[digest] = held[0]
        g = self._groups[gid]
        g.left -= 1
        self._entries -= 1
        if g.left == 0:  # all its digests used up: none left in the host's table
            del self._groups[gid]
        return g.stored

    def _settled(self, gid: int, f: Stored) -> None:
        if f.cancelled() or f.exception() is not None:
            self._discard(gid)  # not stored: a resend of those events must be

    def _expire(self, now: float) -> None:
        while self._groups:
            gid, g = next(iter(self._groups.items()))
            if g.expires > now:
                return
            self._discard(gid)

    def _discard(self, gid: int) -> None:
        g = self._groups.pop(gid, None)
        if g is None:
            return
        table = self._hosts.get(g.host)
        if table is not None:
            for d in g.digests:  # those used up are no longer there
                held = table.get(d)
                if held == gid:
                    del table[d]
                elif isinstance(held, list) and gid in held:
                    held.remove(gid)
                    if len(held) == 1:
                        table[d] = held[0]
            if not table:
                del self._hosts[g.host]
        self._entries -= g.left


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
        # events of broken connections their Beat may send again; used on the loop only
        self.suspects = Suspects(self.settings.resend_ttl, self.settings.resend_max)

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

    def suspect_count(self) -> int:
        """Resend suspects held now (counted on the loop, which owns them)."""
        if not self._thread.is_alive():
            return len(self.suspects)

        async def count() -> int:
            return len(self.suspects)

        return asyncio.run_coroutine_threadsafe(count(), self._loop).result(5)

    def keep_suspects(self, host: str, peer: str, r: _Sent) -> None:
        """The events of batch ``r`` of a connection that ended become suspects."""
        groups: dict[Stored, list[bytes]] = {}
        if r.own is not None and r.payloads:
            groups[r.own] = r.digests if r.digests is not None else \
                [payload_digest(p) for p in r.payloads]
        for d, original in r.resent:
            groups.setdefault(original, []).append(d)
        for stored, digests in groups.items():
            forgotten = self.suspects.add(host, digests, stored)
            if forgotten:
                log.warning("beats %s: over %d resend suspects: the oldest %d forgotten (if "
                            "their Beat sends them again, they are stored again); after %s",
                            self.name, self.settings.resend_max, forgotten, peer)

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
        host = str(peername[0])  # a resend comes from another port of the same host
        peer = f"[{host}]:{peername[1]}" if ":" in host else f"{host}:{peername[1]}"
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
        conn = _Connection(self, reader, writer, peer, host)
        stopping = False
        try:
            await conn.run()
        except asyncio.CancelledError:
            stopping = True  # whatever was handed over is acked by conn.finish (bounded)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError) as e:
            log.info("beats %s: %s: connection ended: %s", self.name, peer, e)
        finally:
            if not stopping:  # (stopping, the server takes no resends any more)
                try:
                    conn.leave()
                except Exception:  # noqa: BLE001 - the connection is still closed
                    log.exception("beats %s: %s: keeping resend suspects failed",
                                  self.name, peer)
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


async def _all_stored(own: asyncio.Future[None] | None, originals: list[Stored]) -> None:
    """Resolved once a batch and the originals of its resent events are stored."""
    if own is not None:
        await own
    for f in originals:
        await asyncio.wrap_future(f)  # an asyncio future is awaited as it is


@dataclass(slots=True, eq=False)
class _Sent:
    """A batch of a connection, kept until its ACK is old enough that the Beat has it (or
    the connection ends: then its events become suspects, see the module docstring)."""

    payloads: list[bytes]  # handed over
    digests: list[bytes] | None  # theirs, when the batch was checked for resends
    own: asyncio.Future[None] | None  # their storage (None: nothing handed over)
    resent: list[tuple[bytes, Stored]]  # events not handed over: digest, original storage
    stored: asyncio.Future[None]  # own and the originals: what the ACK waits for
    acked_at: float | None = None  # time.monotonic() the ACK was written


def _unconfirmed(transport: asyncio.BaseTransport) -> int | None:
    """Bytes written to the connection that the peer's TCP has not acknowledged (waiting in
    the transport, or in the socket: SIOCOUTQ); None where that cannot be known."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import fcntl
        import termios

        sock = transport.get_extra_info("socket")
        if sock is None:
            return None
        out = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")  # = SIOCOUTQ
        pending = transport.get_write_buffer_size()  # type: ignore[attr-defined]
        return int(pending) + int(struct.unpack("i", out)[0])
    except (ImportError, OSError, ValueError, AttributeError):
        return None


class _Connection:
    def __init__(self, server: BeatsServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, peer: str, host: str) -> None:
        self.server, self.reader, self.writer, self.peer = server, reader, writer, peer
        self.host = host
        s = server.settings
        self.settings = s
        self.parser = Parser(s.max_payload, s.max_decompressed)
        self.version = VERSION_2
        self.remaining = 0  # data frames still expected in the current window
        self.in_window = False
        self.events: list[Data] = []
        self.last_acked = 0
        # (the batch, or None for an empty window; sequence to ACK); consumed in order
        self.acks: asyncio.Queue[tuple[_Sent | None, int] | None] = \
            asyncio.Queue(maxsize=s.inflight)
        self.acker = asyncio.create_task(self._ack_loop())
        self.failed = False
        # batches handed over, in order: those not acknowledged, then (at most
        # resend_batches) acknowledged within resend_window
        self.sent: deque[_Sent] = deque()
        self.acked_kept = 0
        self.last_active = time.monotonic()  # data read or an ACK written
        self.ended = ""  # how reading stopped: "eof", "idle", "protocol"; "": otherwise

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
                self.ended = "idle"
                return
            if not data:
                self.ended = "eof"
                return
            self.last_active = time.monotonic()
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
        ``inflight`` batches wait per connection: then reading pauses (TCP back-pressure).
        While the host has suspects, resent events are taken out first (module docstring)."""
        events, self.events = self.events, []
        last_seq = events[-1].seq
        payloads = [e.payload for e in events]
        digests: list[bytes] | None = None
        resent: list[tuple[bytes, Stored]] = []
        server = self.server
        if server.suspects.active(self.host):
            digests, kept = [], []
            for p in payloads:
                d = payload_digest(p)
                original = server.suspects.take(self.host, d)
                if original is None:
                    kept.append(p)
                    digests.append(d)
                else:
                    resent.append((d, original))
            if resent:
                payloads = kept
                server.stats.resent += len(resent)
                metrics.beats_resent.labels(server.name).inc(len(resent))
                log.info("beats %s: %s: %d of %d events resent after a broken connection, "
                         "stored before: not stored again", server.name, self.peer,
                         len(resent), len(events))
        own: asyncio.Future[None] | None = None
        if payloads:
            batch = Batch(payloads, self.peer, last_seq)
            loop = asyncio.get_running_loop()
            handed = loop.run_in_executor(server._pool, server.handover, batch)
            own = asyncio.ensure_future(_stored(handed))
        stored = own if own is not None and not resent else \
            asyncio.ensure_future(_all_stored(own, [f for _, f in resent]))
        record = _Sent(payloads, digests, own, resent, stored)
        self.sent.append(record)
        await self.acks.put((record, last_seq))

    def _protocol_error(self, e: LumberjackError) -> None:
        st = self.server.stats
        st.errors[e.reason] = st.errors.get(e.reason, 0) + 1
        metrics.beats_errors.labels(self.server.name, e.reason).inc()
        log.warning("beats %s: %s: %s; closing the connection", self.server.name, self.peer, e)
        self.events = []  # not acked: the writer sends them again
        self.ended = "protocol"
        if self.server.on_error is not None:  # it may block (a full pipeline): not here
            self.server._pool.submit(self.server.record_error, self.peer, e)

    async def _ack_loop(self) -> None:
        keepalive = self.settings.keepalive
        while True:
            item = await self.acks.get()
            if item is None:
                return
            record, seq = item
            if record is not None:
                stored = record.stored
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
            self.last_active = now = time.monotonic()
            if record is not None:
                record.acked_at = now
                self.acked_kept += 1
                self._forget_acked(now)
            await self.writer.drain()
            self.last_acked = seq

    def _forget_acked(self, now: float) -> None:
        """Acknowledged batches the Beat surely has: no suspects if the connection breaks."""
        s = self.settings
        while self.sent and self.sent[0].acked_at is not None and (
                self.acked_kept > s.resend_batches or s.resend_window <= 0
                or self.sent[0].acked_at < now - s.resend_window):
            self.sent.popleft()
            self.acked_kept -= 1

    def leave(self) -> None:
        """Reading stopped (not for a shutdown): the events the Beat may send again become
        suspects of its host (module docstring)."""
        s = self.settings
        unconfirmed = _unconfirmed(self.writer.transport)
        # a clean end: the peer closed, or was idle, and its TCP has every byte written
        clean = self.ended in ("eof", "idle") and not self.failed and unconfirmed == 0
        acked_ones = not clean and s.resend_window > 0
        # ACKs written shortly before the end; if some bytes never reached the peer (or
        # that is unknown), shortly before the connection was last active: a broken
        # network is seen late (a reset when it is back, the idle timeout)
        since = (time.monotonic() if unconfirmed == 0 else self.last_active) - s.resend_window
        for r in self.sent:
            if r.acked_at is not None and (not acked_ones or r.acked_at < since):
                continue
            self.server.keep_suspects(self.host, self.peer, r)
        self.sent.clear()
        self.acked_kept = 0

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
                item[0].stored.add_done_callback(_consume)


def _consume(f: asyncio.Future[None]) -> None:
    if not f.cancelled():
        f.exception()  # retrieved: its failure was logged with the connection's
