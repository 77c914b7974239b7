"""Native sFlow normalizes to the documents of the GoFlow2 path: one shape however sFlow
arrives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netmeta.decode.jsonlines import decode_lines
from netmeta.decode.sflow import decode_many
from netmeta.event import Origin, flatten, to_documents
from netmeta.normalize import goflow2, sflow

from .conftest import PEER
from .test_decode_sflow import (
    ETHERNET_COUNTER_NAMES,
    IF_COUNTER_NAMES,
    counters_sample,
    datagram,
    ethernet_counters,
    extended_switch,
    flow_sample,
    if_counters,
    sampled_ip,
)

SAMPLE = PEER / "goflow2" / "pipeline" / "test-goflow2-sflow-sample.log"
PROTOCOLS = {"TCP": 6, "UDP": 17, "ESP": 50}
RECEIVED = 1722384059.314


def encode(line: dict[str, Any]) -> bytes:
    """The sFlow datagram a switch would have sent for a GoFlow2 record."""
    records = [
        sampled_ip(line["bytes"], PROTOCOLS[line["proto"]], line["src_addr"], line["dst_addr"],
                   line["src_port"], line["dst_port"], 0, 0),
        extended_switch(line["src_vlan"], 0, line["dst_vlan"], 0),
    ]
    sample = flow_sample(records, rate=line["sampling_rate"], inp=(0, line["in_if"]),
                         out=(0, line["out_if"]))
    return datagram(line["sampler_address"], [sample], seq=line["sequence_num"])


def complete_lines() -> list[dict[str, Any]]:
    lines = [json.loads(x) for x in SAMPLE.read_text().splitlines()]
    keys = {"sampler_address", "sequence_num", "in_if", "src_vlan", "bytes"}
    return [x for x in lines if keys <= x.keys() and x["bytes"] != ""]


def goflow2_document(line: dict[str, Any]) -> dict[str, Any]:
    data = orjson.dumps(line) + b"\n"
    out = goflow2.normalize(decode_lines(data, goflow2.SCHEMA), data, Origin("sflow"))
    return to_documents(out.events[0])[0]


def native_documents(payloads: list[bytes]) -> list[dict[str, Any]]:
    decoded = decode_many([(p, "192.0.2.1:6343") for p in payloads])
    table, fails = sflow.normalize(decoded, "sflow", RECEIVED)
    assert fails == []
    assert table is not None
    return to_documents(table)


# set only by the file path (the line, where it was read) or by the native path (when it
# was received; what the native decoder knows beyond GoFlow2's JSON: sflow.* extras, and
# the header fields GoFlow2 also writes but the sample lines leave out)
FILE_ONLY = {"event.original", "input.type", "log.offset"}
NATIVE_EXTRA_PREFIXES = ("sflow.", "goflow2.", "input.type", "@timestamp")


def test_every_complete_sample_line_has_the_same_document_natively() -> None:
    lines = complete_lines()
    assert len(lines) == 9
    natives = native_documents([encode(x) for x in lines])
    compared = 0
    for line, native in zip(lines, natives, strict=True):
        want = {k: v for k, v in flatten(goflow2_document(line)).items()
                if k not in FILE_ONLY and not k.startswith("goflow2.")}
        got = flatten(native)
        for key, value in want.items():
            if key == "@timestamp":
                continue
            assert got.get(key) == value, (key, line)
            compared += 1
        extra = {k for k in got if k not in want}
        assert all(k.startswith(NATIVE_EXTRA_PREFIXES) for k in extra), extra
    assert compared >= 9 * 15


def test_native_extras_and_receive_time() -> None:
    line = complete_lines()[0]
    doc = native_documents([encode(line)])[0]
    assert doc["@timestamp"] == "2024-07-31T00:00:59.314Z"
    assert doc["input"]["type"] == "sflow"
    assert doc["sflow"]["sample_pool"] == 5000 and doc["sflow"]["drops"] == 0
    assert doc["sflow"]["sequence_num"] == 44555 and doc["sflow"]["sample_sequence_num"] == 1
    assert doc["goflow2"]["time_received_ns"] == 1722384059314000000
    assert "original" not in doc["event"]


def test_counter_samples_are_metric_events() -> None:
    if_values = {k: i + 1 for i, k in enumerate(IF_COUNTER_NAMES)}
    if_values["if_index"] = 7
    eth_values = {k: 100 + i for i, k in enumerate(ETHERNET_COUNTER_NAMES)}
    sample = counters_sample([if_counters(if_values), ethernet_counters(eth_values)], seq=3)
    docs = native_documents([datagram("10.0.0.1", [sample], seq=9)])
    assert len(docs) == 2
    first = docs[0]
    assert first["event"]["kind"] == "metric" and first["event"]["action"] == "sflow_counters"
    assert first["observer"]["ip"] == ["10.0.0.1"]
    assert first["observer"]["ingress"]["interface"]["id"] == "7"
    assert first["sflow"]["counters"]["if_in_octets"] == if_values["if_in_octets"]
    assert first["sflow"]["counters"]["format"] == "0/1"
    assert docs[1]["sflow"]["counters"]["dot3_stats_fcs_errors"] == 101
    assert docs[1]["sflow"]["counters"]["format"] == "0/2"
    assert len({d["_id"] if "_id" in d else id(d) for d in docs}) == 2


def test_broken_samples_are_failures_with_excerpt() -> None:
    good = encode(complete_lines()[0])
    bad = good[:-12]  # the last record cut short
    decoded = decode_many([(good, "192.0.2.1:6343"), (bad, "192.0.2.9:6343")])
    table, fails = sflow.normalize(decoded, "sflow", RECEIVED)
    assert table is not None and table.num_rows == 1
    assert len(fails) == 1
    assert "192.0.2.9" in fails[0].message and fails[0].message.startswith("sflow: ")
    assert bytes.fromhex(str(fails[0].original))


@pytest.mark.parametrize("path", [SAMPLE])
def test_ids_are_unique_and_deterministic(path: Path) -> None:
    payloads = [encode(x) for x in complete_lines()]
    a = sflow.normalize(decode_many([(p, "x") for p in payloads]), "s", RECEIVED)[0]
    b = sflow.normalize(decode_many([(p, "x") for p in payloads]), "s", RECEIVED)[0]
    assert a is not None and b is not None
    ids = a.column("_id").to_pylist()
    assert ids == b.column("_id").to_pylist() and len(set(ids)) == len(ids)


_FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_WORD = st.sampled_from([0, 1, 2, 3, 4, 0xFFFFFFFF, 1001, 1002, 1003]) | st.integers(0, 2**32 - 1)


@_FUZZ
@given(st.lists(st.tuples(st.integers(0, 40), _WORD), min_size=1, max_size=4))
def test_fuzz_normalize_never_raises(changes: list[tuple[int, int]]) -> None:
    """Lying words in a rich datagram: the normalizer takes whatever the decoder gives."""
    from .test_decode_sflow import RICH

    data = bytearray(RICH)
    for word, value in changes:
        if word * 4 + 4 <= len(data):
            data[word * 4:word * 4 + 4] = value.to_bytes(4, "big")
    table, fails = sflow.normalize(decode_many([(bytes(data), "192.0.2.1:6343")]), "s", 0.0)
    if table is not None:
        assert table.num_rows > 0
        to_documents(table)
    assert all(f.message.startswith("sflow: ") for f in fails)


def test_each_sample_gets_its_datagrams_arrival_time() -> None:
    lines = complete_lines()[:3]
    decoded = decode_many([(encode(x), "192.0.2.1:6343") for x in lines])
    times = [1722384059.0, 1722384060.5, 1722384061.25]
    table, _ = sflow.normalize(decoded, "s", times)
    assert table is not None
    docs = to_documents(table)
    assert [d["@timestamp"] for d in docs] == [
        "2024-07-31T00:00:59.000Z", "2024-07-31T00:01:00.500Z", "2024-07-31T00:01:01.250Z"]
    assert docs[1]["goflow2"]["time_received_ns"] == 1722384060_500000000


def test_samples_of_unknown_formats_are_kept_as_sent() -> None:
    from .test_decode_sflow import record

    vendor = record(1, b"\x01\x02\x03\x04", enterprise=8800)
    flow = encode(complete_lines()[0])
    docs = native_documents([flow, datagram("10.1.1.1", [vendor], seq=77)])
    other = [d for d in docs if d["event"]["action"] == "sflow_other_sample"]
    assert len(docs) == 2 and len(other) == 1
    assert other[0]["sflow"]["sample"] == {"enterprise": 8800, "format": 1, "data": "01020304"}
    assert other[0]["observer"]["ip"] == ["10.1.1.1"] and other[0]["sflow"]["sequence_num"] == 77


def test_flow_records_of_unknown_formats_are_kept() -> None:
    from .test_decode_sflow import record

    line = complete_lines()[0]
    records = [sampled_ip(line["bytes"], 6, line["src_addr"], line["dst_addr"], 1, 2, 0, 0),
               record(7, b"\xaa\xbb\xcc\xdd", enterprise=9)]
    docs = native_documents([datagram("10.1.1.1", [flow_sample(records)])])
    assert docs[0]["sflow"]["records"] == [{"enterprise": 9, "format": 7, "data": "aabbccdd"}]
