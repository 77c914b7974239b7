"""Export datagrams as exporters send them: NetFlow v5, NetFlow v9, IPFIX and sFlow v5.

Only what the demo needs (IPv4 flows), built byte for byte from the RFCs / sFlow spec, so
the demo's traffic goes through the same decoders as a real exporter's.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Flow:
    start: float  # unix seconds
    end: float
    src: str
    dst: str
    sport: int
    dport: int
    proto: int  # IANA number
    bytes: int
    packets: int
    in_if: int = 1
    out_if: int = 2
    tcp_flags: int = 0x1B


def _ip(text: str) -> bytes:
    return socket.inet_aton(text)


# ---------------------------------------------------------------- NetFlow v5

def netflow_v5(flows: Sequence[Flow], export: float, boot: float, sequence: int,
               sampling: int = 0) -> bytes:
    """One v5 datagram (at most 30 flows); ``boot``: the exporter's boot time (sysUptime
    origin); ``sampling``: the header's interval (mode 01, random sampling, when set)."""
    uptime = int((export - boot) * 1000)
    interval = (0x4000 | sampling) if sampling else 0
    out = [struct.pack(">HHIIIIBBH", 5, len(flows), uptime, int(export),
                       int((export % 1) * 1e9), sequence, 0, 0, interval)]
    for f in flows:
        out.append(struct.pack(
            ">4s4s4sHHIIIIHHBBBBHHBBH", _ip(f.src), _ip(f.dst), b"\0" * 4, f.in_if, f.out_if,
            f.packets, f.bytes, int((f.start - boot) * 1000), int((f.end - boot) * 1000),
            f.sport, f.dport, 0, f.tcp_flags if f.proto == 6 else 0, f.proto, 0, 0, 0, 24, 24,
            0))
    return b"".join(out)


# ---------------------------------------------------------------- NetFlow v9 / IPFIX

V9_FIELDS = ((1, 4), (2, 4), (4, 1), (7, 2), (8, 4), (10, 2), (11, 2), (12, 4), (14, 2),
             (21, 4), (22, 4))  # IN_BYTES IN_PKTS PROTOCOL L4_SRC_PORT IPV4_SRC_ADDR ...
IPFIX_FIELDS = ((8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (1, 8), (2, 8), (10, 4),
                (14, 4), (152, 8), (153, 8))  # sourceIPv4Address ... flowEndMilliseconds
TEMPLATE_ID = 256
OPTIONS_ID = 257


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def netflow_v9(flows: Sequence[Flow], export: float, boot: float, sequence: int,
               source_id: int = 1, template: bool = True, sampling: int = 0) -> bytes:
    """One v9 export packet: the template (and an options template plus record giving the
    sampling interval) when ``template``, then a data flowset."""
    sets, count = [], 0
    if template:
        body = struct.pack(">HH", TEMPLATE_ID, len(V9_FIELDS)) + b"".join(
            struct.pack(">HH", t, n) for t, n in V9_FIELDS)
        sets.append(struct.pack(">HH", 0, 4 + len(body)) + body)
        count += 1
        if sampling:
            # options template: scope System (1, 4 bytes); SAMPLING_INTERVAL (34, 4)
            body = struct.pack(">HHHHHHH", OPTIONS_ID, 4, 4, 1, 4, 34, 4)
            sets.append(struct.pack(">HH", 1, 4 + len(_pad4(body))) + _pad4(body))
            rec = _pad4(struct.pack(">II", source_id, sampling))
            sets.append(struct.pack(">HH", OPTIONS_ID, 4 + len(rec)) + rec)
            count += 2
    uptime = lambda t: int((t - boot) * 1000)  # noqa: E731
    recs = b"".join(struct.pack(">IIBHIHHIHII", f.bytes, f.packets, f.proto, f.sport,
                                int.from_bytes(_ip(f.src), "big"), f.in_if, f.dport,
                                int.from_bytes(_ip(f.dst), "big"), f.out_if, uptime(f.end),
                                uptime(f.start)) for f in flows)
    if flows:
        data = _pad4(recs)
        sets.append(struct.pack(">HH", TEMPLATE_ID, 4 + len(data)) + data)
        count += len(flows)
    head = struct.pack(">HHIIII", 9, count, uptime(export), int(export), sequence, source_id)
    return head + b"".join(sets)


def ipfix(flows: Sequence[Flow], export: float, sequence: int, domain: int = 1,
          template: bool = True) -> bytes:
    """One IPFIX message: template set when ``template``, then a data set.
    ``sequence``: data records sent before this message (RFC 7011)."""
    sets = []
    if template:
        body = struct.pack(">HH", TEMPLATE_ID, len(IPFIX_FIELDS)) + b"".join(
            struct.pack(">HH", t, n) for t, n in IPFIX_FIELDS)
        sets.append(struct.pack(">HH", 2, 4 + len(body)) + body)
    recs = b"".join(struct.pack(">4s4sHHBBQQIIQQ", _ip(f.src), _ip(f.dst), f.sport, f.dport,
                                f.proto, f.tcp_flags if f.proto == 6 else 0, f.bytes,
                                f.packets, f.in_if, f.out_if, int(f.start * 1000),
                                int(f.end * 1000)) for f in flows)
    if flows:
        sets.append(struct.pack(">HH", TEMPLATE_ID, 4 + len(recs)) + recs)
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), int(export), sequence, domain) + body


# ---------------------------------------------------------------- sFlow v5

def _packet_header(f: Flow, size: int) -> bytes:
    """Ethernet + IPv4 + TCP/UDP headers of one sampled packet."""
    eth = b"\x00\x1b\x21\x3c\x4d\x5e" + b"\x00\x1c\x73\x01\x02\x03" + b"\x08\x00"
    l4 = (struct.pack(">HHIIBBHHH", f.sport, f.dport, 1, 0, 0x50, 0x18, 65535, 0, 0)
          if f.proto == 6 else struct.pack(">HHHH", f.sport, f.dport, size - 20, 0))
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, size, 0, 0x4000, 64, f.proto, 0, _ip(f.src),
                     _ip(f.dst))
    return eth + ip + l4


def sflow(agent: str, samples: Sequence[tuple[Flow, int]], uptime_ms: int, sequence: int,
          sample_sequence: int, sampling_rate: int, counters: Sequence[tuple[int, int, int]]
          = ()) -> bytes:
    """One sFlow v5 datagram of flow samples (flow, frame size) with a raw packet header
    record each, and generic interface counter samples (if_index, in_octets, out_octets)."""
    out = []
    for i, (f, size) in enumerate(samples):
        hdr = _packet_header(f, size)
        rec = struct.pack(">IIII", 1, size + 4, 0, len(hdr)) + _pad4(hdr)
        record = struct.pack(">II", 1, len(rec)) + rec  # raw packet header
        body = struct.pack(">IIIIIIII", sample_sequence + i, f.in_if, sampling_rate,
                           (sample_sequence + i) * sampling_rate, 0, f.in_if, f.out_if,
                           1) + record
        out.append(struct.pack(">II", 1, len(body)) + body)  # flow sample
    for j, (if_index, in_octets, out_octets) in enumerate(counters):
        generic = struct.pack(">IIQIIQIIIIIIQIIIIII", if_index, 6, 1_000_000_000, 1, 3,
                              in_octets, in_octets // 800, 0, 0, 0, 0, 0, out_octets,
                              out_octets // 800, 0, 0, 0, 0, 0)
        rec = struct.pack(">II", 1, len(generic)) + generic
        body = struct.pack(">III", sequence * 10 + j, if_index, 1) + rec
        out.append(struct.pack(">II", 2, len(body)) + body)  # counters sample
    head = struct.pack(">II4sIIII", 5, 1, _ip(agent), 0, sequence, uptime_ms, len(out))
    return head + b"".join(out)
