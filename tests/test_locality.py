"""Locality and network direction with Elastic's named networks and rules."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest

from netmeta.enrich.locality import Locality, directions

PEER = Path(__file__).resolve().parents[2] / "shared" / "peer"

# Real addresses and every named network each belongs to, as Go's net.IP predicates
# (Beats) and Java's InetAddress predicates (Elasticsearch) classify them.
ADDRESSES: dict[str, set[str]] = {
    "127.0.0.1": {"loopback"},
    "127.255.255.254": {"loopback"},
    "::1": {"loopback"},
    "0.0.0.0": {"unspecified"},
    "::": {"unspecified"},
    "169.254.169.254": {"link_local_unicast"},
    "fe80::1ff:fe23:4567:890a": {"link_local_unicast"},
    "224.0.0.251": {"link_local_multicast", "multicast"},  # mDNS
    "ff02::fb": {"link_local_multicast", "multicast"},
    "ff12::8000:1": {"link_local_multicast", "multicast"},  # transient, link scope
    "ff01::1": {"interface_local_multicast", "multicast"},
    "ff11::2": {"interface_local_multicast", "multicast"},
    # Elastic's "public" only leaves out link- and interface-local multicast.
    "239.255.255.250": {"multicast", "public"},  # SSDP
    "ff05::1:3": {"multicast", "public"},  # DHCPv6 servers, site scope
    "10.1.2.3": {"private", "unicast", "global_unicast"},
    "172.16.0.1": {"private", "unicast", "global_unicast"},
    "172.31.255.255": {"private", "unicast", "global_unicast"},
    "192.168.1.1": {"private", "unicast", "global_unicast"},
    "fd12:3456:789a::1": {"private", "unicast", "global_unicast"},
    "::ffff:192.168.1.1": {"private", "unicast", "global_unicast"},  # IPv4-mapped
    # Elastic's private is RFC 1918 + fd00::/8 only.
    "fc00::1": {"unicast", "global_unicast", "public"},
    "100.64.0.1": {"unicast", "global_unicast", "public"},
    "172.32.0.1": {"unicast", "global_unicast", "public"},
    "8.8.8.8": {"unicast", "global_unicast", "public"},
    "2001:4860:4860::8888": {"unicast", "global_unicast", "public"},
    "2a02:cf40::1": {"unicast", "global_unicast", "public"},
    "255.255.255.255": set(),  # broadcast: neither unicast nor public
}
NAMES = ["loopback", "unspecified", "link_local_unicast", "link_local_multicast",
         "interface_local_multicast", "multicast", "private", "unicast", "global_unicast",
         "public"]
ALWAYS_INTERNAL = ["127.0.0.1", "::1", "0.0.0.0", "::", "255.255.255.255", "169.254.1.1",
                   "fe80::1", "224.0.0.1", "ff02::1", "ff01::1"]


def localities(networks: list[str], ips: list[str | None], **kw: bool) -> list[str | None]:
    return Locality(networks, **kw).localities(pa.array(ips, pa.string())).to_pylist()


@pytest.mark.parametrize("name", NAMES)
def test_named_network(name: str) -> None:
    ips = list(ADDRESSES)
    got = localities([name], ips, local_is_internal=False)
    want = ["internal" if name in ADDRESSES[ip] else "external" for ip in ips]
    assert dict(zip(ips, got, strict=True)) == dict(zip(ips, want, strict=True))


def test_cidrs_and_single_addresses() -> None:
    nets = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7", "2001:db8:ffff::1/128", "10.1.2.3/31"]
    ips = ["10.255.0.1", "11.0.0.1", "2001:db8:1::1", "2001:db9::1", "192.0.2.7", "192.0.2.8",
           "::ffff:10.0.0.1"]
    assert localities(nets, ips, local_is_internal=False) == [
        "internal", "external", "internal", "external", "internal", "external", "internal"]


def test_cidrs_match_only_their_family() -> None:
    # As in Go and Java: an IPv6 network never contains an IPv4 address and vice versa.
    ips = ["8.8.8.8", "2001:db8::1", "::ffff:8.8.8.8"]
    assert localities(["::/0"], ips, local_is_internal=False) == [
        "external", "internal", "external"]
    assert localities(["0.0.0.0/0"], ips, local_is_internal=False) == [
        "internal", "external", "internal"]


def test_netflow_always_internal_addresses() -> None:
    assert localities(["private"], ALWAYS_INTERNAL) == ["internal"] * len(ALWAYS_INTERNAL)
    assert localities([], ALWAYS_INTERNAL) == ["internal"] * len(ALWAYS_INTERNAL)
    strict = localities(["private"], ALWAYS_INTERNAL, local_is_internal=False)
    assert strict == ["external"] * len(ALWAYS_INTERNAL)
    assert localities(["private"], ["8.8.8.8", "ff05::2"]) == ["external", "external"]


def test_null_and_invalid_addresses_have_no_locality() -> None:
    assert localities(["private"], [None, "10.0.0.1", "bogus", ""]) == [
        None, "internal", None, None]
    assert localities(["private"], [None, None]) == [None, None]
    assert localities(["private"], []) == []


@pytest.mark.parametrize(
    "entry", ["10.0.0.0/33", "bogus", "", "10.0.0.0/8/8", "broadcast", "Private", "ff02::/ff"]
)
def test_bad_entry_is_named(entry: str) -> None:
    with pytest.raises(ValueError, match="internal_networks entry") as err:
        Locality(["private", entry])
    assert repr(entry) in str(err.value)


def test_non_string_entries_rejected() -> None:
    with pytest.raises(ValueError, match="42"):
        Locality(["private", 42])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="list"):
        Locality("private")


# ---------------------------------------------------------------- directions and tables


def test_directions() -> None:
    src = pa.array(["external", "internal", "internal", "external", None, "internal", None])
    dst = pa.array(["internal", "external", "internal", "external", "internal", None, None])
    assert directions(src, dst).to_pylist() == [
        "inbound", "outbound", "internal", "external", "unknown", "unknown", "unknown"]


def flows() -> pa.Table:
    return pa.table({
        "source.ip": ["8.8.8.8", "10.0.0.1", "192.168.1.2", "1.1.1.1", None, "fd00::5",
                      "2001:db8::1"],
        "destination.ip": ["10.0.0.2", "2606:4700::1111", "172.16.5.4", "9.9.9.9", "10.0.0.3",
                           "fe80::1", None],
    })


def test_apply_sets_localities_and_direction() -> None:
    t = Locality(["private"]).apply(flows())
    assert t.column("source.locality").to_pylist() == [
        "external", "internal", "internal", "external", None, "internal", "external"]
    assert t.column("destination.locality").to_pylist() == [
        "internal", "external", "internal", "external", "internal", "internal", None]
    assert t.column("network.direction").to_pylist() == [
        "inbound", "outbound", "internal", "external", "unknown", "internal", "unknown"]


def test_apply_keeps_existing_values() -> None:
    t = flows()
    n = t.num_rows
    t = t.append_column("source.locality", pa.array(["internal"] + [None] * (n - 1), pa.string()))
    t = t.append_column("network.direction", pa.array([None, "ingress"] + [None] * (n - 2),
                                                      pa.string()))
    out = Locality(["private"]).apply(t)
    assert out.column_names[:4] == t.column_names
    # The kept "internal" source locality also drives the computed direction.
    assert out.column("source.locality").to_pylist()[:2] == ["internal", "internal"]
    assert out.column("network.direction").to_pylist()[:3] == ["internal", "ingress", "internal"]


def test_apply_without_direction() -> None:
    t = Locality(["private"]).apply(flows(), direction=False)
    assert "network.direction" not in t.column_names
    assert "source.locality" in t.column_names


def test_apply_with_one_address_column() -> None:
    t = flows().drop_columns(["source.ip"])
    out = Locality(["private"]).apply(t)
    assert "source.locality" not in out.column_names
    assert out.column("destination.locality").to_pylist()[0] == "internal"
    assert set(out.column("network.direction").to_pylist()) == {"unknown"}


def test_apply_without_addresses_is_unchanged() -> None:
    t = pa.table({"network.transport": ["tcp"]})
    assert Locality(["private"]).apply(t) is t


def test_apply_chunked_columns() -> None:
    t = pa.concat_tables([flows(), flows()])
    assert t.column("source.ip").num_chunks == 2
    out = Locality(["private"]).apply(t)
    single = Locality(["private"]).apply(flows())
    assert out.column("network.direction").to_pylist() == (
        single.column("network.direction").to_pylist() * 2)


GOLDEN = sorted((PEER / "netflow" / "beats" / "golden").glob("*.golden.json"))


@pytest.mark.skipif(not GOLDEN, reason="../shared/peer not available")
def test_netflow_golden_localities() -> None:
    # Filebeat's netflow input with its default internal_networks: [private].
    docs = [e["Fields"] for p in GOLDEN for e in json.loads(p.read_text())["events"]]
    docs = [d for d in docs if "ip" in d.get("source", {}) and "ip" in d.get("destination", {})]
    assert docs
    t = pa.table({"source.ip": [d["source"]["ip"] for d in docs],
                  "destination.ip": [d["destination"]["ip"] for d in docs]})
    out = Locality(["private"]).apply(t)
    assert out.column("source.locality").to_pylist() == [d["source"]["locality"] for d in docs]
    assert out.column("destination.locality").to_pylist() == [
        d["destination"]["locality"] for d in docs]
    # The netflow integration's pipeline then derives direction from the localities,
    # e.g. the layer2segmentid flow (internal -> external) ends up "outbound".
    pairs = zip(out.column("source.locality").to_pylist(),
                out.column("network.direction").to_pylist(), strict=True)
    assert {(s, d) for s, d in pairs} <= {("internal", "internal"), ("internal", "outbound")}
    assert "outbound" in out.column("network.direction").to_pylist()
