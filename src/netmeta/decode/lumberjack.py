"""Lumberjack (the Beats protocol, ``output.logstash``): frames in, ACK frames out.

Pure code, no sockets. A frame is a version byte (``'2'``; ``'1'`` for the old
logstash-forwarder), a type byte and a big-endian body:

- ``W`` window size: u32 — how many data frames the writer sends before it waits for an ACK
- ``J`` JSON data: u32 sequence, u32 length, that many bytes of one JSON document
- ``D`` key/value data (v1): u32 sequence, u32 pair count, then per pair u32 length + key,
  u32 length + value (strings only)
- ``C`` compressed: u32 length, a zlib stream whose content is itself whole frames
- ``A`` ACK (reader to writer only): u32 sequence — every data frame up to it is acknowledged

Facts from logstash-input-beats' PROTOCOL.md and the behaviour of go-lumber (the library in
every Beat) and of Logstash's beats input. Sizes come from the peer, so every length is
checked against a limit before anything is buffered or inflated (a 4 GiB length or a
zlib bomb is a clear :class:`LumberjackError`, not a memory spike).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import orjson

VERSION_1 = 0x31  # '1'
VERSION_2 = 0x32  # '2'
VERSIONS = (VERSION_1, VERSION_2)
WINDOW, JSON, DATA, COMPRESSED, ACK = b"W"[0], b"J"[0], b"D"[0], b"C"[0], b"A"[0]
FRAME_NAMES = {WINDOW: "window size", JSON: "JSON data", DATA: "key/value data",
               COMPRESSED: "compressed", ACK: "ACK"}

MAX_PAYLOAD = 64 << 20  # bytes of one frame body as sent (a JSON document, a zlib stream)
MAX_DECOMPRESSED = 256 << 20  # bytes a compressed frame may inflate to
MAX_NESTING = 4  # compressed frames inside compressed frames (go-lumber allows any depth)

_U32 = struct.Struct(">I")
_U32X2 = struct.Struct(">II")


class LumberjackError(ValueError):
    """The stream cannot be read on: the connection is closed (a reader cannot resync)."""

    def __init__(self, reason: str, message: str, head: bytes = b"") -> None:
        super().__init__(message)
        self.reason = reason  # short, for metrics: bad_version, bad_type, too_large, ...
        self.head = head  # the first bytes of the offending frame, kept with the failure


@dataclass(slots=True)
class Window:
    size: int
    version: int  # VERSION_1 or VERSION_2: the ACKs answer in the same version


@dataclass(slots=True)
class Data:
    seq: int
    payload: bytes  # one JSON document (D frames are converted to a JSON object)


Frame = Window | Data


def encode_ack(seq: int, version: int = VERSION_2) -> bytes:
    """The ACK frame for every data frame up to ``seq`` (0: a keep-alive, see beats.py)."""
    return bytes((version, ACK)) + _U32.pack(seq & 0xFFFFFFFF)


def encode_window(size: int, version: int = VERSION_2) -> bytes:
    return bytes((version, WINDOW)) + _U32.pack(size)


def encode_json(seq: int, payload: bytes, version: int = VERSION_2) -> bytes:
    return bytes((version, JSON)) + _U32X2.pack(seq, len(payload)) + payload


def encode_compressed(frames: bytes, level: int = 3, version: int = VERSION_2) -> bytes:
    body = zlib.compress(frames, level)
    return bytes((version, COMPRESSED)) + _U32.pack(len(body)) + body


def encode_data(seq: int, pairs: dict[str, str], version: int = VERSION_1) -> bytes:
    out = [bytes((version, DATA)), _U32X2.pack(seq, len(pairs))]
    for k, v in pairs.items():
        kb, vb = k.encode(), v.encode()
        out += [_U32.pack(len(kb)), kb, _U32.pack(len(vb)), vb]
    return b"".join(out)


class Parser:
    """Incremental frame parser for one connection: ``feed`` what was read, get the frames
    that are complete; a frame split across reads at any byte waits for the rest.

    After a :class:`LumberjackError` the parser stays failed (the byte stream has no
    resynchronisation point)."""

    def __init__(self, max_payload: int = MAX_PAYLOAD,
                 max_decompressed: int = MAX_DECOMPRESSED) -> None:
        self.max_payload, self.max_decompressed = max_payload, max_decompressed
        self._buf = bytearray()
        self._error: LumberjackError | None = None

    @property
    def buffered(self) -> int:
        """Bytes of an incomplete frame held (0 between frames)."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame]:
        if self._error is not None:
            raise self._error
        self._buf += data
        frames: list[Frame] = []
        try:
            used = _parse(self._buf, frames, self.max_payload, self.max_decompressed, 0)
        except LumberjackError as e:
            self._error = e
            self._buf = bytearray()
            raise
        # deleting from the front of a bytearray is cheap in CPython (no copy of the rest)
        del self._buf[:used]
        return frames


def _parse(buf: bytes | bytearray, out: list[Frame], max_payload: int, max_inflated: int,
           depth: int) -> int:
    """Append the whole frames at the start of ``buf`` to ``out``; returns the bytes used."""
    off, n = 0, len(buf)
    u32, u32x2 = _U32.unpack_from, _U32X2.unpack_from
    while n - off >= 2:
        version, kind = buf[off], buf[off + 1]
        if version not in VERSIONS:
            raise LumberjackError("bad_version", f"frame with protocol version byte "
                                  f"0x{version:02x} at offset {off}; Lumberjack is '1' or '2'",
                                  bytes(buf[off:off + 16]))
        if kind == JSON:
            if n - off < 10:
                break
            seq, size = u32x2(buf, off + 2)
            if size > max_payload:
                raise _too_large("JSON data", size, max_payload, buf, off)
            end = off + 10 + size
            if end > n:
                break
            out.append(Data(seq, bytes(buf[off + 10:end])))
            off = end
        elif kind == WINDOW:
            if n - off < 6:
                break
            out.append(Window(u32(buf, off + 2)[0], version))
            off += 6
        elif kind == COMPRESSED:
            if n - off < 6:
                break
            size = u32(buf, off + 2)[0]
            if size > max_payload:
                raise _too_large("compressed", size, max_payload, buf, off)
            end = off + 6 + size
            if end > n:
                break
            if depth >= MAX_NESTING:
                raise LumberjackError("bad_frame", f"compressed frames nested more than "
                                      f"{MAX_NESTING} deep", bytes(buf[off:off + 16]))
            inner = _inflate(buf[off + 6:end], max_inflated, bytes(buf[off:off + 16]))
            used = _parse(inner, out, max_payload, max_inflated, depth + 1)
            if used != len(inner):
                raise LumberjackError("bad_frame", f"compressed frame ends inside a frame "
                                      f"({len(inner) - used} bytes left over); it must hold "
                                      "whole frames", inner[used:used + 16])
            off = end
        elif kind == DATA:
            end = _data_end(buf, off, max_payload)
            if end < 0:
                break
            out.append(_data_frame(buf, off, end))
            off = end
        elif kind == ACK:
            raise LumberjackError("bad_type", "ACK frame from the writer (only the reader "
                                  "sends ACKs)", bytes(buf[off:off + 16]))
        else:
            raise LumberjackError("bad_type", f"unknown frame type 0x{kind:02x} at offset {off}"
                                  " (W, J, D, C are sent by a writer)", bytes(buf[off:off + 16]))
    return off


def _too_large(what: str, size: int, limit: int, buf: bytes | bytearray,
               off: int) -> LumberjackError:
    return LumberjackError("too_large", f"{what} frame of {size} bytes, over the limit of "
                           f"{limit} (max_payload)", bytes(buf[off:off + 16]))


def _inflate(data: bytes | bytearray, limit: int, head: bytes) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as e:
        raise LumberjackError("bad_compression", f"compressed frame is not a zlib stream: {e}",
                              head) from None
    if len(out) > limit or d.unconsumed_tail:
        raise LumberjackError("too_large", f"compressed frame inflates to more than {limit} "
                              "bytes (max_decompressed)", head)
    if not d.eof:
        raise LumberjackError("bad_compression", "compressed frame ends before its zlib "
                              "stream does", head)
    return out


def _data_end(buf: bytes | bytearray, off: int, max_payload: int) -> int:
    """End offset of the D frame at ``off``, or -1 while it is incomplete."""
    n = len(buf)
    if n - off < 10:
        return -1
    pairs = _U32.unpack_from(buf, off + 6)[0]
    if pairs * 8 > max_payload:
        raise _too_large("key/value data", pairs * 8, max_payload, buf, off)
    pos = off + 10
    for _ in range(pairs * 2):
        if n - pos < 4:
            return -1
        size = _U32.unpack_from(buf, pos)[0]
        pos += 4 + size
        if pos - off > max_payload:
            raise _too_large("key/value data", pos - off, max_payload, buf, off)
        if pos > n:
            return -1
    return pos


def _data_frame(buf: bytes | bytearray, off: int, end: int) -> Data:
    seq, pairs = _U32X2.unpack_from(buf, off + 2)
    fields: dict[str, str] = {}
    pos = off + 10
    for _ in range(pairs):
        parts = []
        for _ in range(2):
            size = _U32.unpack_from(buf, pos)[0]
            parts.append(bytes(buf[pos + 4:pos + 4 + size]).decode("utf-8", "replace"))
            pos += 4 + size
        fields[parts[0]] = parts[1]
    return Data(seq, orjson.dumps(fields))
