"""sFlow v5 datagrams → columns.

Spec: https://sflow.org/sflow_version_5.txt (XDR, RFC 4506: big-endian 32-bit words,
variable-length opaques padded to a multiple of four bytes). A datagram is

    version | agent address | sub agent id | sequence number | uptime | samples<>

and each sample, and each record inside a sample, is a (data_format, opaque<>) pair whose
length lets a reader skip what it does not know.

Decoding runs in two passes over one buffer holding the whole batch of datagrams:

1. A Python walk over the XDR structure. It checks every length against the bytes that are
   really there and records only *where* things are: the offset of each flow sample, of its
   sampled packet header, of its extended switch/router records, of each counter record.
   Only what is variable all the way down (extended gateway AS paths, unknown records) is
   read here.
2. NumPy reads each fixed structure (declared below as NumPy big-endian record types) of
   every sample of the batch with one gather from those offsets, and parses the sampled
   packet headers (Ethernet, 802.1Q, IPv4, IPv6, TCP, UDP, ICMP) of the whole batch the
   same way, with vectorized bounds checks: a header cut short yields nulls, never an error.
   Addresses and MACs become text once per distinct value; the Arrow columns are built once
   per batch.

Column names follow GoFlow2's JSON output where GoFlow2 has the field (src_addr, proto,
in_if, sampling_rate, bytes, packets, as_path, ...), so sFlow decoded here and sFlow that
went through GoFlow2 normalize to the same ECS document. Differences from GoFlow2: absent
values are null rather than 0; proto and etype are numbers (GoFlow2 renders names); in_if and
out_if are the interface value without the 2 format bits of the compact encoding (the
format is in in_if_format/out_if_format); vlan_id is the 12-bit VLAN id of the outermost
802.1Q tag (GoFlow2 keeps the whole tag control word); src_mask_len/dst_mask_len are the
prefix lengths GoFlow2 renders as src_net/dst_net.

A sample that breaks its own structure is reported in ``Decoded.errors`` and skipped; the
other samples of the datagram still decode. A datagram whose header cannot be read raises
:class:`DecodeError` from :func:`decode`, and is an error entry in :func:`decode_many`.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# ---------------------------------------------------------------- protocol facts

VERSION5 = 5  # sample_datagram_type: VERSION5

# enum address_type: UNKNOWN (void), IP_V4, IP_V6 -> bytes of the address that follows
ADDRESS_SIZES = {0: 0, 1: 4, 2: 16}
ADDRESS_V4 = 1
ADDRESS_V6 = 2

# data_format = enterprise (high 20 bits) << 12 | format (low 12 bits); sflow.org's standard
# structures have enterprise 0, so their data_format is the format number itself.
# sample_record.sample_type
FLOW_SAMPLE = 1
COUNTERS_SAMPLE = 2
FLOW_SAMPLE_EXPANDED = 3
COUNTERS_SAMPLE_EXPANDED = 4
# flow_record.flow_format
SAMPLED_HEADER = 1
SAMPLED_ETHERNET = 2
SAMPLED_IPV4 = 3
SAMPLED_IPV6 = 4
EXTENDED_SWITCH = 1001
EXTENDED_ROUTER = 1002
EXTENDED_GATEWAY = 1003
# counter_record.counter_format
IF_COUNTERS = 1
ETHERNET_COUNTERS = 2

# enum header_protocol: the sampled header kinds parsed here
HEADER_ETHERNET = 1  # ETHERNET-ISO88023
HEADER_IPV4 = 11
HEADER_IPV6 = 12

# interface (compact form): top 2 bits are the format, the low 30 bits its value;
# sflow_data_source: top byte is the source type, the low 3 bytes its index
INTERFACE_FORMAT_SHIFT = 30
INTERFACE_VALUE_MASK = 0x3FFFFFFF
SOURCE_TYPE_SHIFT = 24
SOURCE_INDEX_MASK = 0xFFFFFF
# extended_switch (sFlow errata): 0xffffffff means unknown
UNKNOWN_U32 = 0xFFFFFFFF

# Packet headers inside sampled_header, as NumPy record types (network byte order)
ETHERNET_HEADER = np.dtype([  # IEEE 802.3 MAC header; a MAC as 16 + 32 bits
    ("dst_hi", ">u2"), ("dst_lo", ">u4"), ("src_hi", ">u2"), ("src_lo", ">u4"),
    ("ethertype", ">u2")])
IPV4_HEADER = np.dtype([  # RFC 791, without options
    ("version_ihl", "u1"), ("tos", "u1"), ("total_length", ">u2"), ("identification", ">u2"),
    ("flags_fragment", ">u2"), ("ttl", "u1"), ("protocol", "u1"), ("checksum", ">u2"),
    ("src", ">u4"), ("dst", ">u4")])
IPV6_HEADER = np.dtype([  # RFC 8200
    ("version_class_flow", ">u4"), ("payload_length", ">u2"), ("next_header", "u1"),
    ("hop_limit", "u1"), ("src", "V16"), ("dst", "V16")])
IPV6_EXTENSION_HEADER = np.dtype([  # first 8 bytes; the last two fields are the fragment
    ("next_header", "u1"), ("length", "u1"), ("fragment", ">u2"),  # header's (RFC 8200 4.5)
    ("identification", ">u4")])
TRANSPORT_HEADER = np.dtype([  # TCP (RFC 9293) up to its flags; UDP and SCTP start with the
    ("src_port", ">u2"), ("dst_port", ">u2"),  # ports too, ICMP with type and code
    ("seq", ">u4"), ("ack", ">u4"), ("data_offset", "u1"), ("flags", "u1")])
# EtherTypes (IEEE 802 registry)
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)  # 802.1Q, 802.1ad, pre-standard Q-in-Q
MAX_VLAN_TAGS = 4  # stacked tags looked through before giving up on the header

# IP protocol numbers (IANA)
ICMP = 1
TCP = 6
UDP = 17
ICMP6 = 58
SCTP = 132
PORT_PROTOCOLS = (TCP, UDP, SCTP)  # source and destination port are the first 4 bytes
# IPv6 extension headers walked to find the upper-layer protocol (RFC 8200 4.x):
# hop-by-hop, routing, destination options (8-byte units), fragment, AH (RFC 4302:
# 4-byte units, minus 2). ESP hides what follows it, so it ends the walk.
IPV6_EXT_8BYTE_UNITS = (0, 43, 60)
IPV6_FRAGMENT = 44
IPV6_AH = 51
MAX_IPV6_EXT_HEADERS = 8


_XDR_TYPES = {
    "I": ">u4",  # unsigned int
    "Q": ">u8",  # unsigned hyper
    "A": ">u4",  # ip_v4: opaque[4], read as a number
    "B": "V16",  # ip_v6: opaque[16]
    "M": ">u8",  # mac: opaque[6], padded to 8 bytes, so the MAC is the top 48 bits
}


def _xdr(spec: str) -> np.dtype:
    """NumPy record type of a fixed XDR structure written as ``"name I name Q ..."`` (codes
    in _XDR_TYPES): one gather then reads the structure of every sample at once."""
    words = spec.split()
    return np.dtype([(name, _XDR_TYPES[code])
                     for name, code in zip(words[::2], words[1::2], strict=True)])


# The fixed part of the structures, names as in the spec; a trailing "records" is the
# element count of the flow_record / counter_record array that follows.
FLOW_SAMPLE_STRUCT = _xdr("""sequence_number I  source_id I  sampling_rate I  sample_pool I
    drops I  input I  output I  records I""")
FLOW_SAMPLE_EXPANDED_STRUCT = _xdr("""sequence_number I  source_id_type I  source_id_index I
    sampling_rate I  sample_pool I  drops I  input_format I  input I  output_format I
    output I  records I""")
COUNTERS_SAMPLE_STRUCT = _xdr("sequence_number I  source_id I  records I")
COUNTERS_SAMPLE_EXPANDED_STRUCT = _xdr(
    "sequence_number I  source_id_type I  source_id_index I  records I")
SAMPLED_HEADER_STRUCT = _xdr("protocol I  frame_length I  stripped I  header_length I")
EXTENDED_SWITCH_STRUCT = _xdr("src_vlan I  src_priority I  dst_vlan I  dst_priority I")
EXTENDED_ROUTER_MASKS = _xdr("src_mask_len I  dst_mask_len I")  # after the next hop address
SAMPLED_ETHERNET_STRUCT = _xdr("length I  src_mac M  dst_mac M  type I")
SAMPLED_IPV4_STRUCT = _xdr("""length I  protocol I  src_ip A  dst_ip A  src_port I  dst_port I
    tcp_flags I  tos I""")
SAMPLED_IPV6_STRUCT = _xdr("""length I  protocol I  src_ip B  dst_ip B  src_port I  dst_port I
    tcp_flags I  priority I""")
# struct if_counters (counter_data 0/1), RFC 2233 names in snake case
IF_COUNTERS_STRUCT = _xdr("""
    if_index I  if_type I  if_speed Q  if_direction I  if_status I  if_in_octets Q
    if_in_ucast_pkts I  if_in_multicast_pkts I  if_in_broadcast_pkts I  if_in_discards I
    if_in_errors I  if_in_unknown_protos I  if_out_octets Q  if_out_ucast_pkts I
    if_out_multicast_pkts I  if_out_broadcast_pkts I  if_out_discards I  if_out_errors I
    if_promiscuous_mode I""")
# struct ethernet_counters (counter_data 0/2), RFC 2358 dot3Stats* names in snake case
ETHERNET_COUNTERS_STRUCT = _xdr("""
    dot3_stats_alignment_errors I  dot3_stats_fcs_errors I
    dot3_stats_single_collision_frames I  dot3_stats_multiple_collision_frames I
    dot3_stats_sqe_test_errors I  dot3_stats_deferred_transmissions I
    dot3_stats_late_collisions I  dot3_stats_excessive_collisions I
    dot3_stats_internal_mac_transmit_errors I  dot3_stats_carrier_sense_errors I
    dot3_stats_frame_too_longs I  dot3_stats_internal_mac_receive_errors I
    dot3_stats_symbol_errors I""")

# ---------------------------------------------------------------- output

DATAGRAM_SCHEMA = pa.schema([
    ("datagram", pa.int32()),  # index of the datagram in the batch
    ("exporter", pa.string()),  # address the datagram came from (the caller's)
    ("sampler_address", pa.string()),  # agent address
    ("sub_agent_id", pa.uint32()),
    ("sequence_num", pa.uint32()),  # datagram sequence number
    ("uptime_ms", pa.uint32()),
    ("samples", pa.uint32()),  # sample count the header declares
])

_OTHER_RECORD = pa.struct([("enterprise", pa.uint32()), ("format", pa.uint32()),
                           ("data", pa.binary())])

FLOW_SCHEMA = pa.schema([
    ("datagram", pa.int32()),
    ("sampler_address", pa.string()),
    ("sequence_num", pa.uint32()),  # of the datagram, as GoFlow2 reports it
    ("sample_sequence_num", pa.uint32()),
    ("source_id_type", pa.uint32()),
    ("source_id_index", pa.uint32()),
    ("sampling_rate", pa.uint32()),
    ("sample_pool", pa.uint32()),
    ("drops", pa.uint32()),
    ("in_if_format", pa.uint32()),
    ("in_if", pa.uint32()),
    ("out_if_format", pa.uint32()),  # 0 one interface, 1 discarded (out_if: reason), 2 many
    ("out_if", pa.uint32()),
    ("header_protocol", pa.uint32()),
    ("bytes", pa.uint32()),  # frame length (sampled_ethernet/ipv4/ipv6: their length)
    ("packets", pa.uint32()),  # always 1: one sampled packet
    ("stripped", pa.uint32()),
    ("header_length", pa.uint32()),
    ("src_mac", pa.string()),
    ("dst_mac", pa.string()),
    ("etype", pa.uint16()),
    ("vlan_id", pa.uint16()),
    ("src_addr", pa.string()),
    ("dst_addr", pa.string()),
    ("proto", pa.uint8()),
    ("ip_tos", pa.uint8()),
    ("ip_ttl", pa.uint8()),
    ("ip_flags", pa.uint8()),
    ("fragment_id", pa.uint32()),
    ("fragment_offset", pa.uint16()),
    ("ipv6_flow_label", pa.uint32()),
    ("ip_total_length", pa.uint32()),
    ("src_port", pa.uint16()),
    ("dst_port", pa.uint16()),
    ("tcp_flags", pa.uint8()),
    ("icmp_type", pa.uint8()),
    ("icmp_code", pa.uint8()),
    ("src_vlan", pa.uint32()),
    ("src_priority", pa.uint32()),
    ("dst_vlan", pa.uint32()),
    ("dst_priority", pa.uint32()),
    ("next_hop", pa.string()),
    ("src_mask_len", pa.uint32()),
    ("dst_mask_len", pa.uint32()),
    ("bgp_next_hop", pa.string()),
    ("router_as", pa.uint32()),
    ("src_as", pa.uint32()),
    ("dst_as", pa.uint32()),
    ("next_hop_as", pa.uint32()),
    ("src_peer_as", pa.uint32()),
    ("as_path", pa.list_(pa.uint32())),
    ("bgp_communities", pa.list_(pa.uint32())),
    ("local_pref", pa.uint32()),
    ("other_records", pa.list_(_OTHER_RECORD)),  # flow records of other formats, as sent
])

COUNTER_SCHEMA = pa.schema(
    [("datagram", pa.int32()), ("sampler_address", pa.string()), ("sequence_num", pa.uint32()),
     ("sample_sequence_num", pa.uint32()), ("source_id_type", pa.uint32()),
     ("source_id_index", pa.uint32()), ("enterprise", pa.uint32()), ("format", pa.uint32())]
    + [(name, pa.from_numpy_dtype(struct_.fields[name][0].newbyteorder("=")))
       for struct_ in (IF_COUNTERS_STRUCT, ETHERNET_COUNTERS_STRUCT) for name in struct_.names]
    + [("data", pa.binary())]  # the record as sent, for formats other than 0/1 and 0/2
)

OTHER_SAMPLE_SCHEMA = pa.schema([("datagram", pa.int32()), ("enterprise", pa.uint32()),
                                 ("format", pa.uint32()), ("data", pa.binary())])

EXCERPT_BYTES = 64
PAD = bytes(64)  # after the batch's datagrams: room for pass 2's reads past captured bytes


class DecodeError(ValueError):
    """The bytes are not a readable sFlow v5 datagram."""


@dataclass(frozen=True, slots=True)
class SampleError:
    """A datagram or a sample that could not be decoded (the rest of the batch could)."""

    datagram: int  # index in the batch
    exporter: str
    offset: int  # where in the datagram the bad part starts
    message: str
    excerpt: bytes  # up to EXCERPT_BYTES from ``offset``, for the failure store


@dataclass(slots=True)
class Decoded:
    datagrams: pa.Table  # DATAGRAM_SCHEMA, one row per datagram whose header decoded
    flows: pa.Table  # FLOW_SCHEMA, one row per flow sample
    counters: pa.Table  # COUNTER_SCHEMA, one row per counter record
    other_samples: pa.Table  # OTHER_SAMPLE_SCHEMA, samples of formats not decoded here
    errors: list[SampleError] = field(default_factory=list)


def decode(datagram: bytes, exporter: str = "") -> Decoded:
    """One datagram; raises DecodeError when its header is unreadable."""
    batch = _Batch(datagram + PAD)
    _walk(batch, 0, len(datagram), 0, exporter)
    return batch.columns()


def decode_many(datagrams: Sequence[tuple[bytes, str]]) -> Decoded:
    """A batch of (datagram, exporter address) into one set of tables; never raises for bad
    input: an unreadable datagram becomes an error entry."""
    batch = _Batch(b"".join([*(d for d, _ in datagrams), PAD]))
    start = 0
    for i, (data, exporter) in enumerate(datagrams):
        end = start + len(data)
        try:
            _walk(batch, start, end, i, exporter)
        except DecodeError as e:
            batch.error(i, exporter, start, start, end, str(e))
        start = end
    return batch.columns()


# ---------------------------------------------------------------- pass 1: the XDR walk

_U32 = struct.Struct(">I")
_U32x2 = struct.Struct(">II")
_U32x4 = struct.Struct(">IIII")
# per flow sample: datagram, sample body, expanded, then the body offsets of its records
# (-1 when absent), the index of its gateway record and how many other records it has
_FLOW_ROW = 11
# per counter record: datagram, sample body, expanded, data_format, record body
_COUNTER_ROW = 5


class _Malformed(Exception):
    """A sample breaks its structure; it is reported and skipped."""


@dataclass(slots=True)
class _Batch:
    blob: bytes
    datagrams: list[tuple[int, str, str | None, int, int, int, int]] = field(default_factory=list)
    flows: list[int] = field(default_factory=list)  # _FLOW_ROW ints per flow sample
    # (next hop body, address type, as, src_as, src_peer_as, as path, communities, localpref)
    gateways: list[tuple[int, int, int, int, int, tuple[int, ...], tuple[int, ...], int]] = (
        field(default_factory=list))
    others: list[tuple[int, int, bytes]] = field(default_factory=list)  # (ent, format, data)
    counters: list[int] = field(default_factory=list)  # _COUNTER_ROW ints per counter record
    counter_data: list[bytes | None] = field(default_factory=list)
    other_samples: list[tuple[int, int, int, bytes]] = field(default_factory=list)
    errors: list[SampleError] = field(default_factory=list)

    def error(self, dg: int, exporter: str, start: int, at: int, end: int, message: str) -> None:
        self.errors.append(SampleError(dg, exporter, at - start, "sflow: " + message,
                                       self.blob[at:min(at + EXCERPT_BYTES, end)]))

    def columns(self) -> Decoded:
        return _columns(self)


def _format(data_format: int) -> str:
    return f"{data_format >> 12}/{data_format & 0xFFF}"


def _walk(batch: _Batch, start: int, end: int, dg: int, exporter: str) -> None:
    """The datagram blob[start:end]: header, then each sample within its own length."""
    blob = batch.blob
    if end - start < 8:
        raise DecodeError(f"{end - start} bytes, too short for an sFlow datagram")
    version, atype = _U32x2.unpack_from(blob, start)
    if version != VERSION5:
        raise DecodeError(f"not sFlow version 5 (version {version})")
    alen = ADDRESS_SIZES.get(atype)
    if alen is None:
        raise DecodeError(f"unknown agent address type {atype}")
    p = start + 8 + alen
    if p + 16 > end:
        raise DecodeError(f"datagram header truncated ({end - start} bytes)")
    sub_agent, seq, uptime, nsamples = _U32x4.unpack_from(blob, p)
    batch.datagrams.append((dg, exporter, _address_text(blob, start + 8, atype), sub_agent, seq,
                            uptime, nsamples))
    p += 16
    # every sample takes at least 8 bytes, so a lying count ends with the data
    for i in range(nsamples):
        if p + 8 > end:
            batch.error(dg, exporter, start, p, end,
                        f"datagram ends after {i} of {nsamples} samples")
            return
        fmt, length = _U32x2.unpack_from(blob, p)
        body = p + 8
        nxt = body + length
        if nxt > end:
            batch.error(dg, exporter, start, p, end, f"sample {i + 1} of {nsamples} "
                        f"({_format(fmt)}): length {length} runs past the datagram end")
            return
        try:
            if fmt in (FLOW_SAMPLE, FLOW_SAMPLE_EXPANDED):
                _flow_sample(batch, body, nxt, fmt == FLOW_SAMPLE_EXPANDED, dg)
            elif fmt in (COUNTERS_SAMPLE, COUNTERS_SAMPLE_EXPANDED):
                _counters_sample(batch, body, nxt, fmt == COUNTERS_SAMPLE_EXPANDED, dg)
            else:
                batch.other_samples.append((dg, fmt >> 12, fmt & 0xFFF, blob[body:nxt]))
        except _Malformed as e:
            batch.error(dg, exporter, start, p, end,
                        f"sample {i + 1} of {nsamples} ({_format(fmt)}): {e}")
        p = nxt + (-length & 3)  # XDR pads opaque data to 4 bytes


_HEADER_FIXED = SAMPLED_HEADER_STRUCT.itemsize
_SWITCH_SIZE = EXTENDED_SWITCH_STRUCT.itemsize


def _records(blob: bytes, p: int, end: int, nrec: int) -> Iterator[tuple[int, int, int]]:
    """(data_format, offset, length) of each record of a sample. A record takes at least 8
    bytes, so a lying count cannot loop past the sample's end."""
    for j in range(nrec):
        if p + 8 > end:
            raise _Malformed(f"ends after {j} of {nrec} records")
        fmt, length = _U32x2.unpack_from(blob, p)
        rb = p + 8
        if rb + length > end:
            raise _Malformed(f"record {j + 1} of {nrec} ({_format(fmt)}): length {length} "
                             "runs past the sample end")
        yield fmt, rb, length
        p = rb + length + (-length & 3)  # XDR pads opaque data to 4 bytes


def _flow_sample(batch: _Batch, body: int, end: int, expanded: bool, dg: int) -> None:
    """Checks the records of one flow sample and notes where they are. The hot path: one
    unpack per record; the fields themselves are read in pass 2."""
    blob = batch.blob
    first = body + (FLOW_SAMPLE_EXPANDED_STRUCT if expanded else FLOW_SAMPLE_STRUCT).itemsize
    if first > end:
        raise _Malformed(f"{end - body} bytes, fewer than its {first - body} fixed bytes")
    (nrec,) = _U32.unpack_from(blob, first - 4)
    hdr = eth = ip4 = ip6 = switch = router = -1
    gateway = None
    others: list[tuple[int, int, bytes]] | None = None
    for fmt, rb, length in _records(blob, first, end, nrec):
        if fmt == SAMPLED_HEADER:
            need = _HEADER_FIXED
            if length >= need:
                need += _U32.unpack_from(blob, rb + 12)[0]  # the header bytes
            if length < need:
                raise _Malformed(_short(fmt, length, need))
            hdr = rb
        elif fmt == EXTENDED_SWITCH:
            if length < _SWITCH_SIZE:
                raise _Malformed(_short(fmt, length, _SWITCH_SIZE))
            switch = rb
        elif fmt == EXTENDED_ROUTER:
            need = 4
            if length >= need:
                need += _address_size(blob, rb) + 8  # next hop, two mask lengths
            if length < need:
                raise _Malformed(_short(fmt, length, need))
            router = rb
        elif fmt == EXTENDED_GATEWAY:
            gateway = _gateway(blob, rb, rb + length)
        elif fmt == SAMPLED_ETHERNET:
            if length < SAMPLED_ETHERNET_STRUCT.itemsize:
                raise _Malformed(_short(fmt, length, SAMPLED_ETHERNET_STRUCT.itemsize))
            eth = rb
        elif fmt == SAMPLED_IPV4:
            if length < SAMPLED_IPV4_STRUCT.itemsize:
                raise _Malformed(_short(fmt, length, SAMPLED_IPV4_STRUCT.itemsize))
            ip4 = rb
        elif fmt == SAMPLED_IPV6:
            if length < SAMPLED_IPV6_STRUCT.itemsize:
                raise _Malformed(_short(fmt, length, SAMPLED_IPV6_STRUCT.itemsize))
            ip6 = rb
        else:
            if others is None:
                others = []
            others.append((fmt >> 12, fmt & 0xFFF, blob[rb:rb + length]))
    # the sample is sound: only now does it add to the batch
    gw = -1
    if gateway is not None:
        gw = len(batch.gateways)
        batch.gateways.append(gateway)
    if others:
        batch.others += others
    batch.flows += (dg, body, expanded, hdr, eth, ip4, ip6, switch, router, gw,
                    len(others) if others else 0)


def _short(fmt: int, length: int, size: int) -> str:
    return f"record {_format(fmt)} of {length} bytes, needs {size}"


def _address_size(blob: bytes, at: int) -> int:
    (atype,) = _U32.unpack_from(blob, at)
    size = ADDRESS_SIZES.get(atype)
    if size is None:
        raise _Malformed(f"unknown address type {atype}")
    return size


def _gateway(blob: bytes, rb: int, end: int
             ) -> tuple[int, int, int, int, int, tuple[int, ...], tuple[int, ...], int]:
    """struct extended_gateway; the AS path segments (AS_SET or AS_SEQUENCE) are flattened
    in order, as GoFlow2 does."""
    if rb + 4 > end:
        raise _Malformed("extended gateway truncated")
    (atype,) = _U32.unpack_from(blob, rb)
    p = rb + 4 + _address_size(blob, rb)
    if p + 16 > end:
        raise _Malformed("extended gateway truncated")
    router_as, src_as, src_peer_as, nseg = _U32x4.unpack_from(blob, p)
    p += 16
    path: list[int] = []
    for _ in range(nseg):  # each segment takes at least 8 bytes: bounded by the record
        if p + 8 > end:
            raise _Malformed("extended gateway AS path truncated")
        _, count = _U32x2.unpack_from(blob, p)
        p += 8
        if p + 4 * count > end:
            raise _Malformed("extended gateway AS path truncated")
        path += struct.unpack_from(f">{count}I", blob, p)  # struct caches the format
        p += 4 * count
    if p + 4 > end:
        raise _Malformed("extended gateway communities truncated")
    (ncomm,) = _U32.unpack_from(blob, p)
    p += 4
    if p + 4 * ncomm + 4 > end:
        raise _Malformed("extended gateway communities truncated")
    communities = struct.unpack_from(f">{ncomm}I", blob, p) if ncomm else ()
    (local_pref,) = _U32.unpack_from(blob, p + 4 * ncomm)
    return (rb + 4, atype, router_as, src_as, src_peer_as, tuple(path), communities, local_pref)


def _counters_sample(batch: _Batch, body: int, end: int, expanded: bool, dg: int) -> None:
    blob = batch.blob
    first = body + (COUNTERS_SAMPLE_EXPANDED_STRUCT if expanded
                    else COUNTERS_SAMPLE_STRUCT).itemsize
    if first > end:
        raise _Malformed(f"{end - body} bytes, fewer than its {first - body} fixed bytes")
    (nrec,) = _U32.unpack_from(blob, first - 4)
    rows: list[int] = []
    data: list[bytes | None] = []
    for fmt, rb, length in _records(blob, first, end, nrec):
        known = _COUNTER_STRUCTS.get(fmt)
        if known is None:
            data.append(blob[rb:rb + length])
        elif length < known.itemsize:
            raise _Malformed(_short(fmt, length, known.itemsize))
        else:
            data.append(None)
        rows += (dg, body, expanded, fmt, rb)
    batch.counters += rows
    batch.counter_data += data


_COUNTER_STRUCTS = {IF_COUNTERS: IF_COUNTERS_STRUCT, ETHERNET_COUNTERS: ETHERNET_COUNTERS_STRUCT}


def _address_text(blob: bytes, at: int, atype: int) -> str | None:
    """The address whose bytes start at ``at``."""
    if atype == ADDRESS_V4:
        return socket.inet_ntop(socket.AF_INET, blob[at:at + 4])
    if atype == ADDRESS_V6:
        return socket.inet_ntop(socket.AF_INET6, blob[at:at + 16])
    return None


# ---------------------------------------------------------------- pass 2: columns

Col = tuple[np.ndarray, np.ndarray]  # (values, valid)

# decimal and hex text of each byte value, for building addresses column-wise
_DECIMAL = pa.array([str(i) for i in range(256)], pa.string())
_HEX = pa.array([f"{i:02x}" for i in range(256)], pa.string())


class _Reader:
    """Vectorized big-endian reads at many offsets of one buffer.

    Rows where ``ok`` is false are not read (their offsets may point anywhere) and come out
    as 0. A structure read where only its first bytes were captured may run past them;
    those bytes are never used, and the PAD bytes after the batch keep every such read
    inside the buffer.
    """

    __slots__ = ("buf",)

    def __init__(self, blob: bytes) -> None:
        self.buf = np.frombuffer(blob, np.uint8)

    def u8(self, pos: np.ndarray, ok: np.ndarray) -> np.ndarray:
        return self.buf[np.where(ok, pos, 0)].astype(np.int64) * ok

    def u16(self, pos: np.ndarray, ok: np.ndarray) -> np.ndarray:
        return self._word(pos, ok, 2)

    def u32(self, pos: np.ndarray, ok: np.ndarray) -> np.ndarray:
        return self._word(pos, ok, 4)

    def _word(self, pos: np.ndarray, ok: np.ndarray, width: int) -> np.ndarray:
        raw = self.buf[np.where(ok, pos, 0)[:, None] + np.arange(width)]  # one gather
        return raw.view(f">u{width}")[:, 0].astype(np.int64) * ok

    def record(self, pos: np.ndarray, ok: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """The structure ``dtype`` at each offset where ``ok`` (zeros elsewhere)."""
        rows = np.flatnonzero(ok)
        found = self.buf[pos[rows, None] + np.arange(dtype.itemsize)].view(dtype)[:, 0]
        if len(rows) == len(pos):
            return found
        out = np.zeros(len(pos), dtype)
        out[rows] = found
        return out


def _columns(batch: _Batch) -> Decoded:
    rd = _Reader(batch.blob)
    d = batch.datagrams
    datagrams = pa.table({
        "datagram": pa.array([x[0] for x in d], pa.int32()),
        "exporter": pa.array([x[1] for x in d], pa.string()),
        "sampler_address": pa.array([x[2] for x in d], pa.string()),
        "sub_agent_id": pa.array([x[3] for x in d], pa.uint32()),
        "sequence_num": pa.array([x[4] for x in d], pa.uint32()),
        "uptime_ms": pa.array([x[5] for x in d], pa.uint32()),
        "samples": pa.array([x[6] for x in d], pa.uint32()),
    }, schema=DATAGRAM_SCHEMA)
    # row of each batch datagram in ``datagrams`` (only decoded ones have samples)
    dg_row = np.full(max((x[0] for x in d), default=-1) + 1, -1, np.int64)
    dg_row[[x[0] for x in d]] = np.arange(len(d))
    flows = _flow_table(batch, rd, datagrams, dg_row)
    counters = _counter_table(batch, rd, datagrams, dg_row)
    o = batch.other_samples
    other_samples = pa.table({
        "datagram": pa.array([s[0] for s in o], pa.int32()),
        "enterprise": pa.array([s[1] for s in o], pa.uint32()),
        "format": pa.array([s[2] for s in o], pa.uint32()),
        "data": pa.array([s[3] for s in o], pa.binary()),
    }, schema=OTHER_SAMPLE_SCHEMA)
    return Decoded(datagrams, flows, counters, other_samples, batch.errors)


def _datagram_columns(datagrams: pa.Table, dg_row: np.ndarray, dg: np.ndarray
                      ) -> list[pa.Array]:
    """datagram, sampler_address and sequence_num of each sample's datagram."""
    rows = pa.array(dg_row[dg])
    return [pa.array(dg.astype(np.int32)),
            datagrams.column("sampler_address").combine_chunks().take(rows),
            datagrams.column("sequence_num").combine_chunks().take(rows)]


def _sample_head(rd: _Reader, body: np.ndarray, expanded: np.ndarray, compact: np.dtype,
                 wide: np.dtype) -> tuple[np.ndarray, ...]:
    """Fixed part of flow or counter samples, compact or expanded: (sequence number, source
    id type, source id index, the compact structures, the expanded structures)."""
    c = rd.record(body, ~expanded, compact)
    e = rd.record(body, expanded, wide)
    source_id = c["source_id"].astype(np.int64)
    return (np.where(expanded, e["sequence_number"], c["sequence_number"]),
            np.where(expanded, e["source_id_type"], source_id >> SOURCE_TYPE_SHIFT),
            np.where(expanded, e["source_id_index"], source_id & SOURCE_INDEX_MASK), c, e)


def _flow_table(batch: _Batch, rd: _Reader, datagrams: pa.Table, dg_row: np.ndarray
                ) -> pa.Table:
    rows = np.array(batch.flows, np.int64).reshape(-1, _FLOW_ROW)
    dg, body, expanded, hdr, eth, ip4, ip6, switch, router, gw, nothers = rows.T
    expanded = expanded.astype(bool)
    yes = np.ones(len(rows), bool)

    seq, source_type, source_index, c, e = _sample_head(
        rd, body, expanded, FLOW_SAMPLE_STRUCT, FLOW_SAMPLE_EXPANDED_STRUCT)
    # compact interfaces carry their format in the top 2 bits
    c_in, c_out = c["input"].astype(np.int64), c["output"].astype(np.int64)
    cols: dict[str, pa.Array | Col] = {
        "sample_sequence_num": (seq, yes),
        "source_id_type": (source_type, yes),
        "source_id_index": (source_index, yes),
        "sampling_rate": (np.where(expanded, e["sampling_rate"], c["sampling_rate"]), yes),
        "sample_pool": (np.where(expanded, e["sample_pool"], c["sample_pool"]), yes),
        "drops": (np.where(expanded, e["drops"], c["drops"]), yes),
        "in_if_format": (np.where(expanded, e["input_format"], c_in >> INTERFACE_FORMAT_SHIFT),
                         yes),
        "in_if": (np.where(expanded, e["input"], c_in & INTERFACE_VALUE_MASK), yes),
        "out_if_format": (np.where(expanded, e["output_format"],
                                   c_out >> INTERFACE_FORMAT_SHIFT), yes),
        "out_if": (np.where(expanded, e["output"], c_out & INTERFACE_VALUE_MASK), yes),
        "packets": (yes, yes),
    }

    has_hdr = hdr >= 0
    head = rd.record(hdr, has_hdr, SAMPLED_HEADER_STRUCT)
    protocol = head["protocol"].astype(np.int64)
    hlen = head["header_length"].astype(np.int64)
    cols["header_protocol"] = (protocol, has_hdr)
    cols["stripped"] = (head["stripped"], has_hdr)
    cols["header_length"] = (hlen, has_hdr)
    pkt = _Packets(rd, hdr + SAMPLED_HEADER_STRUCT.itemsize, hlen, protocol, has_hdr)
    cols["bytes"] = pkt.alternatives(rd, eth, ip4, ip6, (head["frame_length"], has_hdr))
    cols.update(pkt.columns)
    cols["src_mac"] = _mac_text(*pkt.src_mac)
    cols["dst_mac"] = _mac_text(*pkt.dst_mac)
    cols["src_addr"] = _ip_text(*pkt.src_addr)
    cols["dst_addr"] = _ip_text(*pkt.dst_addr)

    has_sw = switch >= 0
    sw = rd.record(switch, has_sw, EXTENDED_SWITCH_STRUCT)
    for name in EXTENDED_SWITCH_STRUCT.names:
        cols[name] = (sw[name], has_sw & (sw[name] != UNKNOWN_U32))

    has_rt = router >= 0
    rt_type = rd.u32(router, has_rt)
    rt_size = np.where(rt_type == ADDRESS_V4, 4, np.where(rt_type == ADDRESS_V6, 16, 0))
    cols["next_hop"] = _ip_text(*_address_at(rd, router + 4, rt_type, has_rt))
    masks = rd.record(router + 4 + rt_size, has_rt, EXTENDED_ROUTER_MASKS)
    cols["src_mask_len"] = (masks["src_mask_len"], has_rt)
    cols["dst_mask_len"] = (masks["dst_mask_len"], has_rt)

    cols.update(_gateway_columns(batch, rd, gw))
    cols["other_records"] = _other_records(batch, nothers)

    arrays = _datagram_columns(datagrams, dg_row, dg)
    arrays += [_arrow(cols[f.name], f.type) for f in list(FLOW_SCHEMA)[len(arrays):]]
    return pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA)


Address = tuple[np.ndarray, np.ndarray, np.ndarray]  # (family 4/6/0, IPv4 as u32, IPv6 V16)


class _Packets:
    """The sampled packet headers of a batch, parsed all at once. A field is valid only
    where the captured bytes reach it. ``columns`` holds the numeric fields; MACs are
    (uint64 value, valid) and addresses ``Address`` triples, turned into text later."""

    __slots__ = ("columns", "src_mac", "dst_mac", "src_addr", "dst_addr")

    def __init__(self, rd: _Reader, start: np.ndarray, hlen: np.ndarray, proto: np.ndarray,
                 has: np.ndarray) -> None:
        end = start + hlen
        cols: dict[str, Col] = {}
        self.columns = cols

        # Ethernet II, then any stacked VLAN tags (TPID, tag control, next EtherType)
        ether = has & (proto == HEADER_ETHERNET) & (hlen >= ETHERNET_HEADER.itemsize)
        frame = rd.record(start, ether, ETHERNET_HEADER)
        self.dst_mac = (_mac_value(frame["dst_hi"], frame["dst_lo"]), ether)
        self.src_mac = (_mac_value(frame["src_hi"], frame["src_lo"]), ether)
        etype = frame["ethertype"].astype(np.int64)
        l3 = start + ETHERNET_HEADER.itemsize
        vlan = np.zeros(len(start), np.int64)
        tagged = np.zeros(len(start), bool)
        for _ in range(MAX_VLAN_TAGS):
            tag = ether & _any_of(etype, VLAN_TPIDS) & (l3 + 4 <= end)
            if not tag.any():
                break
            word = rd.u32(l3, tag)
            vlan = np.where(tag & ~tagged, word >> 16 & 0x0FFF, vlan)
            tagged |= tag
            etype = np.where(tag, word & 0xFFFF, etype)
            l3 = l3 + tag * 4
        # header_protocol IPv4 / IPv6: the header starts at the IP header
        bare4 = has & (proto == HEADER_IPV4)
        bare6 = has & (proto == HEADER_IPV6)
        etype = np.where(bare4, ETHERTYPE_IPV4, np.where(bare6, ETHERTYPE_IPV6, etype))
        l3 = np.where(bare4 | bare6, start, l3)
        cols["etype"] = (etype, ether | bare4 | bare6)
        cols["vlan_id"] = (vlan, tagged)

        version = rd.u8(l3, has & (l3 < end)) >> 4
        v4 = has & (etype == ETHERTYPE_IPV4) & (l3 + IPV4_HEADER.itemsize <= end) & (version == 4)
        v6 = has & (etype == ETHERTYPE_IPV6) & (l3 + IPV6_HEADER.itemsize <= end) & (version == 6)
        ip = v4 | v6
        h4 = rd.record(l3, v4, IPV4_HEADER)
        h6 = rd.record(l3, v6, IPV6_HEADER)
        ihl = (h4["version_ihl"] & 0x0F).astype(np.int64) * 4
        flags_frag = h4["flags_fragment"].astype(np.int64)
        word0 = h6["version_class_flow"].astype(np.int64)
        l4, nh, frag6, flags6, ident6, offset6 = _ipv6_extensions(
            rd, l3 + IPV6_HEADER.itemsize, h6["next_header"].astype(np.int64), v6, end)
        fragment = v4 | frag6
        proto_l4 = np.where(v4, h4["protocol"], nh)
        frag_offset = np.where(v4, flags_frag & 0x1FFF, offset6)
        cols["proto"] = (proto_l4, ip)
        cols["ip_tos"] = (np.where(v4, h4["tos"], word0 >> 20 & 0xFF), ip)
        cols["ip_ttl"] = (np.where(v4, h4["ttl"], h6["hop_limit"]), ip)
        cols["ip_flags"] = (np.where(v4, flags_frag >> 13, flags6), fragment)
        cols["fragment_id"] = (np.where(v4, h4["identification"], ident6), fragment)
        cols["fragment_offset"] = (frag_offset, fragment)
        cols["ipv6_flow_label"] = (word0 & 0xFFFFF, v6)
        cols["ip_total_length"] = (np.where(v4, h4["total_length"],
                                            h6["payload_length"].astype(np.int64)
                                            + IPV6_HEADER.itemsize), ip)
        family = np.where(v4, 4, np.where(v6, 6, 0))
        self.src_addr = (family, h4["src"], h6["src"])
        self.dst_addr = (family.copy(), h4["dst"], h6["dst"])

        # transport: only the first fragment carries its header
        l4 = np.where(v4, l3 + ihl, l4)
        first = ip & (frag_offset == 0) & (~v4 | (ihl >= IPV4_HEADER.itemsize))
        t = rd.record(l4, first & (l4 + 2 <= end), TRANSPORT_HEADER)
        ports = first & _any_of(proto_l4, PORT_PROTOCOLS) & (l4 + 4 <= end)
        cols["src_port"] = (t["src_port"], ports)
        cols["dst_port"] = (t["dst_port"], ports)
        tcp = first & (proto_l4 == TCP) & (l4 + TRANSPORT_HEADER.itemsize <= end)
        cols["tcp_flags"] = (t["flags"], tcp)
        icmp = first & ((v4 & (proto_l4 == ICMP)) | (v6 & (proto_l4 == ICMP6))) & (l4 + 2 <= end)
        cols["icmp_type"] = (t["src_port"] >> 8, icmp)  # type and code are the first 2 bytes
        cols["icmp_code"] = (t["src_port"] & 0xFF, icmp)

    def alternatives(self, rd: _Reader, eth: np.ndarray, ip4: np.ndarray, ip6: np.ndarray,
                     frame_length: Col) -> Col:
        """sampled_ethernet / sampled_ipv4 / sampled_ipv6 records fill what no sampled
        header gave; returns the bytes column (frame length, else the record's length)."""
        has_eth, has4, has6 = eth >= 0, ip4 >= 0, ip6 >= 0
        cols = self.columns
        e = rd.record(eth, has_eth, SAMPLED_ETHERNET_STRUCT)
        r4 = rd.record(ip4, has4, SAMPLED_IPV4_STRUCT)
        r6 = rd.record(ip6, has6, SAMPLED_IPV6_STRUCT)
        # XDR pads mac[6] to 8 bytes: the MAC is the top 48 bits of the word
        self.src_mac = _fill(self.src_mac, (e["src_mac"] >> np.uint64(16), has_eth))
        self.dst_mac = _fill(self.dst_mac, (e["dst_mac"] >> np.uint64(16), has_eth))
        cols["etype"] = _fill(cols["etype"], (e["type"] & 0xFFFF, has_eth))
        ip = (self.src_addr[0] == 0) & (has4 | has6)
        use4 = ip & has4  # a sample with both records: IPv4 first
        use6 = ip & ~has4
        self.src_addr = _fill_address(self.src_addr, use4, use6, r4["src_ip"], r6["src_ip"])
        self.dst_addr = _fill_address(self.dst_addr, use4, use6, r4["dst_ip"], r6["dst_ip"])
        cols["etype"] = _fill(cols["etype"], (np.where(use4, ETHERTYPE_IPV4, ETHERTYPE_IPV6), ip))
        for name, field4, field6, mask in (
                ("ip_total_length", "length", "length", UNKNOWN_U32),
                ("proto", "protocol", "protocol", 0xFF),
                ("src_port", "src_port", "src_port", 0xFFFF),
                ("dst_port", "dst_port", "dst_port", 0xFFFF),
                ("tcp_flags", "tcp_flags", "tcp_flags", 0xFF),
                ("ip_tos", "tos", "priority", 0xFF)):
            values = np.where(use4, r4[field4], r6[field6]).astype(np.int64) & mask
            cols[name] = _fill(cols[name], (values, ip))
        return _first(frame_length, (e["length"], has_eth), (r4["length"], has4),
                      (r6["length"], has6))


def _ipv6_extensions(rd: _Reader, pos: np.ndarray, nh: np.ndarray, v6: np.ndarray,
                     end: np.ndarray) -> tuple[np.ndarray, ...]:
    """Walk IPv6 extension headers to the upper layer: (its offset, protocol, had a fragment
    header, fragment flags, identification, offset)."""
    frag = np.zeros(len(pos), bool)
    flags = ident = offset = np.zeros(len(pos), np.int64)
    for _ in range(MAX_IPV6_EXT_HEADERS):
        here = v6 & (pos + 8 <= end)
        units8 = here & _any_of(nh, IPV6_EXT_8BYTE_UNITS)
        ah = here & (nh == IPV6_AH)
        fh = here & (nh == IPV6_FRAGMENT)
        move = units8 | ah | fh
        if not move.any():
            break
        ext = rd.record(pos, move, IPV6_EXTENSION_HEADER)
        hdr_len = ext["length"].astype(np.int64)
        word = ext["fragment"].astype(np.int64)
        flags = np.where(fh, word & 0x7, flags)
        offset = np.where(fh, word >> 3, offset)
        ident = np.where(fh, ext["identification"], ident)
        frag |= fh
        nh = np.where(move, ext["next_header"], nh)
        pos = pos + np.where(units8, (hdr_len + 1) * 8, np.where(ah, (hdr_len + 2) * 4,
                                                                  fh * 8))
    return pos, nh, frag, flags, ident, offset


def _fill_address(addr: Address, use4: np.ndarray, use6: np.ndarray, v4: np.ndarray,
                  v6: np.ndarray) -> Address:
    """``addr`` with the IPv4 address ``v4`` where ``use4``, the IPv6 ``v6`` where ``use6``."""
    if not (use4.any() or use6.any()):
        return addr
    family, a4, a6 = (x.copy() for x in addr)
    family[use4], family[use6] = 4, 6
    a4[use4], a6[use6] = v4[use4], v6[use6]
    return family, a4, a6


def _mac_value(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    return hi.astype(np.uint64) << np.uint64(32) | lo.astype(np.uint64)


_ADDRESS_BYTES = np.dtype([("v6", "V16")])  # an address union's value, whatever its type


def _address_at(rd: _Reader, pos: np.ndarray, atype: np.ndarray, ok: np.ndarray) -> Address:
    """The ``address`` union values whose bytes start at ``pos`` (type ``atype``)."""
    raw = rd.record(pos, ok, _ADDRESS_BYTES)["v6"]
    v4 = raw.view(np.uint8).reshape(-1, 16)[:, :4].copy().view(">u4")[:, 0]
    return _family(atype, ok), v4, raw


def _family(atype: np.ndarray, ok: np.ndarray) -> np.ndarray:
    return np.where(ok & (atype == ADDRESS_V4), 4, np.where(ok & (atype == ADDRESS_V6), 6, 0))


def _any_of(values: np.ndarray, choices: tuple[int, ...]) -> np.ndarray:
    out = values == choices[0]
    for c in choices[1:]:
        out |= values == c
    return out


def _fill(col: Col, other: Col) -> Col:
    """``col``, with ``other``'s value where ``col`` has none."""
    values, valid = col
    take = other[1] & ~valid
    if not take.any():
        return col
    return np.where(take, other[0], values), valid | take


def _first(*sources: Col) -> Col:
    """Per row, the value of the first source that has one."""
    values, valid = sources[-1]
    for v, ok in reversed(sources[:-1]):
        values = np.where(ok, v, values)
        valid = ok | valid
    return values, valid


def _arrow(col: pa.Array | Col, typ: pa.DataType) -> pa.Array:
    if isinstance(col, pa.Array):
        return col
    values, valid = col
    return pa.array(np.asarray(values).astype(typ.to_pandas_dtype()), typ,
                    mask=None if valid.all() else ~valid)


def _ip_text(family: np.ndarray, v4: np.ndarray, v6: np.ndarray) -> pa.Array:
    """Text of each row's address: family 4 (``v4``), 6 (``v6``) or 0 (null). Each distinct
    address is formatted once."""
    if not family.any():
        return pa.nulls(len(family), pa.string())
    index = np.full(len(family), -1, np.int64)
    pieces: list[pa.Array] = []
    rows = np.flatnonzero(family == 4)
    if len(rows):
        enc = pc.dictionary_encode(pa.array(v4[rows].astype(np.uint32)))
        octets = enc.dictionary.to_numpy().astype(">u4").view(np.uint8).reshape(-1, 4)
        pieces.append(pc.binary_join_element_wise(
            *(_DECIMAL.take(pa.array(octets[:, i])) for i in range(4)), "."))
        index[rows] = enc.indices.to_numpy()
    rows = np.flatnonzero(family == 6)
    if len(rows):
        # RFC 5952 text (zero compression) is inet_ntop's
        keys = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(rows),
                                                    [None, pa.py_buffer(v6[rows].tobytes())])
        enc = pc.dictionary_encode(keys)
        base = sum(len(p) for p in pieces)
        pieces.append(pa.array([socket.inet_ntop(socket.AF_INET6, k)
                                for k in enc.dictionary.to_pylist()], pa.string()))
        index[rows] = base + enc.indices.to_numpy()
    return _assemble(pieces, index)


def _mac_text(value: np.ndarray, valid: np.ndarray) -> pa.Array:
    """"00:11:22:33:44:55" of each valid 48-bit value (null elsewhere)."""
    rows = np.flatnonzero(valid)
    if not len(rows):
        return pa.nulls(len(value), pa.string())
    index = np.full(len(value), -1, np.int64)
    enc = pc.dictionary_encode(pa.array(value[rows]))
    octets = enc.dictionary.to_numpy().astype(">u8").view(np.uint8).reshape(-1, 8)[:, 2:]
    text = pc.binary_join_element_wise(*(_HEX.take(pa.array(octets[:, i])) for i in range(6)),
                                       ":")
    index[rows] = enc.indices.to_numpy()
    return _assemble([text], index)


def _assemble(pieces: list[pa.Array], index: np.ndarray) -> pa.Array:
    """Row i takes element index[i] of the concatenated pieces; -1 is null."""
    values = pa.concat_arrays(pieces) if len(pieces) > 1 else pieces[0]
    return values.take(pa.array(index, mask=index < 0))


def _gateway_columns(batch: _Batch, rd: _Reader, gw: np.ndarray) -> dict[str, pa.Array | Col]:
    """extended_gateway, with GoFlow2's derived src_as/dst_as/next_hop_as: dst_as is the last
    AS of the path (the router's AS when the path is empty), next_hop_as the first, src_as
    the source AS or, when 0 (unknown), the router's AS."""
    has = gw >= 0
    g = batch.gateways
    fixed = np.array([(x[0], x[1], x[2], x[3], x[4], x[7], len(x[5]), x[5][0] if x[5] else 0,
                       x[5][-1] if x[5] else 0) for x in g], np.int64).reshape(-1, 9)
    fixed = fixed[np.where(has, gw, 0)] if len(g) else np.zeros((len(gw), 9), np.int64)
    nh, atype, router_as, src_as, peer_as, local_pref, path_len, path_first, path_last = (
        fixed.T)
    has_path = has & (path_len > 0)
    return {
        "bgp_next_hop": _ip_text(*_address_at(rd, nh, atype, has)),
        "router_as": (router_as, has),
        "src_as": (np.where(src_as > 0, src_as, router_as), has),
        "dst_as": (np.where(has_path, path_last, router_as), has),
        "next_hop_as": (path_first, has_path),
        "src_peer_as": (peer_as, has),
        "local_pref": (local_pref, has),
        "as_path": _lists([x[5] for x in g], gw),
        "bgp_communities": _lists([x[6] for x in g], gw),
    }


def _lists(values: list[tuple[int, ...]], index: np.ndarray) -> pa.Array:
    """list<uint32> whose row i is values[index[i]] (null where index is -1)."""
    if not values:
        return pa.nulls(len(index), pa.list_(pa.uint32()))
    inner = pa.array(values, pa.list_(pa.uint32()))
    return inner.take(pa.array(index, mask=index < 0))


def _other_records(batch: _Batch, counts: np.ndarray) -> pa.Array:
    """list<struct> of the unknown flow records of each sample, in order (null when none)."""
    if not batch.others:
        return pa.nulls(len(counts), pa.list_(_OTHER_RECORD))
    offsets = np.zeros(len(counts) + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    o = batch.others
    items = pa.StructArray.from_arrays(
        [pa.array([r[0] for r in o], pa.uint32()), pa.array([r[1] for r in o], pa.uint32()),
         pa.array([r[2] for r in o], pa.binary())], fields=list(_OTHER_RECORD))
    return pa.ListArray.from_arrays(pa.array(offsets), items, mask=pa.array(counts == 0))


def _counter_table(batch: _Batch, rd: _Reader, datagrams: pa.Table, dg_row: np.ndarray
                   ) -> pa.Table:
    rows = np.array(batch.counters, np.int64).reshape(-1, _COUNTER_ROW)
    dg, body, expanded, fmt, rb = rows.T
    seq, source_type, source_index, _, _ = _sample_head(
        rd, body, expanded.astype(bool), COUNTERS_SAMPLE_STRUCT, COUNTERS_SAMPLE_EXPANDED_STRUCT)
    yes = np.ones(len(rows), bool)
    arrays = _datagram_columns(datagrams, dg_row, dg)
    arrays += [_arrow((v, yes), pa.uint32())
               for v in (seq, source_type, source_index, fmt >> 12, fmt & 0xFFF)]
    for kind, struct_ in _COUNTER_STRUCTS.items():
        ok = fmt == kind
        found = rd.record(rb, ok, struct_)
        mask = None if ok.all() else ~ok
        for name in struct_.names:
            v = found[name]
            arrays.append(pa.array(v.astype(v.dtype.newbyteorder("=")), mask=mask))
    arrays.append(pa.array(batch.counter_data, pa.binary()))
    return pa.Table.from_arrays(arrays, schema=COUNTER_SCHEMA)
