"""The Lumberjack frame parser: whole frames out of bytes split anywhere, clear errors for
hostile or broken streams, never a crash."""

from __future__ import annotations

import struct
import zlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netmeta.decode.jsondocs import check_object, split_objects
from netmeta.decode.lumberjack import (
    Data,
    LumberjackError,
    Parser,
    Window,
    encode_ack,
    encode_compressed,
    encode_data,
    encode_json,
    encode_window,
)

EVENTS = [orjson.dumps({"n": i, "type": "flow", "message": "x" * (i % 7)}) for i in range(5)]


def window_bytes(events: list[bytes], first_seq: int = 1, compress: bool = True) -> bytes:
    frames = b"".join(encode_json(first_seq + i, e) for i, e in enumerate(events))
    return encode_window(len(events)) + (encode_compressed(frames) if compress else frames)


def parse_all(data: bytes, **limits: int) -> list[object]:
    return Parser(**limits).feed(data)


def test_window_and_json_frames() -> None:
    frames = parse_all(window_bytes(EVENTS, compress=False))
    assert frames[0] == Window(5, ord("2"))
    assert [f.seq for f in frames[1:]] == [1, 2, 3, 4, 5]
    assert [f.payload for f in frames[1:]] == EVENTS


def test_compressed_frame_holds_frames() -> None:
    frames = parse_all(window_bytes(EVENTS, first_seq=41))
    assert [type(f) for f in frames] == [Window] + [Data] * 5
    assert [f.seq for f in frames[1:]] == [41, 42, 43, 44, 45]


def test_split_at_every_byte() -> None:
    stream = window_bytes(EVENTS) + window_bytes(EVENTS[:2], 6, compress=False) + \
        encode_data(9, {"line": "hello", "host": "h"}, version=ord("2"))
    want = parse_all(stream)
    for cut in range(len(stream) + 1):
        p = Parser()
        got = p.feed(stream[:cut]) + p.feed(stream[cut:])
        assert got == want, cut
        assert p.buffered == 0
    p = Parser()  # one byte at a time
    got = [f for i in range(len(stream)) for f in p.feed(stream[i:i + 1])]
    assert got == want


def test_v1_key_value_frame() -> None:
    frames = parse_all(encode_window(1, ord("1")) + encode_data(7, {"line": "é", "k": ""}))
    assert frames[0] == Window(1, ord("1"))
    assert frames[1].seq == 7 and orjson.loads(frames[1].payload) == {"line": "é", "k": ""}


def test_ack_frame() -> None:
    assert encode_ack(2048) == b"2A\x00\x00\x08\x00"
    assert encode_ack(0) == b"2A\x00\x00\x00\x00"  # keep-alive
    assert encode_ack(3, ord("1")) == b"1A\x00\x00\x00\x03"


@pytest.mark.parametrize("stream, reason", [
    (b"3W\x00\x00\x00\x01", "bad_version"),
    (b"2X\x00\x00\x00\x01", "bad_type"),
    (b"2A\x00\x00\x00\x01", "bad_type"),
    (b"2J\x00\x00\x00\x01\xff\xff\xff\xff", "too_large"),
    (b"2C\xff\xff\xff\xff", "too_large"),
    (b"2C\x00\x00\x00\x04abcd", "bad_compression"),
    (b"2C" + struct.pack(">I", len(zlib.compress(b"2W\x00"))) + zlib.compress(b"2W\x00"),
     "bad_frame"),
    (b"2D\x00\x00\x00\x01\xff\xff\xff\xff", "too_large"),
])
def test_errors_are_clear(stream: bytes, reason: str) -> None:
    p = Parser(max_payload=1 << 20)
    with pytest.raises(LumberjackError) as e:
        p.feed(stream)
    assert e.value.reason == reason
    assert str(e.value)
    with pytest.raises(LumberjackError):  # the stream cannot be resynchronised
        p.feed(encode_window(1))


def test_zlib_bomb_is_refused_without_inflating_it() -> None:
    bomb = zlib.compress(b"\x00" * (64 << 20), 9)  # 64 MiB of zeros, ~64 KiB sent
    frame = b"2C" + struct.pack(">I", len(bomb)) + bomb
    with pytest.raises(LumberjackError) as e:
        Parser(max_decompressed=1 << 20).feed(frame)
    assert e.value.reason == "too_large" and "max_decompressed" in str(e.value)


def test_truncated_zlib_stream() -> None:
    body = zlib.compress(encode_json(1, b"{}"))[:-3]
    with pytest.raises(LumberjackError, match="ends before"):
        Parser().feed(b"2C" + struct.pack(">I", len(body)) + body)


def test_nesting_is_bounded() -> None:
    frame = encode_json(1, b"{}")
    for _ in range(6):
        frame = encode_compressed(frame)
    with pytest.raises(LumberjackError, match="nested"):
        Parser().feed(frame)


def test_large_frame_waits_without_reparsing() -> None:
    doc = orjson.dumps({"m": "y" * 300_000})
    stream = encode_window(1) + encode_json(1, doc)
    p = Parser()
    frames = []
    for i in range(0, len(stream), 4096):
        frames += p.feed(stream[i:i + 4096])
    assert frames[-1].payload == doc


def test_json_objects_checked() -> None:
    assert check_object(b'{"a": [1, {"b": null}]}') is None
    assert "not a JSON object" in check_object(b"[1]")
    assert "not JSON" in check_object(b'{"a": b}')
    assert "not UTF-8" in check_object(b'{"a": "\xff"}')
    good, bad = split_objects([b"{}", b'{"a":1},{"b":2}', b"nope", b'{"x":1}'])
    assert good == [b"{}", b'{"x":1}'] and [i for i, _ in bad] == [1, 2]


# ---------------------------------------------------------------- fuzzing

_frame = st.one_of(
    st.builds(encode_window, st.integers(0, 2**32 - 1)),
    st.builds(encode_json, st.integers(0, 2**32 - 1), st.binary(max_size=64)),
    st.builds(lambda s, d: encode_data(s, d), st.integers(0, 2**32 - 1),
              st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)),
    st.builds(lambda fs: encode_compressed(b"".join(fs)),
              st.lists(st.builds(encode_json, st.integers(0, 9), st.binary(max_size=16)),
                       max_size=4)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_frame, max_size=8), st.lists(st.integers(0, 400), max_size=6))
def test_fuzz_valid_streams_any_split(frames: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(frames)
    want = Parser().feed(stream)
    assert len(want) == len(frames) - sum(1 for f in frames if f[1:2] == b"C") + sum(
        len(Parser().feed(f)) for f in frames if f[1:2] == b"C")
    p = Parser()
    got, prev = [], 0
    for c in sorted(min(c, len(stream)) for c in cuts) + [len(stream)]:
        got += p.feed(stream[prev:c])
        prev = c
    assert got == want


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=4))
def test_fuzz_garbage_never_crashes(data: bytes, cuts: list[int]) -> None:
    p = Parser(max_payload=4096, max_decompressed=65536)
    prev = 0
    try:
        for c in sorted(min(c, len(data)) for c in cuts) + [len(data)]:
            for f in p.feed(data[prev:c]):
                assert isinstance(f, Window | Data)
            prev = c
    except LumberjackError as e:
        assert e.reason in {"bad_version", "bad_type", "too_large", "bad_compression",
                            "bad_frame"}
    assert p.buffered <= len(data)


@settings(max_examples=200, deadline=None)
@given(st.lists(_frame, min_size=1, max_size=4), st.integers(0, 300), st.binary(max_size=8))
def test_fuzz_corrupted_streams(frames: list[bytes], at: int, junk: bytes) -> None:
    stream = bytearray(b"".join(frames))
    at = min(at, len(stream))
    stream[at:at + len(junk)] = junk
    try:
        Parser(max_payload=4096, max_decompressed=65536).feed(bytes(stream))
    except LumberjackError as e:
        assert str(e)
