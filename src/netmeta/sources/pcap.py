"""UDP payloads out of packet captures (pcap and pcapng), for `netmeta ingest FILE.pcap`.

dpkt reads the capture formats and the link, IP and UDP headers; what is done here is
choosing the link layer, following 802.1Q tags, and reassembling fragmented IPv4/IPv6
datagrams (a flow export or CEF message larger than the MTU arrives in fragments).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dpkt

_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_MAX_PENDING = 4096  # incomplete fragmented datagrams kept at once
_MAX_DATAGRAM = 65535


@dataclass(frozen=True, slots=True)
class Datagram:
    time: float
    src: str
    sport: int
    dst: str
    dport: int
    payload: bytes


class CaptureError(ValueError):
    """Not a capture file this reader understands."""


def udp_datagrams(path: str | Path) -> Iterator[Datagram]:
    """Every UDP datagram of a capture, reassembled, in capture order."""
    with open(path, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        try:
            reader = dpkt.pcapng.Reader(f) if magic == _PCAPNG_MAGIC else dpkt.pcap.Reader(f)
        except (ValueError, dpkt.dpkt.Error) as e:
            raise CaptureError(f"{path}: not a pcap or pcapng capture ({e})") from None
        link = reader.datalink()
        frags = _Fragments()
        for ts, frame in reader:
            ip = _network_layer(link, frame)
            if ip is not None:
                d = frags.add(ts, ip)
                if d is not None:
                    yield d


def _network_layer(link: int, frame: bytes) -> dpkt.ip.IP | dpkt.ip6.IP6 | None:
    try:
        if link == dpkt.pcap.DLT_EN10MB:
            pkt = dpkt.ethernet.Ethernet(frame).data  # dpkt follows 802.1Q tags itself
        elif link == dpkt.pcap.DLT_LINUX_SLL:
            pkt = dpkt.sll.SLL(frame).data
        elif link == 276:  # DLT_LINUX_SLL2
            pkt = dpkt.sll2.SLL2(frame).data
        elif link in (dpkt.pcap.DLT_RAW, 101, 228, 229):  # raw IP, IPv4, IPv6
            pkt = dpkt.ip6.IP6(frame) if frame[:1] and frame[0] >> 4 == 6 else dpkt.ip.IP(frame)
        elif link == dpkt.pcap.DLT_NULL:
            pkt = dpkt.loopback.Loopback(frame).data
        else:
            return None
    except (dpkt.dpkt.Error, ValueError, IndexError):
        return None
    return pkt if isinstance(pkt, dpkt.ip.IP | dpkt.ip6.IP6) else None


class _Fragments:
    """IPv4 and IPv6 fragment reassembly, bounded."""

    def __init__(self) -> None:
        self.pending: dict[tuple, dict[int, bytes]] = {}
        self.last: dict[tuple, bool] = {}  # the fragment without "more fragments" was seen
        self.size: dict[tuple, int] = {}

    def add(self, ts: float, ip: dpkt.ip.IP | dpkt.ip6.IP6) -> Datagram | None:
        if isinstance(ip, dpkt.ip.IP):
            src, dst = socket.inet_ntop(socket.AF_INET, ip.src), socket.inet_ntop(
                socket.AF_INET, ip.dst)
            more = bool(ip.mf)
            offset = ip.offset * 8  # the header counts 8-byte units
            if not more and offset == 0:
                return _udp(ts, src, dst, ip.p, ip.data)
            key = (src, dst, ip.id, ip.p)
            body, proto = bytes(ip.data), ip.p
        else:
            src, dst = socket.inet_ntop(socket.AF_INET6, ip.src), socket.inet_ntop(
                socket.AF_INET6, ip.dst)
            frag = ip.extension_hdrs.get(dpkt.ip.IP_PROTO_FRAGMENT) if hasattr(
                ip, "extension_hdrs") else None
            if frag is None:
                return _udp(ts, src, dst, ip.nxt, ip.data)
            more, offset = bool(frag.m_flag), frag.frag_off * 8
            key = (src, dst, frag.id, frag.nxt)
            body, proto = bytes(ip.data), frag.nxt
        return self._piece(ts, key, src, dst, proto, offset, more, body)

    def _piece(self, ts: float, key: tuple, src: str, dst: str, proto: int, offset: int,
               more: bool, body: bytes) -> Datagram | None:
        if offset + len(body) > _MAX_DATAGRAM:
            return None
        if key not in self.pending and len(self.pending) >= _MAX_PENDING:
            oldest = next(iter(self.pending))
            for d in (self.pending, self.last, self.size):
                d.pop(oldest, None)
        parts = self.pending.setdefault(key, {})
        parts[offset] = body
        if not more:
            self.last[key] = True
            self.size[key] = offset + len(body)
        if not self.last.get(key):
            return None
        data = bytearray()
        for off in sorted(parts):
            if off != len(data):
                return None  # a hole: wait for the missing piece
            data += parts[off]
        if len(data) != self.size[key]:
            return None
        for d in (self.pending, self.last, self.size):
            d.pop(key, None)
        if proto != dpkt.ip.IP_PROTO_UDP or len(data) < 8:
            return None
        udp = dpkt.udp.UDP(bytes(data))
        return Datagram(ts, src, udp.sport, dst, udp.dport, bytes(udp.data))


def _udp(ts: float, src: str, dst: str, proto: int, data: object) -> Datagram | None:
    if proto != dpkt.ip.IP_PROTO_UDP or not isinstance(data, dpkt.udp.UDP):
        return None
    return Datagram(ts, src, data.sport, dst, data.dport, bytes(data.data))
