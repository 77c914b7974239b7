"""UDP datagrams out of real pcap/pcapng files (written with dpkt's writers)."""

from __future__ import annotations

import socket
from pathlib import Path

import dpkt
import pytest

from netmeta.sources import pcap
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


def _write(path: Path, frames: list[bytes], ng: bool = False,
           times: list[float] | None = None) -> None:
    with path.open("wb") as f:
        w = dpkt.pcapng.Writer(f) if ng else dpkt.pcap.Writer(f)
        for i, fr in enumerate(frames):
            w.writepkt(fr, ts=1_700_000_000 + (i if times is None else times[i]))


_V6_SRC, _V6_DST = "2001:db8::1", "2001:db8::2"


def _ipv6(data: bytes | dpkt.Packet, nxt: int) -> dpkt.ip6.IP6:
    ip = dpkt.ip6.IP6(src=socket.inet_pton(socket.AF_INET6, _V6_SRC),
                      dst=socket.inet_pton(socket.AF_INET6, _V6_DST), nxt=nxt, hlim=64,
                      data=data)
    ip.plen = len(data)
    return ip


def _udp6(payload: bytes, sport: int = 5555, dport: int = 4739) -> bytes:
    u = _udp(sport, dport, payload)
    bytes(_ipv6(u, 17))  # dpkt fills in the checksum over the IPv6 pseudo-header
    return bytes(u)


def _options(kinds: tuple[int, ...], then: int) -> bytes:
    """Hop-by-hop (0) / destination options (60) headers in a chain, each padded to 8 bytes."""
    cls = {0: dpkt.ip6.IP6HopOptsHeader, 60: dpkt.ip6.IP6DstOptsHeader}
    return b"".join(bytes(cls[k](nxt=n, len=0, data=b"\x01\x04\x00\x00\x00\x00"))  # PadN
                    for k, n in zip(kinds, (*kinds[1:], then), strict=False))


def _fragments6(body: bytes, size: int, ident: int, nxt: int = 17,
                before: tuple[int, ...] = ()) -> list[dpkt.ip6.IP6]:
    """RFC 8200 fragments of `body` (the fragmentable part, its first header `nxt`), the
    extension headers `before` ahead of each one's Fragment header."""
    out = []
    for off in range(0, len(body), size):
        fh = dpkt.ip6.IP6FragmentHeader(nxt=nxt, id=ident, frag_off=off // 8,
                                        m_flag=int(off + size < len(body)))
        data = _options(before, 44) + bytes(fh) + body[off:off + size]
        out.append(_ipv6(data, (*before, 44)[0]))
    return out


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


BIG6 = bytes(range(251)) * 16  # 4016 bytes: three IPv6 fragments of at most 1432


def _got(path: Path) -> list[tuple[str, int, str, int, bytes]]:
    return [(d.src, d.sport, d.dst, d.dport, d.payload) for d in udp_datagrams(path)]


@pytest.mark.parametrize("ng", [False, True])
@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1), (1, 2, 0), (2, 1, 0)])
def test_ipv6_fragments_are_reassembled_in_any_order(tmp_path: Path, ng: bool,
                                                     order: tuple[int, ...]) -> None:
    frags = _fragments6(_udp6(BIG6), 1432, ident=0x12345678)
    assert len(frags) == 3
    path = tmp_path / ("f6.pcapng" if ng else "f6.pcap")
    _write(path, [_eth(frags[i], vlan=i == 1) for i in order], ng)
    assert _got(path) == [(_V6_SRC, 5555, _V6_DST, 4739, BIG6)]


@pytest.mark.parametrize("before", [(0,), (60,), (0, 60)])
def test_ipv6_extension_headers_before_the_fragment_header(tmp_path: Path,
                                                           before: tuple[int, ...]) -> None:
    frags = _fragments6(_udp6(BIG6), 1432, ident=3, before=before)
    whole = _ipv6(_options(before, 17) + _udp6(b"small", sport=7), before[0])  # unfragmented
    _write(tmp_path / "x.pcap", [_eth(frags[2]), _eth(whole), _eth(frags[0]), _eth(frags[1])])
    assert _got(tmp_path / "x.pcap") == [(_V6_SRC, 7, _V6_DST, 4739, b"small"),
                                         (_V6_SRC, 5555, _V6_DST, 4739, BIG6)]


def test_only_udp_right_after_the_fragment_header_is_reassembled(tmp_path: Path) -> None:
    # dpkt reads destination options after the Fragment header into every later fragment's
    # payload, so such datagrams (no flow exporter sends them) are dropped, never garbled
    body = _options((60,), 17) + _udp6(BIG6)
    frags = _fragments6(body, 1432, ident=4, nxt=60, before=(0,))
    _write(tmp_path / "d.pcapng", [_eth(f) for f in reversed(frags)], ng=True)
    assert _got(tmp_path / "d.pcapng") == []


@pytest.mark.parametrize("ng", [False, True])
def test_ipv6_duplicate_fragments_yield_one_datagram(tmp_path: Path, ng: bool) -> None:
    f = _fragments6(_udp6(BIG6), 1432, ident=5)
    path = tmp_path / ("d.pcapng" if ng else "d.pcap")
    _write(path, [_eth(x) for x in (f[1], f[0], f[1], f[0], f[2], f[2])], ng)
    assert _got(path) == [(_V6_SRC, 5555, _V6_DST, 4739, BIG6)]


@pytest.mark.parametrize("ng", [False, True])
def test_an_incomplete_ipv6_fragment_set_is_not_invented(tmp_path: Path, ng: bool) -> None:
    f = _fragments6(_udp6(BIG6), 1432, ident=6)
    g = _fragments6(_udp6(b"q" * 4000, sport=9), 1432, ident=7)
    path = tmp_path / ("i.pcapng" if ng else "i.pcap")
    # the middle piece of one never came; the other completes around it
    _write(path, [_eth(x) for x in (f[2], g[0], f[0], g[2], g[1])], ng)
    assert _got(path) == [(_V6_SRC, 9, _V6_DST, 4739, b"q" * 4000)]


def test_overlapping_ipv6_fragments_are_dropped(tmp_path: Path) -> None:
    f = _fragments6(_udp6(BIG6), 1432, ident=8)
    overlap = _fragments6(_udp6(BIG6), 1424, ident=8)[1]  # starts 8 bytes into f[0]
    _write(tmp_path / "o.pcap", [_eth(x) for x in (f[0], overlap, f[1], f[2])])
    assert _got(tmp_path / "o.pcap") == []  # RFC 5722


def _train(v6: bool, n: int) -> list[dpkt.Packet]:
    """Three fragments of datagram number n, IPv4 or IPv6."""
    if v6:
        return _fragments6(_udp6(bytes([n]) * 4000, sport=n), 1432, ident=n)
    return _fragments(_ipv4("192.0.2.3", "192.0.2.9", bytes([n]) * 4000, sport=n, ident=n),
                      1480)


@pytest.mark.parametrize("v6", [False, True])
def test_pending_datagrams_are_bounded_alike(tmp_path: Path, v6: bool,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pcap, "_MAX_PENDING", 2)
    a, b, c = (_train(v6, n) for n in (1, 2, 3))
    # c's first piece pushes out a (the oldest): a's other pieces no longer complete it
    _write(tmp_path / "p.pcap", [_eth(x) for x in (a[0], b[0], c[0], b[1], b[2],
                                                  c[1], c[2], a[1], a[2])])
    assert [d.sport for d in udp_datagrams(tmp_path / "p.pcap")] == [2, 3]


@pytest.mark.parametrize("v6", [False, True])
def test_reassembly_times_out_alike(tmp_path: Path, v6: bool) -> None:
    a, b = _train(v6, 1), _train(v6, 2)
    frames = [_eth(x) for x in (a[0], a[1], b[0], b[1], a[2], b[2])]
    _write(tmp_path / "t.pcap", frames, times=[0, 1, 30, 31, 61, 62])  # a waits > 60 s
    assert [d.sport for d in udp_datagrams(tmp_path / "t.pcap")] == [2]


@pytest.mark.parametrize("v6", [False, True])
def test_fragments_beyond_64k_are_ignored_alike(tmp_path: Path, v6: bool) -> None:
    if v6:
        bad = _ipv6(bytes(dpkt.ip6.IP6FragmentHeader(nxt=17, id=1, frag_off=8100))
                    + b"x" * 800, 44)
    else:
        bad = dpkt.ip.IP(src=socket.inet_aton("192.0.2.3"), dst=socket.inet_aton("192.0.2.9"),
                         p=17, id=1, data=b"x" * 800, offset=8100)
        bad.len = 20 + 800
    a = _train(v6, 1)
    _write(tmp_path / "b.pcap", [_eth(x) for x in (bad, a[0], a[1], a[2])])
    assert [d.sport for d in udp_datagrams(tmp_path / "b.pcap")] == [1]


@pytest.mark.parametrize("v6", [False, True])
def test_pieces_per_datagram_are_bounded_alike(tmp_path: Path, v6: bool,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pcap, "_MAX_FRAGMENTS", 2)
    _write(tmp_path / "n.pcap", [_eth(x) for x in _train(v6, 1)])  # three pieces: dropped
    assert list(udp_datagrams(tmp_path / "n.pcap")) == []
