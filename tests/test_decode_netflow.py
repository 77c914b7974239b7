"""NetFlow v5 / v9 / IPFIX decoders: conformance with Elastic's test data, hand-built
datagrams, template state, and hostile input (hypothesis).

Conformance data (../shared/peer/netflow/beats): every case of dat_tests.yaml decodes without
decoder errors, and the raw ``netflow.*`` values of the three golden files match.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netmeta.decode import netflow
from netmeta.decode.netflow import DecodeError, decode, decode_many
from netmeta.decode.templates import (
    REVERSE_PEN,
    Batch,
    Decoded,
    Header,
    TemplateKey,
    TemplateState,
    element,
)

EXPORTER = "192.0.2.1:4444"  # the one session dat_tests.yaml feeds


def beats(peer: Path) -> Path:
    return peer / "netflow" / "beats"


def feed(files: list[Path], state: TemplateState | None = None) -> list[Decoded]:
    state = TemplateState() if state is None else state
    return [decode(f.read_bytes(), EXPORTER, state, 0.0) for f in files]


def data_sets_in(payload: bytes) -> int:
    """Data sets (id >= 256) a v9 / IPFIX datagram carries, read from set headers alone."""
    version = struct.unpack_from(">H", payload)[0]
    if version not in (9, 10):
        return 0
    pos, n = (20 if version == 9 else 16), 0
    while pos + 4 <= len(payload):
        set_id, length = struct.unpack_from(">HH", payload, pos)
        if length < 4:
            break
        n += set_id >= 256
        pos += length
    return n


# ---------------------------------------------------------------- conformance: dat cases

def test_every_dat_case_decodes(peer: Path) -> None:
    base = beats(peer)
    cases = yaml.safe_load((base / "dat_tests.yaml").read_text())["tests"]
    failed: dict[str, Any] = {}
    for name, case in cases.items():
        state = TemplateState()
        files = [base / "dat" / f for f in case["files"]]
        results = feed(files, state)
        errors = [e for d in results for e in d.errors]
        rows = sum(d.records + sum(b.records.num_rows for b in d.options) for d in results)
        data_sets = sum(data_sets_in(f.read_bytes()) for f in files)
        # a case whose data sets all wait for a template never sent ("missing templates")
        # decodes no record, but its sets are held, not lost
        if errors or (data_sets and not rows and not state.held):
            failed[name] = errors or "no records"
    decoded = len(cases) - len(failed)
    print(f"\nNetFlow/IPFIX dat cases decoded without errors: {decoded} of {len(cases)}")
    assert len(cases) == 44
    assert not failed, failed


# ---------------------------------------------------------------- conformance: golden files

GOLDEN = ["Netflow-9-valid-01", "Netflow-9-field-layer2segmentid", "IPFIX-Barracuda-firewall"]
MATCHED: dict[str, set[str]] = {}


def _render(v: Any) -> Any:
    """A decoded value as the golden document shows it."""
    if isinstance(v, bytes):
        import base64
        return base64.b64encode(v).decode()
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return v


def _exporter(h: Header) -> dict[str, Any]:
    return {"address": h.exporter, "source_id": h.domain, "version": h.version,
            "timestamp": dt.datetime.fromtimestamp(h.export_time, dt.UTC)
            .strftime("%Y-%m-%dT%H:%M:%SZ"),
            "uptime_millis": h.sys_uptime or 0}  # IPFIX has none: Elastic shows 0


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_raw_values(peer: Path, name: str) -> None:
    base = beats(peer)
    golden = json.loads((base / "golden" / f"{name}.golden.json").read_text())
    files = yaml.safe_load((base / "dat_tests.yaml").read_text())["tests"][
        golden["test_name"]]["files"]
    rows: list[tuple[dict[str, Any], Header]] = []
    for d in feed([base / "dat" / f for f in files]):
        for b in d.data:
            rows += [(r, b.headers[i]) for r, i in zip(b.records.to_pylist(), b.rows,
                                                        strict=True)]
    events = [e["Fields"]["netflow"] for e in golden["events"]]
    assert len(rows) == len(events)
    matched = 0
    for want, (row, header) in zip(events, rows, strict=True):
        for key, value in want.items():
            if key == "type":  # netflow_flow / netflow_options: the normalizer's call
                continue
            if key == "exporter":
                assert _exporter(header) == value
                MATCHED.setdefault(name, set()).update(f"exporter.{k}" for k in value)
                matched += len(value)
                continue
            assert _render(row.get(key, "<missing>")) == value, key
            MATCHED.setdefault(name, set()).add(key)
            matched += 1
    print(f"\n{name}: {matched} golden netflow.* values matched over {len(events)} events; "
          f"fields: {', '.join(sorted(MATCHED[name]))}")


# ---------------------------------------------------------------- builders

def v5_datagram(records: list[tuple], *, count: int | None = None, sequence: int = 7) -> bytes:
    head = struct.pack(">HHIIIIBBH", 5, len(records) if count is None else count, 123456,
                       1_600_000_000, 500_000_000, sequence, 1, 2, 0x4064)
    body = b"".join(struct.pack(">4s4s4sHHIIIIHHBBBBHHBBH", *r) for r in records)
    return head + body


def ipfix_message(*sets: bytes, domain: int = 1, sequence: int = 0,
                  export_time: int = 1_600_000_000) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), export_time, sequence, domain) + body


def a_set(set_id: int, body: bytes, pad: int = 0) -> bytes:
    return struct.pack(">HH", set_id, 4 + len(body) + pad) + body + b"\0" * pad


def specs(fields: list[tuple[int, int] | tuple[int, int, int]]) -> bytes:
    out = b""
    for f in fields:
        if len(f) == 3:
            out += struct.pack(">HHI", f[0] | 0x8000, f[1], f[2])
        else:
            out += struct.pack(">HH", f[0], f[1])
    return out


def ipfix_template(tid: int, fields: list, scope: int | None = None) -> bytes:
    if scope is None:
        return struct.pack(">HH", tid, len(fields)) + specs(fields)
    return struct.pack(">HHH", tid, len(fields), scope) + specs(fields)


def v9_datagram(*flowsets: bytes, source_id: int = 9, sequence: int = 1,
                uptime: int = 50_000) -> bytes:
    body = b"".join(flowsets)
    return struct.pack(">HHIIII", 9, 1, uptime, 1_600_000_000, sequence, source_id) + body


FLOW = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 8)]  # addresses, ports, protocol, bytes


def flow_record(i: int) -> bytes:
    return struct.pack(">4s4sHHBQ", bytes([10, 0, 0, i]), bytes([192, 0, 2, i]), 1000 + i, 443,
                       6, 100 * i)


def only(batches: list[Batch]) -> pa.Table:
    assert len(batches) == 1, batches
    return batches[0].records


# ---------------------------------------------------------------- NetFlow v5

def test_v5_round_trip() -> None:
    records = [(bytes([10, 1, 2, i]), bytes([8, 8, 4, i]), bytes([10, 0, 0, 1]), 3, 4,
                i + 1, 100 * (i + 1), 1000 + i, 2000 + i, 40000 + i, 53, 0, 0x12, 17, 8,
                64512, 15169, 24, 16, 0) for i in range(30)]
    d = decode(v5_datagram(records), EXPORTER, TemplateState(), 0.0)
    assert not d.errors
    h = d.header
    assert h is not None
    assert (h.version, h.count, h.sys_uptime, h.export_time, h.export_nanos, h.sequence,
            h.engine_type, h.engine_id, h.sampling_interval) == (
        5, 30, 123456, 1_600_000_000, 500_000_000, 7, 1, 2, 0x4064)
    t = only(d.data)
    assert t.num_rows == 30
    row = t.to_pylist()[5]
    assert row == {
        "source_ipv4_address": "10.1.2.5", "destination_ipv4_address": "8.8.4.5",
        "ip_next_hop_ipv4_address": "10.0.0.1", "ingress_interface": 3, "egress_interface": 4,
        "packet_delta_count": 6, "octet_delta_count": 600, "flow_start_sys_up_time": 1005,
        "flow_end_sys_up_time": 2005, "source_transport_port": 40005,
        "destination_transport_port": 53, "tcp_control_bits": 0x12, "protocol_identifier": 17,
        "ip_class_of_service": 8, "bgp_source_as_number": 64512,
        "bgp_destination_as_number": 15169, "source_ipv4_prefix_length": 24,
        "destination_ipv4_prefix_length": 16}
    assert t.schema.field("octet_delta_count").type == pa.uint64()
    assert t.schema.field("ingress_interface").type == pa.int64()


def test_v5_count_that_lies_is_reported() -> None:
    rec = (b"\1\2\3\4", b"\5\6\7\x08", b"\0" * 4, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 6, 0, 0, 0,
           0, 0, 0)
    d = decode(v5_datagram([rec] * 3, count=5), EXPORTER, TemplateState(), 0.0)
    assert only(d.data).num_rows == 3
    assert d.errors and "announces 5" in d.errors[0][1]


# ---------------------------------------------------------------- templates and types

def test_ipfix_types_enterprise_padding_and_several_sets() -> None:
    fields = [(8, 4), (27, 16), (56, 6), (1, 4), (31, 3), (276, 1), (311, 8), (152, 8),
              (154, 8), (150, 4), (82, 8), (210, 3), (4321, 8, 41916), (77, 2, 99999),
              (32000, 2), (1, 4, REVERSE_PEN)]
    ts_ms = 1_600_000_000_123
    ntp = (1_600_000_000 + 2208988800) << 32 | (1 << 31)  # .5 s
    rec = struct.pack(">4s16s6sI3sBdQQI8s3sQHHI", b"\xc0\xa8\x01\x02",
                      b"\0" * 10 + b"\xff\xff" + b"\x01\x02\x03\x04", b"\x00\x11\x22\xaa\xbb\xcc",
                      4_000_000_000, b"\x01\x02\x03", 2, 0.25, ts_ms, ntp, 1_600_000_000,
                      b"eth0\0\0\0\0", b"\0\0\0", 7, 0xBEEF, 5, 99)
    msg = ipfix_message(a_set(2, ipfix_template(300, fields), pad=3),
                        a_set(300, rec + rec, pad=2), a_set(300, rec))
    d = decode(msg, EXPORTER, TemplateState(), 0.0)
    assert not d.errors and d.templates == 1
    t = only(d.data)
    assert t.num_rows == 3
    row = t.to_pylist()[0]
    assert row["source_ipv4_address"] == "192.168.1.2"
    assert row["source_ipv6_address"] == "1.2.3.4"  # IPv4-mapped, as Go prints it
    assert row["source_mac_address"] == "00:11:22:aa:bb:cc"
    assert row["octet_delta_count"] == 4_000_000_000  # unsigned64 in 4 bytes
    assert row["flow_label_ipv6"] == 0x010203  # 3-byte reduced-size encoding
    assert row["data_records_reliability"] is False  # 2 is false (RFC 7011 6.1.5)
    assert row["sampling_probability"] == 0.25
    assert row["flow_start_milliseconds"] == dt.datetime(2020, 9, 13, 12, 26, 40, 123000)
    assert row["flow_start_microseconds"] == dt.datetime(2020, 9, 13, 12, 26, 40, 500000)
    assert row["flow_start_seconds"] == dt.datetime(2020, 9, 13, 12, 26, 40)
    assert row["interface_name"] == "eth0"
    assert row["padding_octets"] == b"\0\0\0"
    assert row["viptela_vpn_id"] == 7
    assert row["pen99999_field_77"] == b"\xbe\xef"  # unknown: kept by id, as bytes
    assert row["field_32000"] == b"\x00\x05"
    assert row["reverse_octet_delta_count"] == 99
    types = {f.name: f.type for f in t.schema}
    assert types["flow_start_microseconds"] == pa.timestamp("us")
    assert types["octet_delta_count"] == pa.uint64()
    assert types["flow_label_ipv6"] == pa.int64()


def test_variable_length_fields_one_and_three_byte_lengths() -> None:
    fields = [(8, 4), (82, 0xFFFF), (95, 0xFFFF), (130, 0xFFFF, 5951)]
    long_name = b"x" * 300
    rec1 = b"\x0a\0\0\x01" + b"\x04eth1" + b"\xff\x01\x2c" + long_name + b"\x02ab"
    rec2 = b"\x0a\0\0\x02" + b"\x00" + b"\x03\x01\x02\x03" + b"\xff\x00\x03/ok"
    d = decode(ipfix_message(a_set(2, ipfix_template(400, fields)),
                             a_set(400, rec1 + rec2, pad=1)), EXPORTER, TemplateState(), 0.0)
    assert not d.errors
    rows = only(d.data).to_pylist()
    assert rows == [
        {"source_ipv4_address": "10.0.0.1", "interface_name": "eth1",
         "application_id": long_name, "netscaler_http_req_url": "ab"},
        {"source_ipv4_address": "10.0.0.2", "interface_name": "",
         "application_id": b"\x01\x02\x03", "netscaler_http_req_url": "/ok"}]


def test_variable_record_cut_off_is_an_error() -> None:
    rec = b"\x0a\0\0\x01" + b"\x09eth"  # announces 9 bytes, has 3
    d = decode(ipfix_message(a_set(2, ipfix_template(401, [(8, 4), (82, 0xFFFF)])),
                             a_set(401, rec)), EXPORTER, TemplateState(), 0.0)
    assert d.records == 0 and "cut off" in d.errors[0][1]


def test_data_before_template_is_held_then_decoded() -> None:
    state = TemplateState()
    early = decode(ipfix_message(a_set(256, flow_record(1) + flow_record(2)), sequence=0,
                                 export_time=1_600_000_001), EXPORTER, state, 100.0)
    assert early.held == 1 and early.records == 0 and not early.errors
    assert len(state.held) == 1
    later = decode(ipfix_message(a_set(2, ipfix_template(256, FLOW)), a_set(256, flow_record(3)),
                                 sequence=2, export_time=1_600_000_005), EXPORTER, state, 101.0)
    assert not later.errors and not state.held
    batch = later.data[0]
    assert batch.records.column("source_ipv4_address").to_pylist() == [
        "10.0.0.1", "10.0.0.2", "10.0.0.3"]
    # held records keep the header of the datagram they came in
    assert batch.header_values("export_time").tolist() == [1_600_000_001, 1_600_000_001,
                                                           1_600_000_005]


def test_held_sets_expire_and_overflow_reported() -> None:
    state = TemplateState(max_held_sets=2, held_ttl=10.0)
    for i in range(3):
        d = decode(ipfix_message(a_set(256 + i, flow_record(i))), EXPORTER, state, 0.0)
    assert [h.reason for h in d.dropped] == ["overflow"]
    assert d.dropped[0].key == TemplateKey(EXPORTER, 1, 256)
    d = decode(ipfix_message(), EXPORTER, state, 11.0)
    assert sorted(h.key.template_id for h in d.dropped) == [257, 258]
    assert {h.reason for h in d.dropped} == {"expired"}
    assert not state.held


def test_held_bytes_are_bounded() -> None:
    state = TemplateState(max_held_bytes=1000)
    dropped = 0
    for i in range(20):
        d = decode(ipfix_message(a_set(300, b"\1" * 400), sequence=i), EXPORTER, state, 0.0)
        dropped += len(d.dropped)
    assert sum(len(h.body) for h in state.held) <= 1000
    assert dropped == 18


def test_template_withdrawal() -> None:
    state = TemplateState()
    decode(ipfix_message(a_set(2, ipfix_template(256, FLOW) + ipfix_template(257, FLOW))),
           EXPORTER, state, 0.0)
    d = decode(ipfix_message(a_set(2, struct.pack(">HH", 256, 0))), EXPORTER, state, 0.0)
    assert d.withdrawn == 1
    d = decode(ipfix_message(a_set(256, flow_record(1)), a_set(257, flow_record(2))),
               EXPORTER, state, 0.0)
    assert d.held == 1 and d.records == 1
    # template id 2 with no fields withdraws every template of the domain (RFC 7011 8.1)
    d = decode(ipfix_message(a_set(2, struct.pack(">HH", 2, 0))), EXPORTER, state, 0.0)
    assert d.withdrawn == 1 and state.get(TemplateKey(EXPORTER, 1, 257)) is None


def test_ipfix_options_template_keeps_scope() -> None:
    tpl = ipfix_template(500, [(144, 4), (34, 4), (35, 1)], scope=1)
    rec = struct.pack(">IIB", 3, 1000, 2)
    d = decode(ipfix_message(a_set(3, tpl), a_set(500, rec)), EXPORTER, TemplateState(), 0.0)
    assert not d.errors and not d.data
    batch = d.options[0]
    assert batch.scope_columns == ("exporting_process_id",)
    assert batch.records.to_pylist() == [
        {"exporting_process_id": 3, "sampling_interval": 1000, "sampling_algorithm": 2}]


def test_v9_templates_options_and_padding() -> None:
    state = TemplateState()
    tpl = struct.pack(">HH", 260, len(FLOW)) + specs(FLOW)
    opt = struct.pack(">HHH", 261, 4, 8) + specs([(2, 4)]) + specs([(34, 4), (82, 4)])
    recs = flow_record(1) + flow_record(2)
    d = decode(v9_datagram(a_set(0, tpl), a_set(1, opt, pad=2), a_set(260, recs, pad=2),
                           a_set(261, struct.pack(">II4s", 7, 100, b"ge0\0"))),
               EXPORTER, state, 0.0)
    assert not d.errors and d.templates == 2
    assert only(d.data).num_rows == 2
    assert d.data[0].headers[0].sys_uptime == 50_000
    opts = d.options[0]
    assert opts.scope_columns == ("scope_interface",)
    assert opts.records.to_pylist() == [
        {"scope_interface": 7, "sampling_interval": 100, "interface_name": "ge0"}]


def test_reserved_set_id_and_bad_lengths_are_errors() -> None:
    d = decode(ipfix_message(a_set(7, b"abcd"), a_set(256, b"")), EXPORTER, TemplateState(), 0)
    assert any("reserved" in m for _, m in d.errors)
    d = decode(ipfix_message(struct.pack(">HH", 256, 0) + b"\1\2\3\4"), EXPORTER,
               TemplateState(), 0)
    assert d.errors == [(0, "set 256 has length 0")]
    d = decode(ipfix_message(struct.pack(">HH", 256, 99) + b"\1\2"), EXPORTER, TemplateState(), 0)
    assert "overruns" in d.errors[0][1]


def test_degenerate_templates() -> None:
    state = TemplateState()
    # a field count of 65535 that the set cannot hold
    d = decode(ipfix_message(a_set(2, struct.pack(">HH", 256, 65535) + specs(FLOW))),
               EXPORTER, state, 0.0)
    assert "cut off" in d.errors[0][1] and state.get(TemplateKey(EXPORTER, 1, 256)) is None
    # a v9 template without fields is refused (v9 has no withdrawal)
    d = decode(v9_datagram(a_set(0, struct.pack(">HH", 256, 0))), EXPORTER, state, 0.0)
    assert d.errors == [(0, "template 256 has no fields")]
    # only zero-length fields: learned, but its data cannot become records
    tpl = struct.pack(">HH", 257, 2) + specs([(1, 0), (2, 0)])
    d = decode(v9_datagram(a_set(0, tpl), a_set(257, b"\1\2\3\4")), EXPORTER, state, 0.0)
    assert d.records == 0 and "no field with a length" in d.errors[0][1]
    # zero-length fields between real ones are skipped (RFC 3954 exporters send them)
    tpl = struct.pack(">HH", 258, 3) + specs([(8, 4), (0, 0), (7, 2)])
    d = decode(v9_datagram(a_set(0, tpl), a_set(258, b"\x01\x02\x03\x04\x00\x50")),
               EXPORTER, state, 0.0)
    assert only(d.data).to_pylist() == [{"source_ipv4_address": "1.2.3.4",
                                         "source_transport_port": 80}]


def test_undecodable_datagrams() -> None:
    with pytest.raises(DecodeError):
        decode(b"\x00\x07" + b"\0" * 30, EXPORTER, TemplateState(), 0.0)
    with pytest.raises(DecodeError):
        decode(b"\x00\x0a\x00", EXPORTER, TemplateState(), 0.0)
    d = decode_many([(b"\x00", "a"), (v5_datagram([]), "b")], TemplateState(), 0.0)
    assert d.headers[0] is None and d.headers[1] is not None
    assert [i for i, _ in d.errors] == [0]


def test_decode_many_groups_exporters_and_keeps_redefinitions_apart() -> None:
    state = TemplateState()
    other = [(8, 4), (12, 4)]
    msgs = [
        (ipfix_message(a_set(2, ipfix_template(256, FLOW)), a_set(256, flow_record(1))), "a:1"),
        (ipfix_message(a_set(2, ipfix_template(256, FLOW)), a_set(256, flow_record(2))), "b:1"),
        (ipfix_message(a_set(256, flow_record(3))), "a:1"),
        (ipfix_message(a_set(2, ipfix_template(256, other)), a_set(256, b"\1\1\1\1\2\2\2\2")),
         "a:1"),
    ]
    d = decode_many(msgs, state, 0.0)
    assert not d.errors and len(d.data) == 2
    same, redefined = d.data
    assert same.records.num_rows == 3
    assert same.header_values("exporter").tolist() == ["a:1", "b:1", "a:1"]
    assert redefined.records.column_names == ["source_ipv4_address", "destination_ipv4_address"]


def test_state_round_trip_through_json() -> None:
    state = TemplateState()
    decode(ipfix_message(a_set(2, ipfix_template(256, FLOW)),
                         a_set(3, ipfix_template(500, [(144, 4), (34, 4)], scope=1))),
           EXPORTER, state, 0.0)
    decode(ipfix_message(a_set(999, b"\1\2\3\4"), export_time=1_600_000_042), EXPORTER, state,
           5.0)
    restored = TemplateState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored.items() == state.items()
    assert restored.held == state.held
    d = decode(ipfix_message(a_set(256, flow_record(9))), EXPORTER, restored, 6.0)
    assert only(d.data).column("octet_delta_count").to_pylist() == [900]
    d = decode(ipfix_message(a_set(2, ipfix_template(999, [(8, 4)]))), EXPORTER, restored, 7.0)
    assert only(d.data).to_pylist() == [{"source_ipv4_address": "1.2.3.4"}]
    assert d.data[0].headers[0].export_time == 1_600_000_042
    with pytest.raises(ValueError):
        TemplateState.from_dict({"version": 99})


def test_element_names() -> None:
    assert element(0, 1).name == "octet_delta_count"
    assert element(0, 22) == ("flow_start_sys_up_time", "unsigned32")
    assert element(0, 236).name == "vr_fname"
    assert element(REVERSE_PEN, 8).name == "reverse_source_ipv4_address"
    assert element(10704, 4).name == "fw_rule"
    assert element(6871, 14).name == "initial_tcp_flags"
    assert element(0, 65000) == ("field_65000", "octetArray")
    assert element(12345, 1) == ("pen12345_field_1", "octetArray")


def test_elastic_names_are_known(peer: Path) -> None:
    """Every netflow.* element name Elastic's integration maps is one the registry gives."""
    spec = yaml.safe_load((peer / "netflow" / "integration" / "fields" /
                           "package-fields.yml").read_text())
    names = {f["name"] for f in spec[0]["fields"] if f.get("type") != "group"} - {"type"}
    ours = {element(0, i).name for i in range(1, 600)}
    assert names <= ours, sorted(names - ours)


def test_widest_template_a_datagram_can_carry() -> None:
    # 16,000 one-byte fields fill a v9 datagram; it compiles and decodes in one piece
    n = 16_000
    tpl = struct.pack(">HH", 300, n) + struct.pack(">HH", 5, 1) * n
    state = TemplateState()
    t0 = time.perf_counter()
    d = decode(v9_datagram(a_set(0, tpl)), EXPORTER, state, 0.0)
    d = decode(v9_datagram(a_set(300, bytes(range(256)) * 62 + b"\0" * 128)), EXPORTER,
               state, 0.0)
    assert time.perf_counter() - t0 < 5
    assert not d.errors and only(d.data).num_columns == n


# ---------------------------------------------------------------- hostile input

def check(payloads: list[bytes], state: TemplateState | None = None) -> None:
    """Only DecodeError escapes, errors are not decoder bugs, memory stays bounded."""
    state = TemplateState(max_held_bytes=1 << 16) if state is None else state
    for p in payloads:
        try:
            d = decode(p, EXPORTER, state, 0.0)
        except DecodeError as e:
            assert not str(e).startswith("internal"), e
            continue
        assert all(not m.startswith("internal") for _, m in d.errors), d.errors
        out = sum(b.records.nbytes for b in d.data + d.options)
        assert out <= 64 * sum(map(len, payloads)) + (1 << 20)
    assert sum(len(h.body) for h in state.held) <= state.max_held_bytes
    many = decode_many([(p, EXPORTER) for p in payloads], TemplateState(), 0.0)
    assert all(not m.startswith("internal") for _, m in many.errors), many.errors


def mostly(usual: Any, *odd: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``usual`` most of the time, now and then one of the odd strategies."""
    return st.integers(0, 9).flatmap(
        lambda k: st.just(usual) if k < 9 or not odd else st.one_of(*odd))


_lengths = mostly(4, st.sampled_from([1, 2, 8, 16, 6, 3, 0xFFFF, 0]), st.integers(0, 0xFFFF))
_ids = mostly(8, st.sampled_from([1, 4, 12, 27, 56, 82, 95, 150, 152, 154, 276, 291, 0, 40000]),
              st.integers(0, 0xFFFF))
_field = st.tuples(_ids, _lengths) | st.tuples(_ids, _lengths, st.integers(0, 2**32 - 1))
_lies = (st.sampled_from([0, 1, 3, 4, 5, 0xFFFF]), st.integers(0, 0xFFFF))


@st.composite
def ipfix_messages(draw: st.DrawFn) -> bytes:
    sets = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["template", "template", "options", "data", "data", "raw"]))
        tid = draw(mostly(256, st.sampled_from([257, 2, 3, 0]), st.integers(0, 0xFFFF)))
        if kind == "template":
            fields = draw(st.lists(_field, min_size=1, max_size=8))
            count = draw(mostly(len(fields), st.sampled_from([0, 65535]),
                                st.integers(0, 0xFFFF)))
            body = struct.pack(">HH", tid, count) + specs(fields)
        elif kind == "options":
            fields = draw(st.lists(_field, max_size=8))
            scope = draw(mostly(1, st.integers(0, 10)))
            body = struct.pack(">HHH", tid, len(fields), scope) + specs(fields)
        else:
            body = draw(st.binary(min_size=8, max_size=200))
        set_id = {"template": 2, "options": 3, "data": draw(st.sampled_from([256, 257]))}.get(
            kind, draw(st.integers(0, 0xFFFF)))
        pad = draw(mostly(b"", st.binary(max_size=3)))
        length = draw(mostly(4 + len(body) + len(pad), *_lies))
        sets.append(struct.pack(">HH", set_id, length) + body + pad)
    msg = ipfix_message(*sets)
    length = draw(mostly(len(msg), *_lies))  # a message length that lies
    msg = msg[:2] + struct.pack(">H", length) + msg[4:]
    return msg[:draw(mostly(len(msg), st.integers(0, len(msg))))]  # cut short


@st.composite
def v9_datagrams(draw: st.DrawFn) -> bytes:
    sets = []
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from([0, 1, 260, 260, 7]))
        if kind == 0:
            fields = draw(st.lists(st.tuples(_ids, _lengths), min_size=1, max_size=12))
            count = draw(mostly(len(fields), st.sampled_from([0, 65535])))
            body = struct.pack(">HH", 260, count) + specs(fields)
        elif kind == 1:
            scope = draw(st.lists(st.tuples(st.integers(0, 6), _lengths), max_size=3))
            opts = draw(st.lists(st.tuples(_ids, _lengths), max_size=6))
            scope_len = draw(mostly(4 * len(scope), st.integers(0, 0xFFFF)))
            body = struct.pack(">HHH", 260, scope_len, 4 * len(opts)) + specs(scope) + specs(opts)
        else:
            body = draw(st.binary(min_size=8, max_size=200))
        pad = draw(mostly(b"", st.binary(max_size=3)))
        length = draw(mostly(4 + len(body) + len(pad), *_lies))
        sets.append(struct.pack(">HH", kind, length) + body + pad)
    msg = v9_datagram(*sets)
    return msg[:draw(mostly(len(msg), st.integers(0, len(msg))))]


FUZZ = settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.lists(ipfix_messages(), min_size=1, max_size=4))
def test_fuzz_ipfix(payloads: list[bytes]) -> None:
    check(payloads)


@FUZZ
@given(st.lists(v9_datagrams(), min_size=1, max_size=4))
def test_fuzz_v9(payloads: list[bytes]) -> None:
    check(payloads)


@FUZZ
@given(st.sampled_from([5, 9, 10, 1, 0xFFFF]), st.binary(max_size=300))
def test_fuzz_random_bytes(version: int, rest: bytes) -> None:
    check([struct.pack(">H", version) + rest])


@pytest.fixture(scope="module")
def dat_files(peer: Path) -> list[bytes]:
    return [f.read_bytes() for f in sorted((beats(peer) / "dat").glob("*.dat"))]


@settings(max_examples=300, deadline=2000, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_mutated_captures(dat_files: list[bytes], data: st.DataObject) -> None:
    """Real datagrams with bytes flipped, cut short or with length fields changed."""
    picks = data.draw(st.lists(st.sampled_from(dat_files), min_size=1, max_size=3))
    out = []
    for p in picks:
        b = bytearray(p)
        for _ in range(data.draw(st.integers(0, 6))):
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] = data.draw(st.sampled_from([0, 0xFF, b[i] ^ 0x80]) | st.integers(0, 255))
        cut = data.draw(st.integers(0, len(b)))
        out.append(bytes(b[:cut]) if data.draw(st.booleans()) else bytes(b))
    check(out)


def test_fuzz_output_is_arrow(peer: Path) -> None:
    """Decoded columns are plain Arrow types the store takes: no object or null columns."""
    allowed = (pa.types.is_int64, pa.types.is_uint64, pa.types.is_float64, pa.types.is_boolean,
               pa.types.is_string, pa.types.is_binary, pa.types.is_timestamp)
    state = TemplateState()
    for f in sorted((beats(peer) / "dat").glob("*.dat")):
        try:
            d = decode(f.read_bytes(), EXPORTER, state, 0.0)
        except DecodeError:
            continue
        for b in d.data + d.options:
            assert isinstance(b.rows, np.ndarray) and len(b.rows) == b.records.num_rows
            for fld in b.records.schema:
                assert any(ok(fld.type) for ok in allowed), (f.name, fld)


def test_netflow_module_dispatches_ipfix() -> None:
    d = netflow.decode(ipfix_message(a_set(2, ipfix_template(256, FLOW)),
                                     a_set(256, flow_record(4))), EXPORTER, TemplateState(), 0)
    assert d.header is not None and d.header.version == 10 and d.records == 1


def test_every_record_of_a_datagram_has_its_own_event_id() -> None:
    # options and flow records (other templates, so other batches) of one datagram used to
    # be numbered from 0 each, giving two events one id
    from netmeta.event import META_ID
    from netmeta.normalize import netflow as netflow_normalize

    tpl = struct.pack(">HH", 260, len(FLOW)) + specs(FLOW)
    opt = struct.pack(">HHH", 261, 4, 8) + specs([(2, 4)]) + specs([(34, 4), (82, 4)])
    d = decode(v9_datagram(a_set(0, tpl), a_set(1, opt), a_set(260, flow_record(1)),
                           a_set(261, struct.pack(">II4s", 7, 100, b"ge0\0"))),
               EXPORTER, TemplateState(), 0.0)
    table = netflow_normalize.normalize(d, "netflow")
    ids = table.column(META_ID).to_pylist()
    assert len(ids) == 2 and len(set(ids)) == 2
