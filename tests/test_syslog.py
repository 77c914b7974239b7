"""Syslog header forms, ECS mapping, TCP framing (octet counting / newline) and fuzzing."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from netmeta.decode.cef import decode
from netmeta.decode.syslog import FrameError, Framer, parse

GIGAMON = ("Fri Feb 23 02:25:37 2018 9/3/e1 CEF:23|Gigamon|metadata|5.3.00|4|metadatageneration|"
           "6| src=68.94.156.1 GigamonMdataDnsAdditionalType=41 "
           "GigamonMdataDnsAdditionalTypeText=OPT")
NOW = datetime(2026, 11, 22, tzinfo=UTC)


def test_gigamon_header() -> None:
    m = parse(GIGAMON)
    assert m.format == "gigamon"
    assert m.timestamp == datetime(2018, 2, 23, 2, 25, 37, tzinfo=UTC)
    assert m.hostname == "9/3/e1"
    assert m.message.startswith("CEF:23|Gigamon|")
    doc = decode(m.message)
    assert doc["cef"]["extensions"]["GigamonMdataDnsAdditionalTypeText"] == "OPT"
    assert doc["source"]["ip"] == "68.94.156.1"
    assert m.to_ecs()["@timestamp"] == "2018-02-23T02:25:37.000Z"


def test_gigamon_header_with_pri() -> None:
    m = parse("<14>" + GIGAMON)
    assert (m.format, m.priority, m.facility, m.severity) == ("gigamon", 14, 1, 6)


def test_rfc3164() -> None:
    m = parse("<34>Oct 11 22:14:15 mymachine su[230]: 'su root' failed for lonvick", now=NOW)
    assert (m.format, m.hostname, m.appname, m.procid) == ("rfc3164", "mymachine", "su", "230")
    assert m.message == "'su root' failed for lonvick"
    assert m.timestamp == datetime(2026, 10, 11, 22, 14, 15, tzinfo=UTC)
    ecs = m.to_ecs()["log"]["syslog"]
    assert ecs["facility"] == {"code": 4, "name": "security/authorization"}
    assert ecs["severity"] == {"code": 2, "name": "Critical"}


def test_rfc3164_without_pri_and_year_rollover() -> None:
    m = parse("Dec 31 23:59:59 host app: hi", now=datetime(2027, 1, 1, 0, 0, 5, tzinfo=UTC))
    assert m.priority is None and m.timestamp is not None and m.timestamp.year == 2026
    assert (m.hostname, m.appname, m.message) == ("host", "app", "hi")
    assert "log" in m.to_ecs() and "priority" not in m.to_ecs()["log"]["syslog"]


def test_rfc5424_structured_data_escapes_and_bom() -> None:
    m = parse('<165>1 2003-10-11T22:14:15.003-07:00 mymachine.example.com evntslog - ID47 '
              '[exampleSDID@32473 iut="3" eventSource="App\\"li\\]cation\\\\"][p@1 c="h"] '
              '\ufeffAn application event log entry')
    assert m.format == "rfc5424" and m.version == 1
    assert m.timestamp == datetime(2003, 10, 12, 5, 14, 15, 3000, tzinfo=UTC)
    assert (m.hostname, m.appname, m.procid, m.msgid) == (
        "mymachine.example.com", "evntslog", None, "ID47")
    assert m.structured_data == {
        "exampleSDID@32473": {"iut": "3", "eventSource": 'App"li]cation\\'},
        "p@1": {"c": "h"},
    }
    assert m.message == "An application event log entry"
    ecs = m.to_ecs()
    assert ecs["log"]["syslog"]["severity"] == {"code": 5, "name": "Notice"}
    assert ecs["log"]["syslog"]["facility"] == {"code": 20, "name": "local4"}
    assert ecs["@timestamp"] == "2003-10-12T05:14:15.003Z"


def test_rfc5424_nil_values() -> None:
    m = parse("<13>1 - - - - - -")
    assert m.format == "rfc5424" and m.timestamp is None and m.hostname is None
    assert m.message == "" and m.structured_data == {}


def test_unparsable_is_raw() -> None:
    m = parse("just some text")
    assert (m.format, m.message, m.priority) == ("raw", "just some text", None)
    assert parse("<999>x").message == "<999>x"


def frames(data: bytes, cuts: list[int], **kw: object) -> list[bytes | FrameError]:
    f = Framer(**kw)  # type: ignore[arg-type]
    out: list[bytes | FrameError] = []
    last = 0
    for cut in [*cuts, len(data)]:
        out.extend(f.feed(data[last:cut]))
        last = cut
    out.extend(f.flush())
    return out


STREAM = b"11 hello world5 abcde<13>Oct 11 22:14:15 h a: x\r\n" + GIGAMON.encode() + b"\n3 end"


def test_framing_split_at_every_byte_position() -> None:
    expected = frames(STREAM, [])
    assert expected == [b"hello world", b"abcde", b"<13>Oct 11 22:14:15 h a: x",
                        GIGAMON.encode(), b"end"]
    for cut in range(len(STREAM) + 1):
        assert frames(STREAM, [cut]) == expected, cut
    assert frames(STREAM, list(range(len(STREAM)))) == expected  # one byte at a time


def test_octet_oversized_frame_is_an_error_and_skipped() -> None:
    data = b"100 " + b"x" * 100 + b"5 after"
    for cut in range(len(data) + 1):
        out = frames(data, [cut], max_size=50)
        assert isinstance(out[0], FrameError) and out[0].size == 100
        assert out[1:] == [b"after"]


def test_newline_oversized_frame_is_bounded() -> None:
    f = Framer(max_size=1024)
    out: list[bytes | FrameError] = []
    for _ in range(1000):  # 1 MB without a newline
        out.extend(f.feed(b"y" * 1024))
        assert len(f.buf) <= 2 * 1024 + 2
    out.extend(f.feed(b"\nok\n"))
    assert len(out) == 2 and isinstance(out[0], FrameError) and out[1] == b"ok"


def test_octet_only_mode_rejects_bad_header() -> None:
    out = frames(b"abc\n4 good", [], mode="octet")
    assert isinstance(out[0], FrameError) and out[1:] == [b"good"]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_fuzz_parse_never_raises(text: str) -> None:
    m = parse(text, now=NOW)
    m.to_ecs()
    parse(text.encode("utf-8", "surrogatepass"), now=NOW)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.lists(st.integers(0, 600), max_size=10),
       st.sampled_from(["auto", "octet", "newline"]))
def test_fuzz_framer_bounded(data: bytes, cuts: list[int], mode: str) -> None:
    f = Framer(max_size=64, mode=mode)
    last = 0
    for cut in sorted({min(c, len(data)) for c in cuts}) + [len(data)]:
        for item in f.feed(data[last:cut]):
            assert isinstance(item, FrameError) or len(item) <= 64
        last = cut
        assert len(f.buf) <= 64 * 2 + 16
    list(f.flush())


def test_frames_after_an_oversized_line_in_the_same_read_are_kept() -> None:
    """A read holding an oversized line, its newline and more frames: only the long line
    is dropped (a whole-buffer discard once lost the frames behind it)."""
    import random

    stream = b"first\n" + b"x" * 10000 + b"\nsecond\n11 octet frame" + b"third\n"
    outcomes = set()
    for seed in range(200):
        rnd = random.Random(seed)
        framer = Framer(4096, "auto")
        out: list[bytes | FrameError] = []
        i = 0
        while i < len(stream):
            k = rnd.choice([1, 7, 100, 4096, 8192, len(stream)])
            out += list(framer.feed(stream[i:i + k]))
            i += k
        out += list(framer.flush())
        outcomes.add(tuple("E" if isinstance(x, FrameError) else x for x in out))
    assert outcomes == {(b"first", "E", b"second", b"octet frame", b"third")}
