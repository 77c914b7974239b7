"""UDP datagrams out of real pcap/pcapng files (written with dpkt's writers)."""

from __future__ import annotations

import socket
from pathlib import Path

import dpkt
import pytest

from netmeta.sources.pcap import CaptureError, udp_datagrams


def _udp(sport: int, dport: int, payload: bytes) -> dpkt.udp.UDP:
    u = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
    u.ulen = 8 + len(payload)
    return u


def _ipv4(src: str, dst: str, payload: bytes, sport: int = 4444, dport: int = 2055,
          ident: int = 1) -> dpkt.ip.IP:
    ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=17, id=ident,
                    data=_udp(sport, dport, payload))
    ip.len = 20 + 8 + len(payload)
    return ip


def _fragments(ip: dpkt.ip.IP, size: int) -> list[dpkt.ip.IP]:
    body = bytes(ip.data)
    out = []
    for off in range(0, len(body), size):
        part = body[off:off + size]
        more = off + size < len(body)
        f = dpkt.ip.IP(src=ip.src, dst=ip.dst, p=17, id=ip.id, data=part, mf=int(more),
                       offset=off // 8)
        f.len = 20 + len(part)
        out.append(f)
    return out


def _eth(ip: dpkt.Packet, vlan: bool = False) -> bytes:
    v6 = isinstance(ip, dpkt.ip6.IP6)
    etype = dpkt.ethernet.ETH_TYPE_IP6 if v6 else dpkt.ethernet.ETH_TYPE_IP
    e = dpkt.ethernet.Ethernet(src=b"\x00\x11\x22\x33\x44\x55", dst=b"\x66" * 6, type=etype,
                               data=ip)
    if vlan:
        tag = dpkt.ethernet.VLANtag8021Q(id=100, type=etype)
        e = dpkt.ethernet.Ethernet(src=e.src, dst=e.dst, type=dpkt.ethernet.ETH_TYPE_8021Q,
                                   vlan_tags=[tag], data=ip)
        e.vlan_tags = [tag]
    return bytes(e)


def _write(path: Path, frames: list[bytes], ng: bool = False) -> None:
    with path.open("wb") as f:
        w = dpkt.pcapng.Writer(f) if ng else dpkt.pcap.Writer(f)
        for i, fr in enumerate(frames):
            w.writepkt(fr, ts=1_700_000_000 + i)


@pytest.mark.parametrize("ng", [False, True])
def test_payloads_senders_and_order(tmp_path: Path, ng: bool) -> None:
    big = bytes(range(256)) * 12  # 3072 bytes: arrives in fragments
    ip6 = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, "2001:db8::1"),
                       dst=socket.inet_pton(socket.AF_INET6, "2001:db8::2"), nxt=17, hlim=64,
                       data=_udp(5555, 4739, b"ipfix over v6"))
    ip6.plen = 8 + len(b"ipfix over v6")
    frames = [_eth(_ipv4("192.0.2.1", "192.0.2.9", b"first")),
              _eth(_ipv4("192.0.2.2", "192.0.2.9", b"tagged"), vlan=True),
              _eth(ip6)]
    frames += [_eth(f) for f in reversed(_fragments(_ipv4("192.0.2.3", "192.0.2.9", big,
                                                          ident=7), 1480))]
    tcp = dpkt.ip.IP(src=socket.inet_aton("192.0.2.4"), dst=socket.inet_aton("192.0.2.9"),
                     p=6, data=dpkt.tcp.TCP(sport=1, dport=2))
    frames.append(_eth(tcp))
    path = tmp_path / ("c.pcapng" if ng else "c.pcap")
    _write(path, frames, ng)
    got = list(udp_datagrams(path))
    assert [(d.src, d.sport, d.dport, d.payload) for d in got] == [
        ("192.0.2.1", 4444, 2055, b"first"),
        ("192.0.2.2", 4444, 2055, b"tagged"),
        ("2001:db8::1", 5555, 4739, b"ipfix over v6"),
        ("192.0.2.3", 4444, 2055, big),
    ]
    assert got[0].time == pytest.approx(1_700_000_000)


def test_not_a_capture_is_a_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "x.pcap"
    p.write_bytes(b"this is not a capture file at all")
    with pytest.raises(CaptureError, match="not a pcap or pcapng capture"):
        list(udp_datagrams(p))


def test_an_incomplete_fragment_train_is_not_invented(tmp_path: Path) -> None:
    frags = _fragments(_ipv4("192.0.2.3", "192.0.2.9", b"z" * 4000, ident=9), 1480)
    path = tmp_path / "f.pcap"
    _write(path, [_eth(f) for f in frags[:-1]])  # the last piece never came
    assert list(udp_datagrams(path)) == []
