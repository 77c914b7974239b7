"""Community ID v1: batched implementation against the `communityid` reference package."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import communityid
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netmeta.enrich.community_id import (
    PORT_PROTOCOLS,
    add_community_id,
    community_ids,
    protocol_numbers,
)

PEER = Path(__file__).resolve().parents[2] / "shared" / "peer"
V4_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
PROTOCOLS = [6, 17, 132, 1, 58, 50, 47]
# Types with a request/reply counterpart, so the two-way branch is exercised often.
ICMP_TYPES = [0, 8, 9, 10, 13, 14, 15, 16, 17, 18, 3, 11, 5]
ICMP6_TYPES = [128, 129, 130, 131, 133, 134, 135, 136, 139, 140, 144, 145, 1, 2, 143]


def reference(
    src: str, dst: str, sport: int | None, dport: int | None, proto: int, seed: int = 0
) -> str:
    tpl = (
        communityid.FlowTuple(proto, src, dst, sport, dport)
        if proto in PORT_PROTOCOLS
        else communityid.FlowTuple(proto, src, dst)
    )
    return communityid.CommunityID(seed).calc(tpl)


def ours(rows: list[tuple], seed: int = 0, **icmp: pa.Array) -> list[str | None]:
    src, dst, sport, dport, proto = (list(c) for c in zip(*rows, strict=True))
    return community_ids(
        pa.array(src, pa.string()), pa.array(dst, pa.string()),
        pa.array(sport, pa.int64()), pa.array(dport, pa.int64()),
        pa.array(proto, pa.int64()), seed, **icmp,
    ).to_pylist()


# ---------------------------------------------------------------- strategies

ipv4 = st.ip_addresses(v=4).map(str)
# IPv4-mapped IPv6 addresses hash as IPv4 (Elastic's behaviour, tested separately).
ipv6 = st.ip_addresses(v=6).filter(lambda a: a not in V4_MAPPED).map(str)
port = st.integers(0, 65535)


@st.composite
def flow(draw: st.DrawFn) -> tuple[str, str, int, int, int]:
    family = draw(st.sampled_from([ipv4, ipv6]))
    src = draw(family)
    dst = src if draw(st.integers(0, 5)) == 0 else draw(family)  # equal addresses, often
    proto = draw(st.sampled_from(PROTOCOLS))
    if proto in (1, 58):
        types = ICMP_TYPES if proto == 1 else ICMP6_TYPES
        sport = draw(st.sampled_from(types) | st.integers(0, 255))
        dport = draw(st.integers(0, 255))
    else:
        sport = draw(port)
        dport = sport if draw(st.integers(0, 5)) == 0 else draw(port)  # equal ports
    return src, dst, sport, dport, proto


flows = st.lists(flow(), min_size=1, max_size=40)
seeds = st.sampled_from([0, 1, 2, 1234, 65535]) | st.integers(0, 65535)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------- against the reference


@FAST
@given(flows, seeds)
def test_matches_reference(rows: list[tuple], seed: int) -> None:
    assert ours(rows, seed) == [reference(*r, seed=seed) for r in rows]


@FAST
@given(flows, seeds)
def test_icmp_type_code_columns_match_reference(rows: list[tuple], seed: int) -> None:
    # ICMP type/code passed separately; for other protocols those columns are ignored.
    rows = [r for r in rows if r[4] in (1, 58)] or [("10.0.0.1", "10.0.0.2", 8, 0, 1)]
    types = pa.array([r[2] for r in rows])
    codes = pa.array([r[3] for r in rows])
    scrambled = [(s, d, 7, 9, p) for s, d, _, _, p in rows]  # ports must not be used
    got = ours(scrambled, seed, icmp_type=types, icmp_code=codes)
    assert got == [reference(*r, seed=seed) for r in rows]


@FAST
@given(flows)
def test_both_directions_of_a_flow_share_the_id(rows: list[tuple]) -> None:
    rows = [r for r in rows if r[4] not in (1, 58)]  # one-way ICMP is direction bound
    swapped = [(d, s, dp, sp, p) for s, d, sp, dp, p in rows]
    if rows:
        assert ours(rows) == ours(swapped)


def test_known_vectors() -> None:
    rows = [
        ("10.1.2.3", "8.8.8.8", 63521, 53, 17),  # flowhash README example
        ("8.8.8.8", "10.1.2.3", 53, 63521, 17),
        ("fe80::20c:29ff:fe83:3b6e", "ff02::1", 0, 0, 58),  # netflow golden, ICMPv6
        ("192.168.0.1", "192.168.0.1", 80, 80, 6),
        ("2001:db8::1", "2001:db8::2", 0, 0, 50),
    ]
    got = ours(rows)
    assert got[0] == got[1] == "1:R7iR6vkxw+jaz3wjDfWMWooBdfc="
    assert got[2] == "1:z1qoJyUMuKy3HX8rkIDvBK/vyL8="
    assert got == [reference(*r) for r in rows]


def test_portless_protocols_ignore_ports() -> None:
    rows = [("10.0.0.1", "10.0.0.2", 1, 2, 47), ("10.0.0.1", "10.0.0.2", None, None, 47),
            ("10.0.0.2", "10.0.0.1", 5, 6, 47)]
    got = ours(rows)
    assert got[0] == got[1] == got[2] == reference("10.0.0.1", "10.0.0.2", None, None, 47)


def test_ipv4_mapped_hashes_as_ipv4() -> None:
    rows = [("::ffff:10.0.0.1", "10.0.0.2", 1000, 80, 6), ("10.0.0.1", "10.0.0.2", 1000, 80, 6)]
    got = ours(rows)
    assert got[0] == got[1] == reference("10.0.0.1", "10.0.0.2", 1000, 80, 6)


@pytest.mark.parametrize(
    "row",
    [
        (None, "10.0.0.2", 1, 2, 6),
        ("10.0.0.1", None, 1, 2, 6),
        ("10.0.0.1", "10.0.0.2", None, 2, 6),
        ("10.0.0.1", "10.0.0.2", 1, None, 17),
        ("10.0.0.1", "10.0.0.2", 1, 2, None),
        ("10.0.0.1", "10.0.0.2", 1, 70000, 6),
        ("10.0.0.1", "10.0.0.2", -1, 2, 6),
        ("10.0.0.1", "10.0.0.2", 1, 2, 256),
        ("10.0.0.1", "2001:db8::2", 1, 2, 6),  # mixed families
        ("not an ip", "10.0.0.2", 1, 2, 6),
        ("10.0.0.1", "", 1, 2, 6),
        ("10.0.0.1", "10.0.0.2", None, 2, 1),  # ICMP without a type
    ],
)
def test_null_when_input_missing_or_invalid(row: tuple) -> None:
    good = ("10.9.9.9", "10.8.8.8", 1, 2, 6)
    assert ours([good, row, good]) == [reference(*good), None, reference(*good)]


def test_chunked_and_empty_inputs() -> None:
    rows = [("10.0.0.1", "10.0.0.2", 1, 2, 6), ("2001:db8::1", "2001:db8::2", 3, 4, 17)]
    cols = [pa.chunked_array([[v] for v in col]) for col in zip(*rows, strict=True)]
    assert community_ids(*cols).to_pylist() == [reference(*r) for r in rows]
    empty = [pa.array([], pa.string())] * 2 + [pa.array([], pa.int64())] * 3
    assert community_ids(*empty).to_pylist() == []
    nulls = [pa.nulls(3, pa.string())] * 2 + [pa.nulls(3, pa.int64())] * 3
    assert community_ids(*nulls).to_pylist() == [None] * 3


def test_bad_seed() -> None:
    one = [pa.array(["10.0.0.1"]), pa.array(["10.0.0.2"])] + [pa.array([6])] * 3
    with pytest.raises(ValueError, match="seed"):
        community_ids(*one, seed=65536)


def test_protocol_names_data_file() -> None:
    names = protocol_numbers()
    assert names["tcp"] == 6 and names["udp"] == 17 and names["sctp"] == 132
    assert names["icmp"] == 1 and names["ipv6-icmp"] == names["icmpv6"] == 58
    assert names["gre"] == 47 and names["esp"] == 50 and names["ospf"] == 89
    assert all(name == name.lower() for name in names)


# ---------------------------------------------------------------- table level


def flow_table(**extra: list) -> pa.Table:
    cols: dict[str, pa.Array] = {
        "source.ip": pa.array(["10.0.0.1", "2001:db8::1", "10.0.0.5", None]),
        "destination.ip": pa.array(["10.0.0.2", "2001:db8::2", "10.0.0.6", "10.0.0.7"]),
        "source.port": pa.array([1000, 5, None, 1], pa.int64()),
        "destination.port": pa.array([80, 6, None, 2], pa.int64()),
    }
    cols.update({k: pa.array(v) for k, v in extra.items()})
    return pa.table(cols)


def test_table_from_iana_number() -> None:
    t = add_community_id(flow_table(**{"network.iana_number": ["6", "17", "47", "6"]}))
    assert t.column("network.community_id").to_pylist() == [
        reference("10.0.0.1", "10.0.0.2", 1000, 80, 6),
        reference("2001:db8::1", "2001:db8::2", 5, 6, 17),
        reference("10.0.0.5", "10.0.0.6", None, None, 47),
        None,
    ]


def test_table_from_transport_name_and_seed() -> None:
    t = add_community_id(
        flow_table(**{"network.transport": ["TCP", "udp", "gre", "tcp"]}), seed=7
    )
    assert t.column("network.community_id").to_pylist()[:3] == [
        reference("10.0.0.1", "10.0.0.2", 1000, 80, 6, seed=7),
        reference("2001:db8::1", "2001:db8::2", 5, 6, 17, seed=7),
        reference("10.0.0.5", "10.0.0.6", None, None, 47, seed=7),
    ]


def test_table_iana_number_wins_and_transport_fills_gaps() -> None:
    t = add_community_id(flow_table(**{
        "network.iana_number": ["17", None, None, None],
        "network.transport": ["tcp", "udp", "bogus", None],
    }))
    assert t.column("network.community_id").to_pylist() == [
        reference("10.0.0.1", "10.0.0.2", 1000, 80, 17),
        reference("2001:db8::1", "2001:db8::2", 5, 6, 17),
        None,
        None,
    ]


def test_table_keeps_existing_ids() -> None:
    t = flow_table(**{
        "network.transport": ["tcp", "udp", "gre", "tcp"],
        "network.community_id": ["1:keep", None, None, None],
    })
    got = add_community_id(t).column("network.community_id").to_pylist()
    assert got[0] == "1:keep"
    assert got[1] == reference("2001:db8::1", "2001:db8::2", 5, 6, 17)
    assert t.column_names == add_community_id(t).column_names


def test_table_without_needed_columns_is_unchanged() -> None:
    t = flow_table()  # no protocol column
    assert add_community_id(t) is t
    no_dst = flow_table(**{"network.transport": ["tcp"] * 4}).drop_columns(["destination.ip"])
    assert add_community_id(no_dst) is no_dst


def test_table_icmp_type_code_default_to_zero_like_elastic() -> None:
    # Elastic's netflow input never passes ICMP type/code: the ICMPv6 flow of the netflow
    # golden file has destination.port 34304 (type 134 << 8) and hashes as type 0 code 0.
    t = pa.table({
        "source.ip": ["fe80::20c:29ff:fe83:3b6e", "10.0.0.1"],
        "destination.ip": ["ff02::1", "10.0.0.2"],
        "source.port": [0, 0],
        "destination.port": [34304, 0],
        "network.iana_number": ["58", "1"],
    })
    got = add_community_id(t).column("network.community_id").to_pylist()
    assert got == ["1:z1qoJyUMuKy3HX8rkIDvBK/vyL8=", reference("10.0.0.1", "10.0.0.2", 0, 0, 1)]
    with_icmp = t.append_column("icmp.type", pa.array([128, 8])).append_column(
        "icmp.code", pa.array([0, 0]))
    got = add_community_id(with_icmp).column("network.community_id").to_pylist()
    assert got == [reference("fe80::20c:29ff:fe83:3b6e", "ff02::1", 128, 0, 58),
                   reference("10.0.0.1", "10.0.0.2", 8, 0, 1)]


GOLDEN = sorted((PEER / "netflow" / "beats" / "golden").glob("*.golden.json"))


@pytest.mark.skipif(not GOLDEN, reason="../shared/peer not available")
@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_netflow_golden_community_ids(path: Path) -> None:
    # Rows without addresses are skipped: Filebeat hashes those as 0.0.0.0, we give none.
    docs = [e["Fields"] for e in json.loads(path.read_text())["events"]]
    docs = [d for d in docs if "ip" in d.get("source", {}) and "ip" in d.get("destination", {})]
    if not docs:
        pytest.skip("no flows with both addresses")
    t = pa.table({
        "source.ip": [d["source"]["ip"] for d in docs],
        "destination.ip": [d["destination"]["ip"] for d in docs],
        "source.port": pa.array([d["source"].get("port") for d in docs], pa.int64()),
        "destination.port": pa.array([d["destination"].get("port") for d in docs], pa.int64()),
        "network.iana_number": [str(d["network"]["iana_number"]) for d in docs],
    })
    got = add_community_id(t).column("network.community_id").to_pylist()
    assert got == [d["network"]["community_id"] for d in docs]
