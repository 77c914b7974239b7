"""Hostile input for the JSON-lines decoder and the GoFlow2 normalizer (hypothesis).

Whatever the bytes, nothing raises and every non-blank line becomes exactly one event or
one failure (nothing silently dropped)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from netmeta.decode.jsonlines import decode_lines, line_bounds
from netmeta.event import Origin, to_documents
from netmeta.normalize.goflow2 import SCHEMA, normalize

from .conftest import goflow2_line

_values = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                    st.text(max_size=20), st.lists(st.integers(), max_size=3),
                    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2))
_keys = st.sampled_from([f.name for f in SCHEMA] + ["extra", "Type", ""])
_records = st.dictionaries(_keys, _values, max_size=8)


def _lines(draw_lines: list[bytes]) -> bytes:
    return b"\n".join(draw_lines) + b"\n"


def _check(data: bytes) -> None:
    out = normalize(decode_lines(data, SCHEMA), data, Origin("f"))
    events = sum(t.num_rows for t in out.events)
    starts, ends = line_bounds(data)
    nonblank = sum(1 for s, e in zip(starts, ends, strict=True) if data[s:e].strip())
    assert events + len(out.failures) == nonblank
    for f in out.failures:
        assert f.message.startswith("goflow2: ")


@settings(max_examples=300, deadline=None)
@given(st.lists(_records, max_size=12))
def test_arbitrary_json_objects(records: list[dict]) -> None:
    lines = [json.dumps(r, allow_nan=True).encode() for r in records]
    _check(_lines(lines))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=60), max_size=10), st.integers(0, 5))
def test_arbitrary_bytes_between_good_lines(junk: list[bytes], good: int) -> None:
    lines = [goflow2_line(i).encode() for i in range(good)] + [j.replace(b"\n", b"") for j in junk]
    _check(_lines(lines))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 30), st.sampled_from(["src_addr", "dst_addr", "sampler_address"]),
       st.text(max_size=15))
def test_bad_addresses_become_failures(n: int, field: str, value: str) -> None:
    lines = [goflow2_line(i).encode() for i in range(n)]
    lines.append(goflow2_line(99, **{field: value}).encode())
    _check(_lines(lines))


def test_unknown_fields_keep_their_text_and_known_fields_their_type() -> None:
    """Arrow would read "2024-01-01" as a timestamp; the event must keep the string."""
    lines = [goflow2_line(0, note="2024-01-01", later=1),
             goflow2_line(1, note="2024-01-02T00:00:00Z", src_mac="00:11:22:33:44:55")]
    data = ("\n".join(lines) + "\n").encode()
    out = normalize(decode_lines(data, SCHEMA), data, Origin("f"))
    docs = [d for t in out.events for d in to_documents(t)]
    assert [d["goflow2"]["note"] for d in docs] == ["2024-01-01", "2024-01-02T00:00:00Z"]
    assert docs[1]["goflow2"]["src_mac"] == "00:11:22:33:44:55"
    assert docs[0]["goflow2"]["later"] == 1 and out.failures == []
