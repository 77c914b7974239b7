"""UDP payloads out of packet captures (pcap and pcapng), for `netmeta ingest FILE.pcap`.

dpkt reads the capture formats and the link, IP and UDP headers; what is done here is
choosing the link layer, following 802.1Q tags, and reassembling fragmented IPv4/IPv6
datagrams (a flow export or CEF message larger than the MTU arrives in fragments).
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dpkt

_PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"
_MAX_PENDING = 4096  # incomplete fragmented datagrams kept at once
_MAX_FRAGMENTS = 64  # pieces of one datagram: 64 KiB in 1280-byte IPv6 packets takes 52
_MAX_DATAGRAM = 65535
_TIMEOUT = 60.0  # seconds (capture time) an incomplete datagram is waited for, RFC 8200 §4.5


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


@dataclass(slots=True)
class _Train:
    """The pieces so far of one fragmented datagram."""

    start: float
    parts: dict[int, bytes] = field(default_factory=dict)  # by byte offset
    held: int = 0
    size: int | None = None  # known once the piece without "more fragments" is seen


class _Fragments:
    """IPv4 and IPv6 (RFC 8200 §4.5) fragment reassembly, both under the same bounds."""

    def __init__(self) -> None:
        self.pending: dict[tuple, _Train] = {}  # oldest first

    def add(self, ts: float, ip: dpkt.ip.IP | dpkt.ip6.IP6) -> Datagram | None:
        if isinstance(ip, dpkt.ip.IP):
            src, dst = _addr(socket.AF_INET, ip.src), _addr(socket.AF_INET, ip.dst)
            if not ip.mf and ip.offset == 0:
                return _udp(ts, src, dst, ip.p, ip.data)
            key, proto, more, offset = (src, dst, ip.id), ip.p, ip.mf, ip.offset * 8
        else:
            src, dst = _addr(socket.AF_INET6, ip.src), _addr(socket.AF_INET6, ip.dst)
            # dpkt walks the hop-by-hop, destination options and routing headers ahead of the
            # Fragment header; ip.p is the protocol after the last of them
            frag = getattr(ip, "extension_hdrs", {}).get(dpkt.ip.IP_PROTO_FRAGMENT)
            if frag is None:
                return _udp(ts, src, dst, getattr(ip, "p", None), ip.data)
            # UDP must follow the Fragment header: dpkt would read a further extension header
            # into the payload of every fragment but the first
            key, proto, more, offset = (src, dst, frag.id), frag.nxt, frag.m_flag, frag.frag_off * 8
        if proto != dpkt.ip.IP_PROTO_UDP:
            return None
        return self._piece(ts, key, src, dst, offset, bool(more), bytes(ip.data))

    def _piece(self, ts: float, key: tuple, src: str, dst: str, offset: int, more: bool,
               body: bytes) -> Datagram | None:
        if offset + len(body) > _MAX_DATAGRAM or (more and (not body or len(body) % 8)):
            return None  # past 64 KiB, or a non-final piece not a whole number of 8-byte units
        while self.pending and ts - next(iter(self.pending.values())).start > _TIMEOUT:
            del self.pending[next(iter(self.pending))]
        t = self.pending.get(key)
        if t is None:
            if len(self.pending) >= _MAX_PENDING:
                del self.pending[next(iter(self.pending))]
            t = self.pending[key] = _Train(ts)
        t.held += len(body) - len(t.parts.get(offset, b""))  # a duplicate replaces its twin
        t.parts[offset] = body
        if not more:
            t.size = offset + len(body)
        if t.held > _MAX_DATAGRAM or len(t.parts) > _MAX_FRAGMENTS:
            del self.pending[key]
            return None
        if t.size is None or t.held < t.size:
            return None  # pieces still missing
        del self.pending[key]
        data = bytearray()
        for off in sorted(t.parts):
            if off != len(data):
                return None  # overlapping pieces: the whole datagram is dropped (RFC 5722)
            data += t.parts[off]
        if len(data) != t.size or len(data) < 8:
            return None
        udp = dpkt.udp.UDP(bytes(data))
        return Datagram(ts, src, udp.sport, dst, udp.dport, bytes(udp.data))


def _addr(family: int, packed: bytes) -> str:
    return socket.inet_ntop(family, packed)


def _udp(ts: float, src: str, dst: str, proto: int | None, data: object) -> Datagram | None:
    if proto != dpkt.ip.IP_PROTO_UDP or not isinstance(data, dpkt.udp.UDP):
        return None
    return Datagram(ts, src, data.sport, dst, data.dport, bytes(data.data))
