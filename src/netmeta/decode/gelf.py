"""GELF (Graylog Extended Log Format) framing and payloads; no sockets here.

- UDP: a datagram is a whole message, or a chunk: magic 0x1e 0x0f, an 8-byte message id,
  the sequence number (0-based) and the count of chunks (at most 128), then the piece. The
  pieces, joined in sequence order, are the message. A message whose chunks have not all
  come within ``timeout`` seconds (Graylog: 5 s) is a failure; so is one over the memory
  limits (per sender and in total), so that a sender that never finishes cannot make us
  hold its pieces forever.
- TCP: messages end with a null byte; uncompressed only.
- Payload (UDP, HTTP): zlib (0x78 ...), gzip (0x1f 0x8b) or uncompressed JSON. Inflating is
  bounded by ``max_message`` (decompression bombs).

Every refusal is a :class:`GelfError` saying why, with the first bytes kept for the
failure store.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from netmeta.decode.syslog import FrameError  # the TCP listener's kind of dropped frame

CHUNK_MAGIC = b"\x1e\x0f"
CHUNK_HEADER = 12  # magic 2, message id 8, sequence 1, count 1
MAX_CHUNKS = 128
ZLIB_MAGICS = (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")
GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_MAX_MESSAGE = 8 << 20  # bytes of one message once inflated
HEAD = 256  # bytes of a refused datagram or message kept as event.original


class GelfError(ValueError):
    def __init__(self, reason: str, head: bytes = b"") -> None:
        super().__init__(reason)
        self.reason, self.head = reason, head[:HEAD]


# ---------------------------------------------------------------- payloads

def inflate(payload: bytes, max_message: int = DEFAULT_MAX_MESSAGE) -> bytes:
    """The JSON text of a GELF payload: zlib, gzip or as it is."""
    if payload[:2] == GZIP_MAGIC:
        return _inflate(payload, 16 + zlib.MAX_WBITS, max_message, "gzip")
    if payload[:2] in ZLIB_MAGICS:
        return _inflate(payload, zlib.MAX_WBITS, max_message, "zlib")
    if len(payload) > max_message:
        raise GelfError(f"message of {len(payload)} bytes is over the limit of "
                        f"{max_message}", payload)
    return payload


def _inflate(payload: bytes, wbits: int, limit: int, kind: str) -> bytes:
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(payload, limit + 1)
    except zlib.error as e:
        raise GelfError(f"{kind} payload does not decompress: {e}", payload) from None
    if len(out) > limit or d.unconsumed_tail:
        raise GelfError(f"{kind} payload inflates to more than {limit} bytes", payload)
    if not d.eof:
        raise GelfError(f"{kind} payload is cut short", payload)
    return out


def parse(payload: bytes, max_message: int = DEFAULT_MAX_MESSAGE) -> dict[str, Any]:
    """A complete GELF payload → its JSON object (GELF 1.1: ``short_message`` required)."""
    text = inflate(payload, max_message)
    try:
        msg = orjson.loads(text)
    except orjson.JSONDecodeError as e:
        raise GelfError(f"not JSON: {e}", text) from None
    if not isinstance(msg, dict):
        raise GelfError("a GELF message is a JSON object", text)
    short = msg.get("short_message")
    if not isinstance(short, str) or not short:  # Graylog refuses these too
        raise GelfError("GELF message without short_message", text)
    return msg


# ---------------------------------------------------------------- UDP chunks

@dataclass(slots=True)
class _Partial:
    count: int
    first: float  # when its first chunk came
    pieces: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


@dataclass(slots=True)
class ChunkStats:
    chunks: int = 0
    duplicates: int = 0
    completed: int = 0
    expired: int = 0
    refused: int = 0


class Reassembler:
    """Chunked GELF messages, by sender and message id. ``add`` returns the complete
    payloads a datagram finishes (still compressed) and the errors it caused; ``expire``
    the messages that waited longer than ``timeout``. Time is passed in (pure)."""

    def __init__(self, timeout: float = 5.0, max_message: int = DEFAULT_MAX_MESSAGE,
                 max_per_sender: int = 32 << 20, max_total: int = 256 << 20,
                 max_pending: int = 65536) -> None:
        self.timeout, self.max_message = timeout, max_message
        self.max_per_sender, self.max_total, self.max_pending = (
            max_per_sender, max_total, max_pending)
        self._partial: dict[tuple[str, bytes], _Partial] = {}  # insertion order = age
        self._per_sender: dict[str, int] = {}
        # messages completed within the timeout: a late duplicate of one of their chunks
        # is a duplicate, not the start of a message that would never complete
        self._done: dict[tuple[str, bytes], float] = {}
        self.total = 0
        self.stats = ChunkStats()

    @property
    def pending(self) -> int:
        return len(self._partial)

    def add(self, datagram: bytes, sender: str, now: float
            ) -> tuple[list[bytes], list[GelfError]]:
        if datagram[:2] != CHUNK_MAGIC:
            if not datagram:
                return [], [GelfError("empty datagram")]
            return [datagram], []
        self.stats.chunks += 1
        if len(datagram) < CHUNK_HEADER:
            return [], [GelfError(f"chunk of {len(datagram)} bytes is shorter than its "
                                  f"{CHUNK_HEADER}-byte header", datagram)]
        msg_id, seq, count = datagram[2:10], datagram[10], datagram[11]
        if count == 0 or count > MAX_CHUNKS:
            return [], [GelfError(f"chunk count {count} (1 to {MAX_CHUNKS})", datagram)]
        if seq >= count:
            return [], [GelfError(f"chunk {seq} of a message of {count} chunks", datagram)]
        piece = datagram[CHUNK_HEADER:]
        key = (sender, msg_id)
        errors: list[GelfError] = []
        part = self._partial.get(key)
        if part is None and key in self._done:
            self.stats.duplicates += 1
            return [], errors
        if part is None:
            if len(self._partial) >= self.max_pending:
                victim = self._oldest(None)
                if victim is not None:
                    errors.append(self._refuse(victim, "too many incomplete messages"))
            part = self._partial[key] = _Partial(count, now)
        elif part.count != count:
            self._drop(key)
            self.stats.refused += 1
            return [], [GelfError(f"message {msg_id.hex()} from {sender}: chunk says {count} "
                                  f"chunks, an earlier one said {part.count}", datagram)]
        if seq in part.pieces:
            self.stats.duplicates += 1  # a resent chunk: the first copy is kept
            return [], errors
        if part.size + len(piece) > self.max_message:
            self._drop(key)
            self.stats.refused += 1
            return [], [*errors, GelfError(f"message {msg_id.hex()} from {sender} is over "
                                  f"{self.max_message} bytes", datagram)]
        while self._per_sender.get(sender, 0) + len(piece) > self.max_per_sender or \
                self.total + len(piece) > self.max_total:
            victim = self._oldest(sender if self._per_sender.get(sender, 0) + len(piece)
                                  > self.max_per_sender else None)
            if victim is None or victim == key:
                self._drop(key)
                self.stats.refused += 1
                return [], [*errors, GelfError(
                    f"message {msg_id.hex()} from {sender}: incomplete messages over the "
                    "memory limit", datagram)]
            errors.append(self._refuse(victim, "incomplete messages over the memory limit"))
        part.pieces[seq] = piece
        part.size += len(piece)
        self._per_sender[sender] = self._per_sender.get(sender, 0) + len(piece)
        self.total += len(piece)
        if len(part.pieces) < part.count:
            return [], errors
        self._drop(key)
        self.stats.completed += 1
        self._done[key] = now
        if len(self._done) > self.max_pending:
            del self._done[next(iter(self._done))]
        return [b"".join(part.pieces[i] for i in range(part.count))], errors

    def expire(self, now: float) -> list[GelfError]:
        """Messages whose first chunk came more than ``timeout`` seconds ago."""
        for key, at in list(self._done.items()):
            if now - at <= self.timeout:
                break
            del self._done[key]
        out = []
        for key, part in list(self._partial.items()):
            if now - part.first <= self.timeout:
                break  # insertion order: the rest are younger
            self.stats.expired += 1
            out.append(self._refuse(key, f"incomplete after {self.timeout:g} s "
                                          f"({len(part.pieces)} of {part.count} chunks)",
                                    count=False))
        return out

    def _oldest(self, sender: str | None) -> tuple[str, bytes] | None:
        for key in self._partial:
            if sender is None or key[0] == sender:
                return key
        return None

    def _refuse(self, key: tuple[str, bytes], why: str, count: bool = True) -> GelfError:
        part = self._partial[key]
        head = b"".join(part.pieces[i] for i in sorted(part.pieces))[:HEAD]
        self._drop(key)
        if count:
            self.stats.refused += 1
        return GelfError(f"message {key[1].hex()} from {key[0]}: {why}", head)

    def _drop(self, key: tuple[str, bytes]) -> None:
        part = self._partial.pop(key, None)
        if part is None:
            return
        left = self._per_sender.get(key[0], 0) - part.size
        if left > 0:
            self._per_sender[key[0]] = left
        else:
            self._per_sender.pop(key[0], None)
        self.total -= part.size


def chunk(payload: bytes, msg_id: bytes, size: int = 1420) -> list[bytes]:
    """``payload`` as GELF chunks of at most ``size`` bytes each (what a GELF sender does;
    netmeta's GELF output and the tests use it)."""
    if len(msg_id) != 8:
        raise ValueError("a GELF message id is 8 bytes")
    room = size - CHUNK_HEADER
    pieces = [payload[i:i + room] for i in range(0, len(payload), room)] or [b""]
    if len(pieces) > MAX_CHUNKS:
        raise ValueError(f"{len(payload)} bytes need more than {MAX_CHUNKS} chunks")
    n = len(pieces)
    return [CHUNK_MAGIC + msg_id + bytes((i, n)) + p for i, p in enumerate(pieces)]


# ---------------------------------------------------------------- TCP frames

class NullFramer:
    """GELF over TCP: messages end with a null byte. ``feed`` yields complete messages
    (bytes) or FrameErrors; memory is bounded by ``max_size`` plus one read."""

    def __init__(self, max_size: int = DEFAULT_MAX_MESSAGE) -> None:
        self.max_size = max_size
        self.buf = bytearray()
        self.skipping = 0  # bytes of an oversized frame discarded so far (0: not skipping)

    def feed(self, data: bytes) -> Iterator[bytes | FrameError]:
        start = 0
        while True:
            end = data.find(b"\x00", start)
            if end < 0:
                break
            piece = data[start:end]
            start = end + 1
            if self.skipping:
                size, self.skipping = self.skipping + len(piece), 0
                yield FrameError(f"frame longer than {self.max_size} bytes", size)
                continue
            if self.buf:
                self.buf += piece
                piece, self.buf = bytes(self.buf), bytearray()
            if len(piece) > self.max_size:
                yield FrameError(f"frame longer than {self.max_size} bytes", len(piece),
                                 piece[:HEAD])
            elif piece.strip():
                yield piece
        rest = data[start:]
        if self.skipping:
            self.skipping += len(rest)
        elif len(self.buf) + len(rest) > self.max_size:
            self.skipping = len(self.buf) + len(rest)  # drop it; resync at the next null
            self.buf = bytearray()
        else:
            self.buf += rest

    def flush(self) -> Iterator[bytes | FrameError]:
        """End of stream: bytes after the last null are a message if they are one (some
        senders close the connection instead of sending the last null)."""
        rest, self.buf = bytes(self.buf), bytearray()
        if self.skipping:
            size, self.skipping = self.skipping, 0
            yield FrameError(f"frame longer than {self.max_size} bytes", size)
        elif rest.strip():
            yield rest
