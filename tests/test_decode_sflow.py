"""sFlow v5 decoder: datagrams built here with a small XDR encoder, every decoded value
checked; hypothesis throws random, truncated and lying datagrams at it."""

from __future__ import annotations

import contextlib
import ipaddress
import struct
import time
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netmeta.decode.sflow import (
    COUNTER_SCHEMA,
    DATAGRAM_SCHEMA,
    FLOW_SCHEMA,
    OTHER_SAMPLE_SCHEMA,
    Decoded,
    DecodeError,
    decode,
    decode_many,
)

# ---------------------------------------------------------------- XDR encoder


def u32(*values: int) -> bytes:
    return struct.pack(f">{len(values)}I", *values)


def opaque(data: bytes) -> bytes:
    """XDR variable-length opaque: length, bytes, zero padding to 4."""
    return u32(len(data)) + data + b"\0" * (-len(data) & 3)


def address(ip: str | None) -> bytes:
    if ip is None:
        return u32(0)
    a = ipaddress.ip_address(ip)
    return u32(1 if a.version == 4 else 2) + a.packed


def data_format(fmt: int, enterprise: int = 0) -> int:
    return enterprise << 12 | fmt


def record(fmt: int, body: bytes, enterprise: int = 0) -> bytes:
    return u32(data_format(fmt, enterprise)) + opaque(body)


def datagram(agent: str | None, samples: list[bytes], seq: int = 1, sub_agent: int = 0,
             uptime: int = 1000, count: int | None = None) -> bytes:
    return (u32(5) + address(agent) + u32(sub_agent, seq, uptime)
            + u32(len(samples) if count is None else count) + b"".join(samples))


def flow_sample(records: list[bytes], seq: int = 1, source: tuple[int, int] = (0, 1),
                rate: int = 1000, pool: int = 5000, drops: int = 0,
                inp: tuple[int, int] = (0, 1), out: tuple[int, int] = (0, 2),
                expanded: bool = False, count: int | None = None) -> bytes:
    n = len(records) if count is None else count
    if expanded:
        body = u32(seq, *source, rate, pool, drops, *inp, *out, n)
        return record(3, body + b"".join(records))
    body = u32(seq, source[0] << 24 | source[1], rate, pool, drops,
               inp[0] << 30 | inp[1], out[0] << 30 | out[1], n)
    return record(1, body + b"".join(records))


def counters_sample(records: list[bytes], seq: int = 1, source: tuple[int, int] = (0, 1),
                    expanded: bool = False) -> bytes:
    if expanded:
        return record(4, u32(seq, *source, len(records)) + b"".join(records))
    return record(2, u32(seq, source[0] << 24 | source[1], len(records)) + b"".join(records))


def sampled_header(header: bytes, frame_length: int = 1518, stripped: int = 4,
                   protocol: int = 1) -> bytes:
    return record(1, u32(protocol, frame_length, stripped) + opaque(header))


def sampled_ethernet(length: int, src: str, dst: str, etype: int) -> bytes:
    return record(2, u32(length) + mac(src) + b"\0\0" + mac(dst) + b"\0\0" + u32(etype))


def sampled_ip(length: int, proto: int, src: str, dst: str, sport: int, dport: int,
               tcp_flags: int, tos: int) -> bytes:
    a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    body = u32(length, proto) + a.packed + b.packed + u32(sport, dport, tcp_flags, tos)
    return record(3 if a.version == 4 else 4, body)


def extended_switch(src_vlan: int, src_pri: int, dst_vlan: int, dst_pri: int) -> bytes:
    return record(1001, u32(src_vlan, src_pri, dst_vlan, dst_pri))


def extended_router(next_hop: str | None, src_mask: int, dst_mask: int) -> bytes:
    return record(1002, address(next_hop) + u32(src_mask, dst_mask))


def extended_gateway(next_hop: str | None, router_as: int, src_as: int, peer_as: int,
                     segments: list[tuple[int, list[int]]], communities: list[int],
                     local_pref: int) -> bytes:
    path = u32(len(segments)) + b"".join(u32(t, len(a), *a) for t, a in segments)
    return record(1003, address(next_hop) + u32(router_as, src_as, peer_as) + path
                  + u32(len(communities), *communities) + u32(local_pref))


IF_COUNTER_NAMES = [
    "if_index", "if_type", "if_speed", "if_direction", "if_status", "if_in_octets",
    "if_in_ucast_pkts", "if_in_multicast_pkts", "if_in_broadcast_pkts", "if_in_discards",
    "if_in_errors", "if_in_unknown_protos", "if_out_octets", "if_out_ucast_pkts",
    "if_out_multicast_pkts", "if_out_broadcast_pkts", "if_out_discards", "if_out_errors",
    "if_promiscuous_mode"]
HYPER = {"if_speed", "if_in_octets", "if_out_octets"}
ETHERNET_COUNTER_NAMES = [
    "dot3_stats_alignment_errors", "dot3_stats_fcs_errors",
    "dot3_stats_single_collision_frames", "dot3_stats_multiple_collision_frames",
    "dot3_stats_sqe_test_errors", "dot3_stats_deferred_transmissions",
    "dot3_stats_late_collisions", "dot3_stats_excessive_collisions",
    "dot3_stats_internal_mac_transmit_errors", "dot3_stats_carrier_sense_errors",
    "dot3_stats_frame_too_longs", "dot3_stats_internal_mac_receive_errors",
    "dot3_stats_symbol_errors"]


def if_counters(values: dict[str, int]) -> bytes:
    return record(1, b"".join(struct.pack(">Q" if k in HYPER else ">I", values[k])
                              for k in IF_COUNTER_NAMES))


def ethernet_counters(values: dict[str, int]) -> bytes:
    return record(2, u32(*(values[k] for k in ETHERNET_COUNTER_NAMES)))


# ---------------------------------------------------------------- packet builders


def mac(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def ethernet(dst: str, src: str, etype: int, payload: bytes,
             vlans: tuple[tuple[int, int, int], ...] = ()) -> bytes:
    """vlans: (TPID, priority, VLAN id) of each tag, outermost first."""
    types = [tpid for tpid, _, _ in vlans] + [etype]
    out = mac(dst) + mac(src) + struct.pack(">H", types[0])
    for (_, pcp, vid), nxt in zip(vlans, types[1:], strict=True):
        out += struct.pack(">HH", pcp << 13 | vid, nxt)
    return out + payload


def ipv4(src: str, dst: str, proto: int, payload: bytes, tos: int = 0, ttl: int = 64,
         ident: int = 0, flags: int = 0, frag: int = 0, total: int | None = None) -> bytes:
    length = 20 + len(payload) if total is None else total
    return struct.pack(">BBHHHBBH4s4s", 0x45, tos, length, ident, flags << 13 | frag, ttl,
                       proto, 0, ipaddress.ip_address(src).packed,
                       ipaddress.ip_address(dst).packed) + payload


def ipv6(src: str, dst: str, nh: int, payload: bytes, tc: int = 0, flow: int = 0,
         hop: int = 64) -> bytes:
    return struct.pack(">IHBB16s16s", 6 << 28 | tc << 20 | flow, len(payload), nh, hop,
                       ipaddress.ip_address(src).packed,
                       ipaddress.ip_address(dst).packed) + payload


def tcp(sport: int, dport: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def icmp(kind: int, code: int) -> bytes:
    return struct.pack(">BBHI", kind, code, 0, 0)


# ---------------------------------------------------------------- expectations

FLOW_BASE: dict[str, Any] = {f.name: None for f in FLOW_SCHEMA}
COUNTER_BASE: dict[str, Any] = {f.name: None for f in COUNTER_SCHEMA}


def flow(**values: Any) -> dict[str, Any]:
    unknown = set(values) - set(FLOW_BASE)
    assert not unknown, unknown
    return {**FLOW_BASE, "packets": 1, **values}


def counter(**values: Any) -> dict[str, Any]:
    unknown = set(values) - set(COUNTER_BASE)
    assert not unknown, unknown
    return {**COUNTER_BASE, **values}


def check_schemas(out: Decoded) -> None:
    assert out.datagrams.schema == DATAGRAM_SCHEMA
    assert out.flows.schema == FLOW_SCHEMA
    assert out.counters.schema == COUNTER_SCHEMA
    assert out.other_samples.schema == OTHER_SAMPLE_SCHEMA


# ---------------------------------------------------------------- flow samples

MAC_A, MAC_B = "00:11:22:33:44:55", "66:77:88:99:aa:bb"


def test_ipv4_agent_flow_sample_tcp_vlan_and_extended_records() -> None:
    packet = ethernet(MAC_A, MAC_B, 0x0800,
                      ipv4("10.1.2.3", "198.51.100.7", 6, tcp(49152, 443, 0x18, b"x" * 10),
                           tos=0x28, ttl=63, ident=0x1234, flags=2),
                      vlans=((0x8100, 5, 100),))
    sample = flow_sample(
        [sampled_header(packet, frame_length=1518, stripped=4),
         extended_switch(100, 5, 200, 0),
         extended_router("192.0.2.254", 24, 16),
         extended_gateway("203.0.113.1", 64500, 64501, 64502,
                          [(2, [64510, 64511]), (1, [64512])], [0xFDE80001, 0xFDE80002], 100)],
        seq=42, source=(0, 17), rate=1000, pool=123456, drops=3, inp=(0, 5), out=(0, 6))
    out = decode(datagram("192.0.2.1", [sample], seq=1234, sub_agent=7, uptime=987654),
                 "198.18.0.1")
    check_schemas(out)
    assert out.errors == []
    assert out.datagrams.to_pylist() == [{
        "datagram": 0, "exporter": "198.18.0.1", "sampler_address": "192.0.2.1",
        "sub_agent_id": 7, "sequence_num": 1234, "uptime_ms": 987654, "samples": 1}]
    assert out.flows.to_pylist() == [flow(
        datagram=0, sampler_address="192.0.2.1", sequence_num=1234, sample_sequence_num=42,
        source_id_type=0, source_id_index=17, sampling_rate=1000, sample_pool=123456, drops=3,
        in_if_format=0, in_if=5, out_if_format=0, out_if=6, header_protocol=1, bytes=1518,
        stripped=4, header_length=len(packet), src_mac=MAC_B, dst_mac=MAC_A, etype=0x0800,
        vlan_id=100, src_addr="10.1.2.3", dst_addr="198.51.100.7", proto=6, ip_tos=0x28,
        ip_ttl=63, ip_flags=2, fragment_id=0x1234, fragment_offset=0, ip_total_length=50,
        src_port=49152, dst_port=443, tcp_flags=0x18, src_vlan=100, src_priority=5,
        dst_vlan=200, dst_priority=0, next_hop="192.0.2.254", src_mask_len=24,
        dst_mask_len=16, bgp_next_hop="203.0.113.1", router_as=64500, src_as=64501,
        dst_as=64512, next_hop_as=64510, src_peer_as=64502, as_path=[64510, 64511, 64512],
        bgp_communities=[0xFDE80001, 0xFDE80002], local_pref=100)]
    assert out.counters.num_rows == 0
    assert out.other_samples.num_rows == 0


def test_ipv6_agent_expanded_flow_sample_ipv6_udp_through_extension_headers() -> None:
    hop_by_hop = bytes([44, 0]) + b"\0" * 6  # next: fragment header, 8 bytes
    fragment = struct.pack(">BBHI", 17, 0, 0 << 3 | 1, 0xDEADBEEF)  # first fragment, M=1
    packet = ethernet(MAC_A, MAC_B, 0x86DD,
                      ipv6("2001:db8::10", "2001:db8:ffff::20", 0,
                           hop_by_hop + fragment + udp(5353, 53, b"abcd"),
                           tc=0xB8, flow=0xABCDE, hop=64))
    sample = flow_sample(
        [sampled_header(packet, frame_length=110, stripped=4),
         extended_router("fe80::1", 64, 48),
         extended_gateway("2001:db8::fe", 64496, 0, 64497, [], [], 0)],
        seq=7, source=(3, 0x01000005), rate=512, pool=9999, drops=0,
        inp=(0, 0x12345678), out=(2, 3), expanded=True)
    out = decode(datagram("2001:db8::1", [sample], seq=9, sub_agent=1, uptime=5), "2001:db8::99")
    check_schemas(out)
    assert out.errors == []
    assert out.datagrams.to_pylist() == [{
        "datagram": 0, "exporter": "2001:db8::99", "sampler_address": "2001:db8::1",
        "sub_agent_id": 1, "sequence_num": 9, "uptime_ms": 5, "samples": 1}]
    assert out.flows.to_pylist() == [flow(
        datagram=0, sampler_address="2001:db8::1", sequence_num=9, sample_sequence_num=7,
        source_id_type=3, source_id_index=0x01000005, sampling_rate=512, sample_pool=9999,
        drops=0, in_if_format=0, in_if=0x12345678, out_if_format=2, out_if=3,
        header_protocol=1, bytes=110, stripped=4, header_length=len(packet), src_mac=MAC_B,
        dst_mac=MAC_A, etype=0x86DD, src_addr="2001:db8::10", dst_addr="2001:db8:ffff::20",
        proto=17, ip_tos=0xB8, ip_ttl=64, ip_flags=1, fragment_id=0xDEADBEEF,
        fragment_offset=0, ipv6_flow_label=0xABCDE, ip_total_length=40 + 8 + 8 + 12,
        src_port=5353, dst_port=53, next_hop="fe80::1", src_mask_len=64, dst_mask_len=48,
        bgp_next_hop="2001:db8::fe", router_as=64496, src_as=64496, dst_as=64496,
        src_peer_as=64497, as_path=[], bgp_communities=[], local_pref=0)]


def _one_flow(records: list[bytes], **sample: Any) -> dict[str, Any]:
    out = decode(datagram("192.0.2.1", [flow_sample(records, **sample)]))
    assert out.errors == []
    (row,) = out.flows.to_pylist()
    return row


SAMPLE_DEFAULTS = dict(datagram=0, sampler_address="192.0.2.1", sequence_num=1,
                       sample_sequence_num=1, source_id_type=0, source_id_index=1,
                       sampling_rate=1000, sample_pool=5000, drops=0, in_if_format=0, in_if=1,
                       out_if_format=0, out_if=2)


def test_icmp_and_icmpv6() -> None:
    v4 = ethernet(MAC_A, MAC_B, 0x0800, ipv4("192.0.2.9", "192.0.2.10", 1, icmp(8, 0), ttl=1))
    v6 = ethernet(MAC_B, MAC_A, 0x86DD, ipv6("::1", "ff02::1", 58, icmp(135, 0), hop=255))
    out = decode(datagram("192.0.2.1", [flow_sample([sampled_header(v4, 98)], seq=1),
                                        flow_sample([sampled_header(v6, 86)], seq=2)]))
    assert out.errors == []
    assert out.flows.to_pylist() == [
        flow(**SAMPLE_DEFAULTS | {"sample_sequence_num": 1}, header_protocol=1, bytes=98,
             stripped=4, header_length=len(v4), src_mac=MAC_B, dst_mac=MAC_A, etype=0x0800,
             src_addr="192.0.2.9", dst_addr="192.0.2.10", proto=1, ip_tos=0, ip_ttl=1,
             ip_flags=0, fragment_id=0, fragment_offset=0, ip_total_length=28, icmp_type=8,
             icmp_code=0),
        flow(**SAMPLE_DEFAULTS | {"sample_sequence_num": 2}, header_protocol=1, bytes=86,
             stripped=4, header_length=len(v6), src_mac=MAC_A, dst_mac=MAC_B, etype=0x86DD,
             src_addr="::1", dst_addr="ff02::1", proto=58, ip_tos=0, ip_ttl=255,
             ipv6_flow_label=0, ip_total_length=48, icmp_type=135, icmp_code=0)]


def test_later_fragment_has_no_ports() -> None:
    packet = ethernet(MAC_A, MAC_B, 0x0800,
                      ipv4("10.0.0.1", "10.0.0.2", 17, b"\x13\x88\x00\x35" + b"\0" * 20,
                           ident=77, flags=1, frag=185, total=1500))
    assert _one_flow([sampled_header(packet, 1518)]) == flow(
        **SAMPLE_DEFAULTS, header_protocol=1, bytes=1518, stripped=4, header_length=len(packet),
        src_mac=MAC_B, dst_mac=MAC_A, etype=0x0800, src_addr="10.0.0.1", dst_addr="10.0.0.2",
        proto=17, ip_tos=0, ip_ttl=64, ip_flags=1, fragment_id=77, fragment_offset=185,
        ip_total_length=1500)


def test_truncated_sampled_headers() -> None:
    full = ethernet(MAC_A, MAC_B, 0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, 2)))
    # header shorter than the IP header: layer 2 only
    assert _one_flow([sampled_header(full[:24], 60)]) == flow(
        **SAMPLE_DEFAULTS, header_protocol=1, bytes=60, stripped=4, header_length=24,
        src_mac=MAC_B, dst_mac=MAC_A, etype=0x0800)
    # IP header complete, TCP cut after the ports: ports, no flags
    assert _one_flow([sampled_header(full[:14 + 20 + 6], 60)]) == flow(
        **SAMPLE_DEFAULTS, header_protocol=1, bytes=60, stripped=4, header_length=40,
        src_mac=MAC_B, dst_mac=MAC_A, etype=0x0800, src_addr="10.0.0.1", dst_addr="10.0.0.2",
        proto=6, ip_tos=0, ip_ttl=64, ip_flags=0, fragment_id=0, fragment_offset=0,
        ip_total_length=40, src_port=1, dst_port=2)
    # shorter than an Ethernet header, and empty
    for cut in (10, 0):
        assert _one_flow([sampled_header(full[:cut], 60)]) == flow(
            **SAMPLE_DEFAULTS, header_protocol=1, bytes=60, stripped=4, header_length=cut)


def test_stacked_vlan_tags_report_the_outer_vlan() -> None:
    packet = ethernet(MAC_A, MAC_B, 0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1000, 2000)),
                      vlans=((0x88A8, 0, 300), (0x8100, 3, 42)))
    row = _one_flow([sampled_header(packet, 100)])
    assert (row["vlan_id"], row["etype"], row["src_port"], row["dst_port"]) == (300, 0x800,
                                                                                 1000, 2000)


def test_header_protocol_ipv4_starts_at_the_ip_header() -> None:
    packet = ipv4("10.9.8.7", "10.6.5.4", 6, tcp(22, 50000, 0x12), tos=4, ttl=9)
    assert _one_flow([sampled_header(packet, 40, stripped=0, protocol=11)]) == flow(
        **SAMPLE_DEFAULTS, header_protocol=11, bytes=40, stripped=0, header_length=40,
        etype=0x0800, src_addr="10.9.8.7", dst_addr="10.6.5.4", proto=6, ip_tos=4, ip_ttl=9,
        ip_flags=0, fragment_id=0, fragment_offset=0, ip_total_length=40, src_port=22,
        dst_port=50000, tcp_flags=0x12)


def test_other_header_protocols_keep_only_the_record_fields() -> None:
    assert _one_flow([sampled_header(b"\xff\x03\x00\x21" + b"\0" * 20, 64, protocol=7)]) == flow(
        **SAMPLE_DEFAULTS, header_protocol=7, bytes=64, stripped=4, header_length=24)


def test_sampled_ipv4_ipv6_and_ethernet_records() -> None:
    assert _one_flow([sampled_ip(60, 6, "10.0.0.1", "10.0.0.2", 80, 1234, 0x11, 0x10)]) == flow(
        **SAMPLE_DEFAULTS, bytes=60, etype=0x0800, src_addr="10.0.0.1", dst_addr="10.0.0.2",
        proto=6, ip_total_length=60, src_port=80, dst_port=1234, tcp_flags=0x11, ip_tos=0x10)
    assert _one_flow([sampled_ip(80, 17, "2001:db8::1", "2001:db8::2", 53, 9, 0, 0)]) == flow(
        **SAMPLE_DEFAULTS, bytes=80, etype=0x86DD, src_addr="2001:db8::1",
        dst_addr="2001:db8::2", proto=17, ip_total_length=80, src_port=53, dst_port=9,
        tcp_flags=0, ip_tos=0)
    assert _one_flow([sampled_ethernet(64, MAC_A, MAC_B, 0x0806)]) == flow(
        **SAMPLE_DEFAULTS, bytes=64, src_mac=MAC_A, dst_mac=MAC_B, etype=0x0806)
    # a sampled header wins over the others
    packet = ethernet(MAC_A, MAC_B, 0x0800, ipv4("10.0.0.5", "10.0.0.6", 17, udp(7, 8)))
    row = _one_flow([sampled_ip(60, 6, "10.0.0.1", "10.0.0.2", 80, 1234, 0, 0),
                     sampled_header(packet, 70)])
    assert (row["src_addr"], row["proto"], row["src_port"], row["bytes"]) == (
        "10.0.0.5", 17, 7, 70)


def test_unknown_switch_values_and_interface_formats() -> None:
    row = _one_flow([extended_switch(0xFFFFFFFF, 0xFFFFFFFF, 10, 1)],
                    inp=(0, 0x3FFFFFFF), out=(1, 258))
    assert row == flow(**SAMPLE_DEFAULTS | {"in_if": 0x3FFFFFFF, "out_if_format": 1,
                                            "out_if": 258}, dst_vlan=10, dst_priority=1)


def test_unknown_flow_records_are_kept_in_order() -> None:
    vendor = record(5, b"\x01\x02\x03\x04\x05", enterprise=4413)  # padded to 8
    user = record(1004, u32(106) + opaque(b"alice") + u32(106) + opaque(b"bob"))
    row = _one_flow([vendor, extended_switch(1, 0, 1, 0), user, record(9, b"")])
    assert row == flow(**SAMPLE_DEFAULTS, src_vlan=1, src_priority=0, dst_vlan=1,
                       dst_priority=0, other_records=[
                           {"enterprise": 4413, "format": 5, "data": b"\x01\x02\x03\x04\x05"},
                           {"enterprise": 0, "format": 1004,
                            "data": u32(106) + opaque(b"alice") + u32(106) + opaque(b"bob")},
                           {"enterprise": 0, "format": 9, "data": b""}])


def test_no_records_and_unknown_agent_address() -> None:
    out = decode(datagram(None, [flow_sample([])]))
    assert out.datagrams.column("sampler_address").to_pylist() == [None]
    assert out.flows.to_pylist() == [flow(**SAMPLE_DEFAULTS | {"sampler_address": None})]


# ---------------------------------------------------------------- counter samples

IF_VALUES = {name: i + 1 for i, name in enumerate(IF_COUNTER_NAMES)} | {
    "if_speed": 10_000_000_000, "if_in_octets": 2**40 + 5, "if_out_octets": 2**63 + 1,
    "if_in_errors": 0xFFFFFFFF}
ETH_VALUES = {name: 100 + i for i, name in enumerate(ETHERNET_COUNTER_NAMES)}


def test_counter_samples() -> None:
    vendor = record(7, b"\xaa" * 12, enterprise=4413)
    dgram = datagram("10.0.0.1", [
        counters_sample([if_counters(IF_VALUES), ethernet_counters(ETH_VALUES), vendor],
                        seq=11, source=(0, 3)),
        counters_sample([if_counters(IF_VALUES)], seq=12, source=(0, 2**24 + 5), expanded=True),
    ], seq=55)
    out = decode(dgram, "10.0.0.1")
    check_schemas(out)
    assert out.errors == [] and out.flows.num_rows == 0
    meta = dict(datagram=0, sampler_address="10.0.0.1", sequence_num=55, source_id_type=0)
    assert out.counters.to_pylist() == [
        counter(**meta, sample_sequence_num=11, source_id_index=3, enterprise=0, format=1,
                **IF_VALUES),
        counter(**meta, sample_sequence_num=11, source_id_index=3, enterprise=0, format=2,
                **ETH_VALUES),
        counter(**meta, sample_sequence_num=11, source_id_index=3, enterprise=4413, format=7,
                data=b"\xaa" * 12),
        counter(**meta, sample_sequence_num=12, source_id_index=2**24 + 5, enterprise=0,
                format=1, **IF_VALUES),
    ]


# ---------------------------------------------------------------- datagrams and batches

def test_mixed_samples_in_one_datagram() -> None:
    tcp_packet = ethernet(MAC_A, MAC_B, 0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, 2)))
    unknown_sample = record(5, b"\x00" * 8)  # discarded packet sample: not decoded here
    vendor_sample = record(1, b"\x01\x02\x03\x04", enterprise=8800)
    out = decode(datagram("192.0.2.1", [
        flow_sample([sampled_header(tcp_packet, 64)], seq=1),
        counters_sample([ethernet_counters(ETH_VALUES)], seq=2),
        unknown_sample,
        flow_sample([sampled_header(tcp_packet, 65)], seq=3, expanded=True),
        vendor_sample,
        counters_sample([if_counters(IF_VALUES)], seq=4, expanded=True),
        flow_sample([sampled_header(tcp_packet, 66)], seq=5),
    ]))
    assert out.errors == []
    assert out.flows.column("sample_sequence_num").to_pylist() == [1, 3, 5]
    assert out.flows.column("bytes").to_pylist() == [64, 65, 66]
    assert out.flows.column("src_port").to_pylist() == [1, 1, 1]
    assert out.counters.column("sample_sequence_num").to_pylist() == [2, 4]
    assert out.counters.column("format").to_pylist() == [2, 1]
    assert out.other_samples.to_pylist() == [
        {"datagram": 0, "enterprise": 0, "format": 5, "data": b"\x00" * 8},
        {"datagram": 0, "enterprise": 8800, "format": 1, "data": b"\x01\x02\x03\x04"}]


def test_malformed_sample_is_reported_and_the_rest_decodes() -> None:
    good = flow_sample([extended_switch(1, 0, 2, 0)], seq=1)
    # a record whose length runs past the end of its sample
    lying_record = record(1, u32(2, 1, 1, 1, 0, 1, 2, 1) + u32(1001, 1000) + u32(0))
    # a sampled header claiming more header bytes than the record holds
    lying_header = record(1, u32(1, 1518, 4, 200) + b"\0" * 16)
    short_switch = record(1, u32(1, 0, 0, 0, 0, 0, 0, 1) + u32(1001, 8, 1, 2))
    dgram = datagram("192.0.2.1", [good, lying_record, flow_sample([lying_header], seq=3),
                                   short_switch, flow_sample([], seq=5)])
    out = decode(dgram, "192.0.2.1")
    assert out.flows.column("sample_sequence_num").to_pylist() == [1, 5]
    assert [(e.datagram, e.exporter, e.message) for e in out.errors] == [
        (0, "192.0.2.1", "sflow: sample 2 of 5 (0/1): record 1 of 1 (0/1001): length 1000 "
                         "runs past the sample end"),
        (0, "192.0.2.1", "sflow: sample 3 of 5 (0/1): record 0/1 of 32 bytes, needs 216"),
        (0, "192.0.2.1", "sflow: sample 4 of 5 (0/1): record 0/1001 of 8 bytes, needs 16"),
    ]
    offsets = [e.offset for e in out.errors]
    for e in out.errors:
        assert e.excerpt == dgram[e.offset:e.offset + 64]
    assert offsets == sorted(offsets) and offsets[0] == 28 + len(good)


def test_lying_sample_counts_and_lengths() -> None:
    sample = flow_sample([extended_switch(1, 0, 2, 0)])
    # more samples declared than sent
    out = decode(datagram("192.0.2.1", [sample, sample], count=2**32 - 1))
    assert out.flows.num_rows == 2
    assert [e.message for e in out.errors] == [
        "sflow: datagram ends after 2 of 4294967295 samples"]
    # a sample length beyond the datagram
    out = decode(datagram("192.0.2.1", [sample[:4] + u32(10_000) + sample[8:]]))
    assert out.flows.num_rows == 0
    assert [e.message for e in out.errors] == [
        "sflow: sample 1 of 1 (0/1): length 10000 runs past the datagram end"]
    # a record count beyond the sample
    out = decode(datagram("192.0.2.1", [flow_sample([extended_switch(1, 0, 2, 0)],
                                                    count=2**32 - 1)]))
    assert [e.message for e in out.errors] == [
        "sflow: sample 1 of 1 (0/1): ends after 1 of 4294967295 records"]
    # zero-length samples and records
    out = decode(datagram("192.0.2.1", [record(1, b""), counters_sample([record(1, b"")]),
                                        flow_sample([record(1001, b"")])]))
    assert [e.message for e in out.errors] == [
        "sflow: sample 1 of 3 (0/1): 0 bytes, fewer than its 32 fixed bytes",
        "sflow: sample 2 of 3 (0/2): record 0/1 of 0 bytes, needs 88",
        "sflow: sample 3 of 3 (0/1): record 0/1001 of 0 bytes, needs 16"]


def test_lying_gateway_lengths() -> None:
    def gateway(body: bytes) -> list[str]:
        out = decode(datagram("192.0.2.1", [flow_sample([record(1003, body)])]))
        assert out.flows.num_rows == 0
        return [e.message for e in out.errors]

    head = address("10.0.0.1") + u32(1, 2, 3)
    assert gateway(head + u32(2**32 - 1, 2, 1, 5)) == [
        "sflow: sample 1 of 1 (0/1): extended gateway AS path truncated"]
    assert gateway(head + u32(1, 2, 2**32 - 1, 5)) == [
        "sflow: sample 1 of 1 (0/1): extended gateway AS path truncated"]
    assert gateway(head + u32(0, 2**32 - 1, 1, 2)) == [
        "sflow: sample 1 of 1 (0/1): extended gateway communities truncated"]
    assert gateway(u32(9) + b"\0" * 32) == ["sflow: sample 1 of 1 (0/1): unknown address type 9"]


@pytest.mark.parametrize(("data", "message"), [
    (b"", "0 bytes, too short for an sFlow datagram"),
    (u32(4, 1) + b"\0" * 40, "not sFlow version 5 (version 4)"),
    (u32(5, 3) + b"\0" * 40, "unknown agent address type 3"),
    (u32(5, 2) + b"\0" * 20, "datagram header truncated (28 bytes)"),
])
def test_unreadable_datagram(data: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        decode(data)
    out = decode_many([(data, "10.0.0.9")])
    check_schemas(out)
    assert out.datagrams.num_rows == 0
    assert [(e.datagram, e.exporter, e.offset, e.message, e.excerpt) for e in out.errors] == [
        (0, "10.0.0.9", 0, "sflow: " + message, data[:64])]


def test_decode_many_is_one_set_of_tables() -> None:
    pkt = ethernet(MAC_A, MAC_B, 0x0800, ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2)))
    batch = [
        (datagram("192.0.2.1", [flow_sample([sampled_header(pkt, 100)], seq=1)], seq=10),
         "192.0.2.1"),
        (b"garbage", "192.0.2.66"),
        (datagram("2001:db8::1", [flow_sample([sampled_header(pkt, 200)], seq=2),
                                  counters_sample([if_counters(IF_VALUES)], seq=3)], seq=20),
         "2001:db8::1"),
    ]
    out = decode_many(batch)
    check_schemas(out)
    assert out.datagrams.column("datagram").to_pylist() == [0, 2]
    assert out.datagrams.column("exporter").to_pylist() == ["192.0.2.1", "2001:db8::1"]
    assert out.flows.select(["datagram", "sampler_address", "sequence_num", "bytes"]
                            ).to_pylist() == [
        {"datagram": 0, "sampler_address": "192.0.2.1", "sequence_num": 10, "bytes": 100},
        {"datagram": 2, "sampler_address": "2001:db8::1", "sequence_num": 20, "bytes": 200}]
    assert out.counters.select(["datagram", "sampler_address", "sequence_num"]).to_pylist() == [
        {"datagram": 2, "sampler_address": "2001:db8::1", "sequence_num": 20}]
    assert [(e.datagram, e.exporter) for e in out.errors] == [(1, "192.0.2.66")]


def test_empty_batch() -> None:
    out = decode_many([])
    check_schemas(out)
    assert (out.datagrams.num_rows, out.flows.num_rows, out.counters.num_rows) == (0, 0, 0)
    assert out.errors == []


# ---------------------------------------------------------------- hostile input

def rich_datagram() -> bytes:
    """Every structure the decoder knows, to be cut and corrupted."""
    v4 = ethernet(MAC_A, MAC_B, 0x0800, ipv4("10.0.0.1", "10.0.0.2", 6, tcp(1, 2, 2)),
                  vlans=((0x8100, 0, 5),))
    v6 = ethernet(MAC_A, MAC_B, 0x86DD, ipv6("::1", "::2", 0, bytes([17, 0]) + b"\0" * 6
                                              + udp(3, 4)))
    return datagram("2001:db8::1", [
        flow_sample([sampled_header(v4, 100), extended_switch(1, 2, 3, 4),
                     extended_router("10.0.0.254", 8, 16),
                     extended_gateway("10.0.0.253", 1, 2, 3, [(2, [4, 5])], [6], 7),
                     record(3, b"abc", enterprise=9)], seq=1),
        flow_sample([sampled_header(v6, 90), sampled_ip(60, 6, "::1", "::2", 1, 2, 3, 4),
                     sampled_ethernet(60, MAC_A, MAC_B, 0x800)], seq=2, expanded=True),
        counters_sample([if_counters(IF_VALUES), ethernet_counters(ETH_VALUES),
                         record(9, b"z")], seq=3),
        counters_sample([if_counters(IF_VALUES)], seq=4, expanded=True),
        record(5, b"????"),
    ])


RICH = rich_datagram()


def check_hostile(data: bytes) -> None:
    """Only DecodeError escapes decode, nothing escapes decode_many, output stays bounded."""
    started = time.perf_counter()
    with contextlib.suppress(DecodeError):
        decode(data, "x")
    out = decode_many([(data, "x"), (RICH, "y")])
    check_schemas(out)
    # every row and error stands on at least 8 bytes of its datagram
    rows = out.flows.num_rows + out.counters.num_rows + out.other_samples.num_rows
    assert rows + len(out.errors) <= (len(data) + len(RICH)) // 8 + 2
    assert time.perf_counter() - started < 2.0
    # the good datagram after the bad one decodes in full
    assert out.flows.column("datagram").to_pylist().count(1) == 2
    assert out.counters.column("datagram").to_pylist().count(1) == 4


def test_rich_datagram_decodes_cleanly() -> None:
    out = decode(RICH)
    assert out.errors == []
    assert (out.flows.num_rows, out.counters.num_rows, out.other_samples.num_rows) == (2, 4, 1)


def test_every_truncation() -> None:
    """All cuts in one batch: each is reported (the header promises 5 samples), the
    complete datagram at the end of the batch decodes in full."""
    batch = [(RICH[:cut], f"cut {cut}") for cut in range(len(RICH))] + [(RICH, "whole")]
    out = decode_many(batch)
    check_schemas(out)
    assert {e.datagram for e in out.errors} == set(range(len(RICH)))
    assert all(e.exporter == f"cut {e.datagram}" for e in out.errors)
    whole = len(RICH)
    assert out.flows.column("datagram").to_pylist().count(whole) == 2
    assert out.counters.column("datagram").to_pylist().count(whole) == 4
    assert out.other_samples.column("datagram").to_pylist().count(whole) == 1
    # a cut never invents or alters a row: it decodes to a prefix of the whole's rows
    for table in (out.flows, out.counters, out.other_samples):
        rows: dict[int, list[dict[str, Any]]] = {}
        for r in table.to_pylist():
            rows.setdefault(r.pop("datagram"), []).append(r)
        full = rows.pop(whole)
        for got in rows.values():
            assert got == full[:len(got)]


FUZZ = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(data: bytes) -> None:
    check_hostile(data)


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes_behind_a_valid_header(tail: bytes) -> None:
    check_hostile(u32(5, 1) + b"\x0a\0\0\1" + u32(0, 1, 2, len(tail) // 8) + tail)


_WORDS = st.sampled_from([0, 1, 2, 3, 4, 7, 8, 16, 28, 88, 1001, 1002, 1003, 0x7FFFFFFF,
                          0xFFFFFFFF, 0xFFFFFFFC, len(RICH)]) | st.integers(0, 2**32 - 1)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(RICH) // 4 - 1), _WORDS), min_size=1, max_size=4))
def test_lying_words(changes: list[tuple[int, int]]) -> None:
    """Any aligned word (lengths, counts, formats, address types) replaced."""
    data = bytearray(RICH)
    for word, value in changes:
        data[word * 4:word * 4 + 4] = u32(value)
    check_hostile(bytes(data))


@FUZZ
@given(st.integers(0, len(RICH)), st.binary(min_size=1, max_size=40))
def test_spliced_bytes(at: int, junk: bytes) -> None:
    check_hostile(RICH[:at] + junk + RICH[at:])


def test_huge_counts_use_no_memory() -> None:
    huge = 2**32 - 1
    cases = [
        datagram("10.0.0.1", [], count=huge),
        datagram("10.0.0.1", [flow_sample([], count=huge)]),
        datagram("10.0.0.1", [record(2, u32(1, 1, huge))]),
        datagram("10.0.0.1", [flow_sample([record(1003, address(None) + u32(1, 2, 3, huge))])]),
        datagram("10.0.0.1", [flow_sample([record(1003, address(None) + u32(1, 2, 3, 1, 2, huge)
                                                  )])]),
        datagram("10.0.0.1", [flow_sample([record(1003, address(None) + u32(1, 2, 3, 0, huge)
                                                  )])]),
        datagram("10.0.0.1", [flow_sample([record(1, u32(1, 1518, 4, huge))])]),
    ]
    tracemalloc.start()
    try:
        for data in cases:
            out = decode(data)
            assert out.flows.num_rows == 0 and len(out.errors) == 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 2**20
