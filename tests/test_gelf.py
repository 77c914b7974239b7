"""GELF decoding (decode/gelf.py) and GELF → ECS (normalize/gelf.py), pure functions."""

from __future__ import annotations

import gzip
import json
import os
import zlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netmeta.decode.gelf import (
    MAX_CHUNKS,
    GelfError,
    NullFramer,
    Reassembler,
    chunk,
    inflate,
    parse,
)
from netmeta.decode.syslog import FrameError
from netmeta.event import flatten
from netmeta.normalize import gelf
from netmeta.normalize.packetbeat import TREE, Leaf

from .conftest import SHARED

SEED = SHARED / "seeds" / "packetbeat-graylog-illuminate.md"


def seed_message() -> bytes:
    """The pack's log example: the GELF form Graylog stores of a Packetbeat DNS event."""
    lines = [ln for ln in SEED.read_text().splitlines() if ln.startswith('{"timestamp"')]
    assert len(lines) == 1
    return lines[0].encode()


# ---------------------------------------------------------------- the seed example

# What the example normalizes to, field by field: Packetbeat's ECS event as it was before
# Graylog flattened it, stored as the network_traffic integration stores it.
SEED_ECS: dict[str, Any] = {
    "@timestamp": "2024-02-14T21:18:29.782Z",
    "agent.ephemeral_id": "1a6a4861-3672-4794-ad48-fa7f6ce9e17c",
    "agent.id": "0d245eab-3205-4f95-8b23-2878569f4dbd",
    "agent.name": "ip-172-31-71-138.ec2.internal", "agent.type": "packetbeat",
    "agent.version": "8.12.1",
    "client.bytes": 50, "client.ip": "172.31.71.138", "client.port": 46704,
    "cloud.account.id": "335344888946", "cloud.availability_zone": "us-east-1e",
    "cloud.image.id": "ami-0aa7d40eeae50c9a9", "cloud.instance.id": "i-01cd7cd147686ddca",
    "cloud.machine.type": "t2.micro", "cloud.provider": "aws", "cloud.region": "us-east-1",
    "cloud.service.name": "EC2",
    "data_stream.dataset": "network_traffic.dns", "data_stream.namespace": "default",
    "data_stream.type": "logs",
    "destination.bytes": 66, "destination.ip": "172.31.0.2", "destination.port": 53,
    "dns.additionals_count": 0, "dns.answers_count": 1, "dns.authorities_count": 0,
    "dns.answers": [{"name": "dynamodb.us-east-1.amazonaws.com", "ttl": 4,
                     "data": "3.218.180.17", "type": "A", "class": "IN"}],
    "dns.flags.authentic_data": False, "dns.flags.authoritative": False,
    "dns.flags.checking_disabled": False, "dns.flags.recursion_available": True,
    "dns.flags.recursion_desired": True, "dns.flags.truncated_response": False,
    "dns.id": 2180, "dns.op_code": "QUERY", "dns.question.class": "IN",
    "dns.question.etld_plus_one": "dynamodb.us-east-1.amazonaws.com",
    "dns.question.name": "dynamodb.us-east-1.amazonaws.com",
    "dns.question.registered_domain": "dynamodb.us-east-1.amazonaws.com",
    # the example's key is "_packetbeatdns_question_top_level_domain" (no "_"): accepted
    "dns.question.top_level_domain": "us-east-1.amazonaws.com",
    "dns.question.type": "A", "dns.resolved_ip": ["3.218.180.17"],
    "dns.response_code": "NOERROR", "dns.type": "answer",
    "ecs.version": "8.0.0",
    "event.category": ["network"], "event.dataset": "network_traffic.dns",
    "event.duration": 1717000, "event.end": "2024-02-14T21:18:29.784Z", "event.kind": "event",
    "event.start": "2024-02-14T21:18:29.782Z", "event.type": ["connection", "protocol"],
    "host.architecture": "x86_64", "host.containerized": False,
    "host.hostname": "ip-172-31-71-138.ec2.internal",
    "host.id": "0e7b0d07010a489ba9e1a74d38cc23de",
    "host.ip": ["172.31.71.138", "fe80::4fb:50ff:fe7e:81b1"], "host.mac": ["06-FB-50-7E-81-B1"],
    "host.name": "ip-172-31-71-138.ec2.internal", "host.os.codename": "Karoo",
    "host.os.family": "redhat", "host.os.kernel": "5.10.209-198.812.amzn2.x86_64",
    "host.os.name": "Amazon Linux", "host.os.platform": "amzn", "host.os.type": "linux",
    "host.os.version": "2",
    "method": "QUERY",
    "network.bytes": 116, "network.community_id": "1:n2oEH592UySL71Gm21GwZS2Jiwo=",
    "network.direction": "egress", "network.protocol": "dns", "network.transport": "udp",
    "network.type": "ipv4",
    "query": "class IN, type A, dynamodb.us-east-1.amazonaws.com",
    "related.ip": ["172.31.71.138", "172.31.0.2", "3.218.180.17"],
    "resource": "dynamodb.us-east-1.amazonaws.com",
    "server.bytes": 66, "server.ip": "172.31.0.2", "server.port": 53,
    "source.bytes": 50, "source.ip": "172.31.71.138", "source.port": 46704,
    "status": "OK", "type": "dns",
    # "_packetbeat_dn_header_flags" names no known field (dns.header_flags is meant, but the
    # key is not resolved by guessing): kept as it came
    "gelf.packetbeat_dn_header_flags": "[RD, RA]",
}
SEED_GIM: dict[str, Any] = {
    "gim_event_type_code": "140200", "gim_event_class": "protocol",
    "gim_event_category": "name resolution",
    "gim_event_subcategory": "name resolution.dns answer", "gim_event_type": "dns response",
    "query_request": "dynamodb.us-east-1.amazonaws.com", "query_record_type": "A",
    "query_record_type_code": "1", "query_class": "IN", "query_result": "NOERROR",
    "query_result_code": "0", "query_response": ["3.218.180.17"],
    "source_ip": "172.31.71.138", "source_port": 46704, "source_bytes_sent": 50,
    "source_reference": "172.31.71.138",
    "destination_ip": "172.31.0.2", "destination_port": 53, "destination_bytes_sent": 66,
    "destination_reference": "172.31.0.2",
    "network_transport": "udp", "network_protocol": "udp", "network_application": "dns",
    "network_ip_version": "4", "network_bytes": 116, "network_direction": "outbound",
    "network_community_id": "1:n2oEH592UySL71Gm21GwZS2Jiwo=",
    "event_source": "ip-172-31-71-138.ec2.internal", "event_source_product": "packetbeat",
    "event_observer_hostname": "ip-172-31-71-138.ec2.internal",
    "event_observer_ip": ["172.31.71.138", "fe80::4fb:50ff:fe7e:81b1"],
    "event_start": "2024-02-14T21:18:29.782Z", "event_end": "2024-02-14T21:18:29.784Z",
    "event_duration": 1717000,
}


def test_seed_example_normalizes_to_the_expected_ecs_and_gim_fields() -> None:
    out = gelf.normalize_messages([(seed_message(), "172.31.71.138:40000")])
    assert out.failures == []
    got = flatten(out.docs[0])
    want = {**SEED_ECS, **SEED_GIM}
    for key, value in want.items():  # field by field, types included
        assert key in got, key
        assert got[key] == value and type(got[key]) is type(value), (key, got[key], value)
    assert set(got) - set(want) == set()


def test_seed_example_compressed_gives_the_same_document() -> None:
    raw = seed_message()
    plain = gelf.normalize_messages([(raw, "p")]).docs
    assert gelf.normalize_messages([(zlib.compress(raw), "p")]).docs == plain
    assert gelf.normalize_messages([(gzip.compress(raw), "p")]).docs == plain


# ---------------------------------------------------------------- unflattening

@pytest.mark.parametrize(("key", "path"), [
    ("dns_question_name", ("dns", "question", "name")),
    ("dns_response_code", ("dns", "response_code")),
    ("dns_answers_count", ("dns", "answers_count")),
    ("dns_answers_0_name", ("dns", "answers", 0, "name")),
    ("dns_answers_12_ttl", ("dns", "answers", 12, "ttl")),
    ("dns_question_top_level_domain", ("dns", "question", "top_level_domain")),
    ("network_community_id", ("network", "community_id")),
    ("http_response_status_code", ("http", "response", "status_code")),
    ("http_request_headers_content-length", ("http", "request", "headers", "content-length")),
    ("http_request_headers_x_forwarded_for", ("http", "request", "headers",
                                              "x_forwarded_for")),
    ("@metadata_beat", ("@metadata", "beat")),
    ("@timestamp", ("@timestamp",)),
    ("event_dataset", ("event", "dataset")),
    ("cloud_instance_id", ("cloud", "instance", "id")),
    ("tls_client_server_name", ("tls", "client", "server_name")),
    ("flow_final", ("flow", "final")),
    ("type", ("type",)),
])
def test_keys_resolve_against_known_fields(key: str, path: tuple[Any, ...]) -> None:
    found = gelf.resolve(key)
    assert found is not None and found[0] == path


@pytest.mark.parametrize("key", ["dn_header_flags", "dns_answers_x_name", "dns", "dns_question",
                                 "dns__id", "", "_", "dns_answers_0", "nope_nothing"])
def test_unknown_keys_are_not_guessed(key: str) -> None:
    assert gelf.resolve(key) is None


def test_values_are_typed_per_field() -> None:
    msg = {"short_message": "-", "host": "h", "_packetbeat_agent_type": "packetbeat",
           "_packetbeat_type": "flow", "_packetbeat_flow_final": "true",
           "_packetbeat_source_port": "53", "_packetbeat_event_type": "[connection, end]",
           "_packetbeat_related_ip": "[]", "_packetbeat_host_os_version": "2",
           "_packetbeat_dns_answers_1_ttl": "60", "_packetbeat_dns_answers_3_ttl": "61",
           "_packetbeat_event_duration": 1.5e6}
    doc = gelf.to_ecs(msg)
    assert doc["flow"]["final"] is True
    assert doc["source"]["port"] == 53
    assert doc["event"]["type"] == ["connection", "end"]
    assert doc["related"]["ip"] == []
    assert doc["host"] == {"os": {"version": "2"}, "name": "h"}
    assert doc["dns"]["answers"] == [{"ttl": 60}, {"ttl": 61}]  # holes closed
    assert doc["event"]["duration"] == 1500000


def test_gelf_own_fields_go_to_ecs_places() -> None:
    msg = {"version": "1.1", "host": "web1", "short_message": "disk full",
           "full_message": "disk full\nstack", "timestamp": 1707945509.782, "level": 3,
           "facility": "kern", "file": "a.c", "line": 7, "_app": "x", "_id": "ignored"}
    doc = gelf.to_ecs(msg)
    assert doc == {"@timestamp": "2024-02-14T21:18:29.782Z", "host": {"name": "web1"},
                   "message": "disk full",
                   "gelf": {"app": "x", "full_message": "disk full\nstack"},
                   "log": {"syslog": {"severity": {"code": 3, "name": "error"},
                                      "facility": {"name": "kern"}},
                           "origin": {"file": {"name": "a.c", "line": 7}}}}


def test_beats_input_without_type_prefix() -> None:
    msg = {"short_message": "-", "host": "h", "_beats_type": "packetbeat",
           "_dns_question_name": "example.com", "_agent_type": "packetbeat"}
    doc = gelf.to_ecs(msg)
    assert doc["dns"]["question"]["name"] == "example.com"
    assert doc["gelf"] == {"beats_type": "packetbeat"}


# Graylog's flattening, as the tests understand it: for the round trip below
def graylog_flatten(doc: dict[str, Any], prefix: str = "_packetbeat_") -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(v: Any, key: str) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(x, f"{key}_{k}" if key else k)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for i, x in enumerate(v):
                walk(x, f"{key}_{i}")
        elif isinstance(v, list):
            out[prefix + key] = "[" + ", ".join(str(x) for x in v) + "]"
        elif isinstance(v, bool):
            out[prefix + key] = "true" if v else "false"
        else:
            out[prefix + key] = v
    walk(doc, "")
    return out


def _leaves(tree: dict[str, Any], prefix: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    out = []
    for k, node in tree.items():
        if isinstance(node, Leaf) and node.base != "flattened":
            out.append((*prefix, k, node))
        elif isinstance(node, dict):
            out += _leaves(node, (*prefix, k))
    return out


LEAVES = [x for x in _leaves(TREE) if x[0] not in ("@metadata",)]
_VALUES = {"keyword": st.text(alphabet="abcXYZ019.-", min_size=1, max_size=8),
           "long": st.integers(-2**40, 2**40), "double": st.floats(-1e6, 1e6).map(
               lambda f: round(f, 3) + 0.5),
           "boolean": st.booleans(), "ip": st.sampled_from(["10.0.0.1", "2001:db8::1"]),
           "date": st.just("2024-02-14T21:18:29.782Z")}


@st.composite
def ecs_docs(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for leaf in draw(st.lists(st.sampled_from(LEAVES), max_size=12, unique=True)):
        *path, node = leaf
        value = draw(_VALUES[node.base])
        if node.is_list:
            value = draw(st.lists(_VALUES[node.base], min_size=1, max_size=3))
        cur = doc
        for p in path[:-1]:
            nxt = cur.setdefault(p, {})
            if not isinstance(nxt, dict):
                break
            cur = nxt
        else:
            if path[-1] not in cur:
                cur[path[-1]] = value
    return doc


@settings(max_examples=300, deadline=None)
@given(ecs_docs())
def test_unflattening_undoes_graylogs_flattening(doc: dict[str, Any]) -> None:
    assert gelf.unflatten(graylog_flatten(doc)) == doc


# ---------------------------------------------------------------- payloads

def test_inflate_each_encoding() -> None:
    raw = b'{"short_message":"x"}'
    assert inflate(raw) == inflate(zlib.compress(raw)) == inflate(gzip.compress(raw)) == raw


@pytest.mark.parametrize(("payload", "why"), [
    (b"\x78\x9cnot zlib", "zlib payload does not decompress"),
    (b"\x1f\x8bnot gzip", "gzip payload does not decompress"),
    (zlib.compress(b'{"short_message":"x"}')[:-6], "cut short"),
    (zlib.compress(b" " * 100_000), "inflates to more than"),
    (b"[1, 2]", "a GELF message is a JSON object"),
    (b"{nope", "not JSON"),
    (b'{"host":"h"}', "without short_message"),
    (b'{"short_message":""}', "without short_message"),
    (b"", "not JSON"),
])
def test_bad_payloads_say_why(payload: bytes, why: str) -> None:
    with pytest.raises(GelfError, match=why):
        parse(payload, max_message=50_000)


def test_plain_payload_over_the_limit() -> None:
    with pytest.raises(GelfError, match="over the limit"):
        parse(b'{"short_message":"' + b"x" * 2000 + b'"}', max_message=1024)


# ---------------------------------------------------------------- chunks

MSG = json.dumps({"short_message": "x" * 5000, "host": "h"}).encode()


def test_chunks_in_any_order_with_duplicates() -> None:
    r = Reassembler()
    parts = chunk(MSG, b"ABCDEFGH", 600)
    assert len(parts) > 5
    order = [*reversed(parts[1:]), parts[3], parts[2], parts[0]]
    done: list[bytes] = []
    for p in order:
        complete, errors = r.add(p, "s", 0.0)
        assert errors == []
        done += complete
    assert done == [MSG]
    assert r.stats.duplicates == 2 and r.pending == 0 and r.total == 0


def test_missing_chunk_times_out_as_a_failure() -> None:
    r = Reassembler(timeout=5.0)
    parts = chunk(MSG, b"ABCDEFGH", 600)
    for p in parts[:-1]:
        assert r.add(p, "s", 0.0) == ([], [])
    assert r.expire(4.9) == []
    errors = r.expire(5.1)
    assert len(errors) == 1 and "incomplete after 5 s" in errors[0].reason
    assert f"{len(parts) - 1} of {len(parts)} chunks" in errors[0].reason
    assert errors[0].head.startswith(b'{"short_message"')
    assert r.pending == 0 and r.total == 0


def test_same_message_id_from_two_senders_does_not_mix() -> None:
    r = Reassembler()
    a, b = chunk(b'{"short_message":"aaaa"}', b"12345678", 20), \
        chunk(b'{"short_message":"bbbb"}', b"12345678", 20)
    out = []
    for x, y in zip(a, b, strict=True):
        out += r.add(x, "A", 0)[0] + r.add(y, "B", 0)[0]
    assert sorted(out) == [b'{"short_message":"aaaa"}', b'{"short_message":"bbbb"}']


@pytest.mark.parametrize(("datagram", "why"), [
    (b"\x1e\x0f1234", "shorter than its 12-byte header"),
    (b"\x1e\x0f12345678\x00\x00x", "chunk count 0"),
    (b"\x1e\x0f12345678\x00\x81x", f"chunk count 129 (1 to {MAX_CHUNKS})"),
    (b"\x1e\x0f12345678\x05\x05x", "chunk 5 of a message of 5 chunks"),
    (b"", "empty datagram"),
])
def test_bad_chunks(datagram: bytes, why: str) -> None:
    done, errors = Reassembler().add(datagram, "s", 0)
    assert done == [] and len(errors) == 1 and why in errors[0].reason


def test_count_changing_midway_drops_the_message() -> None:
    r = Reassembler()
    r.add(b"\x1e\x0f12345678\x00\x03a", "s", 0)
    _, errors = r.add(b"\x1e\x0f12345678\x01\x04b", "s", 0)
    assert "an earlier one said 3" in errors[0].reason and r.pending == 0


def test_memory_limits_per_sender_and_total() -> None:
    r = Reassembler(max_message=10_000, max_per_sender=3000, max_total=5000)
    # sender A fills its share with incomplete messages: the oldest gives way
    for i in range(4):
        r.add(b"\x1e\x0f" + f"A{i:07d}".encode() + b"\x00\x02" + b"a" * 1000, "A", i)
    assert r.pending == 3 and r._per_sender["A"] == 3000
    assert r.stats.refused == 1
    # B's messages push out the oldest of anyone once the total is full
    _, errors = r.add(b"\x1e\x0fB0000000\x00\x02" + b"b" * 2500, "B", 9)
    assert errors and "memory limit" in errors[0].reason
    assert r.total <= 5000
    # one message bigger than max_message
    big = Reassembler(max_message=1500)
    big.add(b"\x1e\x0fC0000000\x00\x02" + b"c" * 1000, "C", 0)
    _, errors = big.add(b"\x1e\x0fC0000000\x01\x02" + b"c" * 1000, "C", 0)
    assert "is over 1500 bytes" in errors[0].reason and big.total == 0


def test_too_many_incomplete_messages() -> None:
    r = Reassembler(max_pending=10)
    for i in range(11):
        _, errors = r.add(b"\x1e\x0f" + f"{i:08d}".encode() + b"\x00\x02x", "s", i)
    assert r.pending == 10 and "too many incomplete messages" in errors[0].reason


def test_chunk_refuses_what_gelf_cannot_carry() -> None:
    with pytest.raises(ValueError):
        chunk(b"x" * 200_000, b"12345678", 1000)
    with pytest.raises(ValueError):
        chunk(b"x", b"1234", 1000)


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=40).map(lambda b: b"\x1e\x0f" + b) | st.binary(max_size=40),
                max_size=30), st.floats(0, 20))
def test_reassembler_never_raises_and_frees_what_it_drops(datagrams: list[bytes],
                                                          later: float) -> None:
    r = Reassembler(timeout=1.0, max_per_sender=200, max_total=300)
    for i, d in enumerate(datagrams):
        done, errors = r.add(d, f"s{i % 3}", i * 0.1)
        assert all(isinstance(e, GelfError) for e in errors)
        assert r.total <= 300
    r.expire(len(datagrams) * 0.1 + 1.1 + later)
    assert r.pending == 0 and r.total == 0 and r._per_sender == {}


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200) | st.binary(max_size=60).map(zlib.compress)
       | st.binary(max_size=60).map(gzip.compress))
def test_parse_fails_only_with_gelf_errors(payload: bytes) -> None:
    try:
        parse(payload)
    except GelfError as e:
        assert e.reason


json_values = st.recursive(st.none() | st.booleans() | st.integers(-2**63, 2**63 - 1)
                           | st.floats(allow_nan=False) | st.text(max_size=10),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(
                               st.text(max_size=5), c, max_size=3), max_leaves=8)
keys = st.sampled_from(["_packetbeat_" + "_".join(x) for x in
                        [("dns", "answers", "0", "ttl"), ("source", "ip"), ("event", "type"),
                         ("host",), ("dns",), ("@timestamp",), ("dns", "answers", "1"),
                         ("http", "request", "headers", "a"), ("flow", "final")]]) \
    | st.text(max_size=30)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(keys, json_values, max_size=8), json_values)
def test_unflattener_and_normalizer_never_crash(extra: dict[str, Any], short: Any) -> None:
    msg = {"short_message": short, "host": "h", "timestamp": 1.0, "level": 3, **extra}
    payload = json.dumps(msg).encode()
    out = gelf.normalize_messages([(payload, "fuzz")])
    assert len(out.docs) + len(out.failures) == 1


def test_resolve_random_keys_never_raises() -> None:
    for _ in range(2000):
        key = "_".join(os.urandom(3).hex()[: 1 + b % 6] for b in os.urandom(4))
        gelf.resolve(key)


# ---------------------------------------------------------------- TCP frames

def test_null_framer_across_reads() -> None:
    f = NullFramer(max_size=100)
    got = [*f.feed(b'{"a":1}\x00{"b"'), *f.feed(b':2}\x00\x00'), *f.feed(b'{"c":3}')]
    assert got == [b'{"a":1}', b'{"b":2}']
    assert list(f.flush()) == [b'{"c":3}']


def test_null_framer_oversized_frame_is_skipped_to_the_next_null() -> None:
    f = NullFramer(max_size=10)
    got = [*f.feed(b"x" * 8), *f.feed(b"y" * 8), *f.feed(b"zz\x00ok\x00"),
           *f.feed(b"a" * 30 + b"\x00")]
    assert got[0] == FrameError("frame longer than 10 bytes", 18)
    assert got[1] == b"ok"
    assert isinstance(got[2], FrameError) and got[2].size == 30
    assert list(f.feed(b"q" * 20)) == []
    assert list(f.feed(b"")) == []
    assert [type(x) for x in f.flush()] == [FrameError]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=50), max_size=20))
def test_null_framer_keeps_every_frame_whatever_the_reads(reads: list[bytes]) -> None:
    f = NullFramer(max_size=1 << 20)
    stream = b"".join(reads)
    got = [x for r in reads for x in f.feed(r)] + list(f.flush())
    want = [p for p in stream.split(b"\x00") if p.strip()]
    assert got == want
