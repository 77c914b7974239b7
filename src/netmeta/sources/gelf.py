"""GELF listeners: UDP (chunks reassembled here, before anything is handed over), TCP
(null-delimited frames) and HTTP (``POST /gelf``, one message per request, answered once
stored). They hand complete, still compressed payloads with their sender to a
:class:`Batcher`; decompressing and parsing happen in the pipeline's workers.

Every refused datagram, chunk set or frame is handed over as a reject (why, first bytes)
and becomes a stored, counted failure.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import contextlib
import threading
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from netmeta.config import GelfInput
from netmeta.decode import gelf as gelf_decode
from netmeta.decode.syslog import FrameError
from netmeta.sources.tcp import TcpListener
from netmeta.sources.udp import Datagrams, UdpListener

Message = tuple[bytes, str]  # payload, sender "ip:port"
Reject = tuple[str, bytes]  # why, first bytes
# submit(messages, times, rejects): hand a batch to the pipeline (may block)
Submit = Callable[[list[Message], list[float], list[Reject]], None]


def peer_name(peer: tuple[str, int]) -> str:
    return f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"


class Batcher:
    """Messages from listener threads, handed over in batches of up to ``size`` messages
    or when the oldest waited ``age`` seconds (``flush(due_only=True)`` from idle loops)."""

    def __init__(self, submit: Submit, size: int = 4096, age: float = 0.25) -> None:
        self.submit, self.size, self.age = submit, size, age
        self._lock = threading.Lock()
        self._messages: list[Message] = []
        self._times: list[float] = []
        self._rejects: list[Reject] = []
        self._since = 0.0

    def add(self, messages: list[Message], rejects: list[Reject], at: float) -> None:
        if not messages and not rejects:
            return
        with self._lock:
            if not self._messages and not self._rejects:
                self._since = time.monotonic()
            self._messages += messages
            self._times += [at] * len(messages)
            self._rejects += rejects
            full = len(self._messages) >= self.size
        if full:
            self.flush()

    def flush(self, due_only: bool = False) -> None:
        with self._lock:
            if not self._messages and not self._rejects:
                return
            if due_only and time.monotonic() - self._since < self.age:
                return
            batch = self._messages, self._times, self._rejects
            self._messages, self._times, self._rejects = [], [], []
        self.submit(*batch)


# offer(messages, times, rejects) -> whether the pipeline took the batch (never blocks)
Offer = Callable[[list[Message], list[float], list[Reject]], bool]


class HeldBatcher:
    """UDP's batcher: the reader never waits for the pipeline. A batch is offered and, when
    the pipeline is full, held here (up to ``max_bytes``; what waits longer is offered again
    at the next flush). Beyond that the oldest messages are dropped — a stalled socket
    would lose more, unseen, in the kernel — counted (``on_drop``, e.g. on /metrics) and
    reported as one failure event with the next batch the pipeline takes, the first dropped
    message kept as its original. Used from the reader thread only."""

    def __init__(self, offer: Offer, size: int = 4096, age: float = 0.25,
                 max_bytes: int = 256 << 20,
                 on_drop: Callable[[int], None] = lambda n: None) -> None:
        self.offer, self.size, self.age, self.max_bytes = offer, size, age, max_bytes
        self.on_drop = on_drop
        self._messages: list[Message] = []
        self._times: list[float] = []
        self._rejects: list[Reject] = []
        self._bytes = 0
        self._since = 0.0
        self.dropped = 0  # in total
        self._unreported = 0  # dropped, not yet told by a stored failure
        self._first_dropped = b""

    @property
    def held(self) -> int:
        return len(self._messages)

    def add(self, messages: list[Message], rejects: list[Reject], at: float) -> None:
        if not messages and not rejects:
            return
        if not self._messages and not self._rejects:
            self._since = time.monotonic()
        self._messages += messages
        self._times += [at] * len(messages)
        self._rejects += rejects
        self._bytes += sum(len(m) for m, _ in messages) + sum(len(h) for _, h in rejects)
        if len(self._messages) >= self.size:
            self.flush()
        self._shed()

    def flush(self, due_only: bool = False) -> None:
        """Offer what waits, in batches of ``size``; stop at the first refusal."""
        if due_only and len(self._messages) < self.size and \
                time.monotonic() - self._since < self.age:
            return
        while self._messages or self._rejects or self._unreported:
            k = self.size
            rejects = self._rejects + self._drop_report()
            if not self.offer(self._messages[:k], self._times[:k], rejects):
                return
            self._bytes -= sum(len(m) for m, _ in self._messages[:k]) + \
                sum(len(h) for _, h in self._rejects)
            del self._messages[:k], self._times[:k]
            self._rejects, self._unreported = [], 0
            self._since = time.monotonic()

    def drain(self, submit: Submit) -> None:
        """At stop: what is held is handed over with ``submit`` (which may block), not lost."""
        while self._messages or self._rejects or self._unreported:
            k = self.size
            submit(self._messages[:k], self._times[:k], self._rejects + self._drop_report())
            del self._messages[:k], self._times[:k]
            self._rejects, self._unreported, self._bytes = [], 0, \
                sum(len(m) for m, _ in self._messages)

    def _drop_report(self) -> list[Reject]:
        if not self._unreported:
            return []
        return [(f"gelf: pipeline full: {self._unreported} messages dropped (netmeta_dropped_"
                 "total, reason queue_full); the first of them is kept", self._first_dropped)]

    def _shed(self) -> None:
        """Beyond ``max_bytes``, the oldest messages (then rejects) go, counted."""
        n = 0
        while self._bytes > self.max_bytes and self._messages:
            payload, _ = self._messages.pop(0)
            self._times.pop(0)
            self._bytes -= len(payload)
            if not self._unreported and not n:
                self._first_dropped = payload[:65536]
            n += 1
        while self._bytes > self.max_bytes and self._rejects:
            _, head = self._rejects.pop(0)
            self._bytes -= len(head)
            n += 1
        if n:
            self.dropped += n
            self._unreported += n
            self.on_drop(n)


class GelfUdp:
    """UDP: whole messages and chunks; a chunked message is handed over once complete."""

    def __init__(self, host: str, port: int, cfg: GelfInput, batcher: Batcher | HeldBatcher,
                 rcvbuf: int = 8 << 20) -> None:
        self.listener = UdpListener(host, port, rcvbuf=rcvbuf)
        self.address = self.listener.address
        self.batcher = batcher
        self.chunks = gelf_decode.Reassembler(cfg.chunk_timeout, cfg.max_message,
                                              cfg.max_pending_per_sender, cfg.max_pending)
        self._lock = threading.Lock()

    def run(self, stop: threading.Event) -> None:
        self.listener.run(self._datagrams, stop, idle=self.idle)
        self.idle()
        self.batcher.flush()

    def _datagrams(self, d: Datagrams) -> bool:
        now = time.monotonic()
        messages: list[Message] = []
        rejects: list[Reject] = []
        with self._lock:
            for payload, peer in zip(d.payloads, d.peers, strict=True):
                who = peer_name(peer)
                done, errors = self.chunks.add(payload, who, now)
                messages += [(m, who) for m in done]
                rejects += [(f"gelf: {who}: {e.reason}", e.head) for e in errors]
            rejects += self._expired(now)
        self.batcher.add(messages, rejects, d.received)
        self.batcher.flush(due_only=True)
        # a HeldBatcher never blocks (it holds, then drops and counts); a Batcher blocks
        return True

    def _expired(self, now: float) -> list[Reject]:
        return [(f"gelf: {e.reason}", e.head) for e in self.chunks.expire(now)]

    def idle(self) -> None:
        with self._lock:
            rejects = self._expired(time.monotonic())
        self.batcher.add([], rejects, time.time())
        self.batcher.flush(due_only=True)

    def close(self) -> None:
        self.listener.close()


class GelfTcp:
    """TCP: null-delimited frames, a thread per connection (the TCP listener's)."""

    def __init__(self, host: str, port: int, cfg: GelfInput, batcher: Batcher,
                 certfile: str = "", keyfile: str = "") -> None:
        self.listener = TcpListener(host, port, max_size=cfg.max_message, certfile=certfile,
                                    keyfile=keyfile,
                                    framer=lambda: gelf_decode.NullFramer(cfg.max_message))
        self.address = self.listener.address
        self.batcher = batcher

    def _deliver(self, items: list[bytes | FrameError], peer: str, at: float) -> None:
        messages = [(i, peer) for i in items if isinstance(i, bytes)]
        rejects = [(f"gelf: {peer}: {i.reason} ({i.size} bytes)", i.head)
                   for i in items if isinstance(i, FrameError)]
        self.batcher.add(messages, rejects, at)

    def run(self, stop: threading.Event) -> None:
        self.listener.run(self._deliver, stop, idle=lambda: self.batcher.flush(due_only=True))
        self.batcher.flush()

    def close(self) -> None:
        self.listener.close()


# store(messages, rejects) -> future resolved once stored
Store = Callable[[list[Message], list[Reject]], "cf.Future[None]"]


def create_app(name: str, cfg: GelfInput, store: Store) -> FastAPI:
    """HTTP: ``POST <path>`` with one GELF message (Content-Encoding gzip / deflate, or a
    zlib / gzip body): 202 once stored, 400 (and a stored failure) when it is no GELF
    message, 413 over ``max_message``."""
    app = FastAPI(title=f"netmeta input {name}", docs_url=None, redoc_url=None,
                  openapi_url=None)

    @app.post(cfg.path)
    async def receive(request: Request) -> JSONResponse:
        host = request.client.host if request.client else "?"
        port = request.client.port if request.client else 0
        who = peer_name((host, port))
        body = bytearray()
        async for piece in request.stream():
            body += piece
            if len(body) > cfg.max_message:
                return JSONResponse({"error": "too_large", "message":
                                     f"body over {cfg.max_message} bytes"}, status_code=413)
        raw = bytes(body)
        encoding = request.headers.get("content-encoding", "").strip().lower()
        loop = asyncio.get_running_loop()
        try:
            payload = await loop.run_in_executor(None, _unwrap, raw, encoding, cfg.max_message)
            await loop.run_in_executor(None, gelf_decode.parse, payload, cfg.max_message)
        except gelf_decode.GelfError as e:
            reject = [(f"gelf: {who}: {e.reason}", e.head)]
            with contextlib.suppress(Exception):  # the answer says it anyway
                await asyncio.wrap_future(await loop.run_in_executor(None, store, [], reject))
            return JSONResponse({"error": "bad_message", "message": e.reason},
                                status_code=400)
        try:  # handing over blocks while the pipeline is full: off the event loop
            stored = await loop.run_in_executor(None, store, [(payload, who)], [])
            await asyncio.wrap_future(stored)
        except Exception as e:  # noqa: BLE001 - e.g. the pipeline stopped: retry later
            return JSONResponse({"error": "not_stored", "message": str(e)}, status_code=503)
        return JSONResponse({}, status_code=202)

    return app


def _unwrap(raw: bytes, encoding: str, limit: int) -> bytes:
    """The body as the worker's GELF decoder takes it: Content-Encoding undone (a body
    compressed without saying so is recognized by its magic bytes there)."""
    if encoding in ("gzip", "x-gzip", "deflate"):
        return gelf_decode.inflate(raw, limit) if raw[:2] in (
            gelf_decode.GZIP_MAGIC, *gelf_decode.ZLIB_MAGICS) else _raw_deflate(raw, limit)
    if encoding not in ("", "identity"):
        raise gelf_decode.GelfError(f"unknown Content-Encoding {encoding!r}")
    return raw


def _raw_deflate(raw: bytes, limit: int) -> bytes:
    import zlib

    d = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        out = d.decompress(raw, limit + 1)
    except zlib.error as e:
        raise gelf_decode.GelfError(f"deflate body does not decompress: {e}", raw) from None
    if len(out) > limit or d.unconsumed_tail:
        raise gelf_decode.GelfError(f"body inflates to more than {limit} bytes", raw)
    return out
