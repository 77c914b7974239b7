"""GeoIP/ASN enrichment against MaxMind's test databases and Elastic's expected documents."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from netmeta.enrich.geoip import GEO_KEYS, RESULT_KEYS, GeoIP, GeoIPDatabaseError
from netmeta.event import FIELDS, from_documents, to_documents

PEER = Path(__file__).resolve().parents[2] / "shared" / "peer"
TEST_DB = PEER / "geoip" / "maxmind-test-data"
CITY = TEST_DB / "GeoLite2-City-Test.mmdb"
ASN = TEST_DB / "GeoLite2-ASN-Test.mmdb"
GOFLOW2_INPUT = PEER / "goflow2" / "pipeline" / "test-goflow2-sflow-sample.log"
GOFLOW2_EXPECTED = GOFLOW2_INPUT.with_name(GOFLOW2_INPUT.name + "-expected.json")

pytestmark = pytest.mark.skipif(not CITY.exists(), reason=f"conformance data missing: {TEST_DB}")


@pytest.fixture(scope="module")
def geoip() -> GeoIP:
    with GeoIP(str(CITY), str(ASN)) as g:
        yield g


def enrich(geoip: GeoIP, docs: list[dict[str, Any]], **kw: Any) -> list[dict[str, Any]]:
    return to_documents(geoip.apply(from_documents(docs, "test"), **kw))


def source_of(geoip: GeoIP, ip: str) -> dict[str, Any]:
    return enrich(geoip, [{"source": {"ip": ip}}])[0]["source"]


# ---------------------------------------------------------------- Elastic's expected docs

def test_goflow2_expected_documents(geoip: GeoIP) -> None:
    """The 12 GoFlow2 sFlow samples: geo/as of both sides as Elastic wrote them."""
    lines = GOFLOW2_INPUT.read_text().splitlines()
    expected = json.loads(GOFLOW2_EXPECTED.read_text())["expected"]
    inputs = []
    for line in lines:
        rec = json.loads(line)
        # the exporters (67.43.156.1, 89.160.20.129: both in the DBs) must stay without geo
        inp: dict[str, Any] = {"observer": {"ip": [rec.get("sampler_address", "10.0.0.1")]}}
        for side, key in (("source", "src_addr"), ("destination", "dst_addr")):
            if rec.get(key):
                inp[side] = {"ip": rec[key]}
        inputs.append(inp)
    got = enrich(geoip, inputs)
    assert len(got) == len(expected) == 12
    for g, e in zip(got, expected, strict=True):
        for side in ("source", "destination"):
            for obj in ("geo", "as"):
                assert g.get(side, {}).get(obj) == e.get(side, {}).get(obj), (side, obj, e)
        assert set(g["observer"]) == {"ip"}


# ---------------------------------------------------------------- single lookups

MILTON = {
    "city_name": "Milton", "continent_name": "North America", "country_iso_code": "US",
    "country_name": "United States", "location": {"lat": 47.2513, "lon": -122.3149},
    "region_iso_code": "US-WA", "region_name": "Washington",
}
LONDON = {
    "city_name": "London", "continent_name": "Europe", "country_iso_code": "GB",
    "country_name": "United Kingdom", "location": {"lat": 51.5142, "lon": -0.0931},
    "region_iso_code": "GB-ENG", "region_name": "England",
}

CASES: list[tuple[str, dict[str, Any] | None, dict[str, Any] | None]] = [
    ("216.160.83.57", MILTON, {"number": 209}),
    ("81.2.69.193", LONDON, None),
    ("89.160.20.129", {
        "city_name": "Linköping", "continent_name": "Europe", "country_iso_code": "SE",
        "country_name": "Sweden", "location": {"lat": 58.4167, "lon": 15.6167},
        "region_iso_code": "SE-E", "region_name": "Östergötland County",
    }, {"number": 29518, "organization": {"name": "Bredband2 AB"}}),
    # country only; registered_country (RO) is not used
    ("67.43.156.1", {"continent_name": "Asia", "country_iso_code": "BT", "country_name": "Bhutan",
                     "location": {"lat": 27.5, "lon": 90.5}}, {"number": 35908}),
    ("175.16.199.1", {
        "city_name": "Changchun", "continent_name": "Asia", "country_iso_code": "CN",
        "country_name": "China", "location": {"lat": 43.88, "lon": 125.3228},
        "region_iso_code": "CN-22", "region_name": "Jilin Sheng",
    }, None),
    # two subdivisions (ENG, WBK): the most specific one is used
    ("2.125.160.217", {
        "city_name": "Boxford", "continent_name": "Europe", "country_iso_code": "GB",
        "country_name": "United Kingdom", "location": {"lat": 51.75, "lon": -1.25},
        "region_iso_code": "GB-WBK", "region_name": "West Berkshire",
    }, None),
    # represented_country US (military) is ignored: the country is PH
    ("202.196.224.1", {"continent_name": "Asia", "country_iso_code": "PH",
                       "country_name": "Philippines", "location": {"lat": 13.0, "lon": 122.0}},
     None),
    ("214.78.0.1", {
        "city_name": "San Diego", "continent_name": "North America", "country_iso_code": "US",
        "country_name": "United States", "location": {"lat": 32.6783, "lon": -117.1291},
        "region_iso_code": "US-CA", "region_name": "California",
    }, {"number": 721, "organization": {"name": "DoD Network Information Center"}}),
    ("1.128.0.1", None, {"number": 1221, "organization": {"name": "Telstra Pty Ltd"}}),
    # IPv6
    ("2a02:cf40::1", {"continent_name": "Europe", "country_iso_code": "NO",
                      "country_name": "Norway", "location": {"lat": 62.0, "lon": 10.0}}, None),
    ("2001:2b8::1", {"continent_name": "Asia", "country_iso_code": "KR",
                     "country_name": "South Korea", "location": {"lat": 37.0, "lon": 127.5}},
     None),
    ("2001:480::1", {
        "city_name": "San Diego", "continent_name": "North America", "country_iso_code": "US",
        "country_name": "United States", "location": {"lat": 32.7203, "lon": -117.1552},
        "region_iso_code": "US-CA", "region_name": "California",
    }, None),
    # continent and location, no country at all
    ("2a02:d500::1", {"continent_name": "Europe", "location": {"lat": 48.69096, "lon": 9.14062}},
     None),
    # IPv4-mapped IPv6 answers as the IPv4 address (Java's InetAddress does the same)
    ("::ffff:81.2.69.193", LONDON, None),
]


@pytest.mark.parametrize(("ip", "geo", "asn"), CASES, ids=[c[0] for c in CASES])
def test_lookup(geoip: GeoIP, ip: str, geo: dict | None, asn: dict | None) -> None:
    src = source_of(geoip, ip)
    assert src.get("geo") == geo
    assert src.get("as") == asn


def test_ipv6_asn(geoip: GeoIP) -> None:
    src = source_of(geoip, "2001:1700::1")
    assert src["as"]["number"] == 6730


def test_every_city_network_matches_its_json_source(geoip: GeoIP) -> None:
    """Country and city of the first address of each network equal the JSON source."""
    networks = [(net, rec) for entry in json.loads((TEST_DB / "GeoLite2-City-Test.json")
                .read_text()) for net, rec in entry.items()]
    ips = [net.split("/")[0] for net, _ in networks]
    got = enrich(geoip, [{"source": {"ip": ip}} for ip in ips])
    assert len(got) > 200
    for (net, rec), doc in zip(networks, got, strict=True):
        geo = doc["source"].get("geo", {})
        assert geo.get("country_iso_code") == rec.get("country", {}).get("iso_code"), net
        assert geo.get("city_name") == rec.get("city", {}).get("names", {}).get("en"), net


# ---------------------------------------------------------------- batch semantics

def test_no_values_no_columns(geoip: GeoIP) -> None:
    """All-null results add no column, so documents never grow empty keys."""
    t = geoip.apply(from_documents([{"source": {"ip": "67.43.156.1"}}], "test"))
    names = set(t.column_names)
    assert "source.geo.country_iso_code" in names and "source.as.number" in names
    assert "source.geo.city_name" not in names and "source.geo.region_name" not in names
    assert "source.as.organization.name" not in names
    for name in names & {f"source.{k}" for k in RESULT_KEYS}:
        assert t.schema.field(name).type == FIELDS[name].arrow_type


@pytest.mark.parametrize("ip", [None, "", "not-an-ip", "10.0.0.1", "192.168.1.1", "127.0.0.1",
                                "::1", "fe80::1%eth0", "2001:db8::1", "300.1.1.1"])
def test_unknown_and_invalid_addresses_give_nothing(geoip: GeoIP, ip: str | None) -> None:
    t = pa.table({"source.ip": pa.array([ip, None], pa.string())})
    assert geoip.apply(t).column_names == ["source.ip"]


def test_mixed_batch_keeps_row_alignment(geoip: GeoIP) -> None:
    """Distinct lookups + take: each row gets its own address' answer, nulls stay null."""
    pool = [c[0] for c in CASES] + ["10.0.0.1", "bogus", None]
    rng = random.Random(7)
    rows = [rng.choice(pool) for _ in range(2000)]
    t = pa.table({"source.ip": pa.array(rows, pa.string())})
    out = geoip.apply(t).to_pylist()
    for ip, row in zip(rows, out, strict=True):
        want = geoip.lookup(ip) if ip else (None,) * len(RESULT_KEYS)
        assert tuple(row.get(f"source.{k}") for k in RESULT_KEYS) == want


def test_chunked_column(geoip: GeoIP) -> None:
    ips = ["216.160.83.57", None, "81.2.69.193", "89.160.20.129"]
    chunked = pa.table({"source.ip": pa.chunked_array([ips[:2], ips[2:]], pa.string())})
    flat = pa.table({"source.ip": pa.array(ips, pa.string())})
    assert geoip.apply(chunked).to_pylist() == geoip.apply(flat).to_pylist()


def test_large_string_column(geoip: GeoIP) -> None:
    t = pa.table({"source.ip": pa.array(["216.160.83.57", None], pa.large_string())})
    assert geoip.apply(t).column("source.geo.city_name").to_pylist() == ["Milton", None]


def test_geo_already_set_is_left_alone(geoip: GeoIP) -> None:
    docs = [
        {"source": {"ip": "216.160.83.57", "geo": {"country_iso_code": "XX"}}},
        # an untyped geo key (kept in _extra) counts as `ctx.source.geo != null` too
        {"source": {"ip": "81.2.69.193", "geo": {"name": "dc-1"}}},
        {"source": {"ip": "89.160.20.129"}},
    ]
    got = enrich(geoip, docs)
    assert got[0]["source"]["geo"] == {"country_iso_code": "XX"}
    assert got[1]["source"]["geo"] == {"name": "dc-1"}
    assert got[2]["source"]["geo"]["city_name"] == "Linköping"
    # Elastic's ASN processors carry no `if`: the AS is still looked up
    assert got[0]["source"]["as"] == {"number": 209}


def test_as_replaced_only_when_found(geoip: GeoIP) -> None:
    """A found ASN record replaces the whole `as` object; no record leaves it as it was."""
    docs = [
        {"source": {"ip": "216.160.83.57", "as": {"number": 1, "organization": {"name": "x"}}}},
        {"source": {"ip": "10.1.2.3", "as": {"number": 2, "organization": {"name": "y"}}}},
    ]
    got = enrich(geoip, docs)
    assert got[0]["source"]["as"] == {"number": 209}
    assert got[1]["source"]["as"] == {"number": 2, "organization": {"name": "y"}}


def test_only_requested_sides(geoip: GeoIP) -> None:
    doc = {"source": {"ip": "216.160.83.57"}, "destination": {"ip": "81.2.69.194"},
           "observer": {"ip": ["89.160.20.129"]}}
    got = enrich(geoip, [doc], sides=("destination",))[0]
    assert got["destination"]["geo"] == LONDON
    assert "geo" not in got["source"] and "as" not in got["source"]
    assert got["observer"] == {"ip": ["89.160.20.129"]}


def test_missing_side_and_empty_table(geoip: GeoIP) -> None:
    t = pa.table({"network.bytes": pa.array([1], pa.int64())})
    assert geoip.apply(t).equals(t)
    empty = pa.table({"source.ip": pa.array([], pa.string())})
    assert geoip.apply(empty).equals(empty)


def test_cache_hits_do_not_change_results() -> None:
    docs = [{"source": {"ip": c[0]}, "destination": {"ip": "216.160.83.58"}} for c in CASES]
    with GeoIP(str(CITY), str(ASN)) as g:
        first = enrich(g, docs)
        misses = g.cache_info().misses
        second = enrich(g, docs)
        assert g.cache_info().misses == misses and g.cache_info().hits > 0
    with GeoIP(str(CITY), str(ASN), cache_size=2) as tiny:  # emptied on every batch
        third = enrich(tiny, docs)
        fourth = enrich(tiny, docs)
        assert tiny.cache_info().size <= len(docs)
    assert first == second == third == fourth


# ---------------------------------------------------------------- configuration

def test_missing_database_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "GeoLite2-City.mmdb"
    with pytest.raises(GeoIPDatabaseError, match="City.*nope/GeoLite2-City.mmdb.*not found"):
        GeoIP(str(missing), None)


def test_invalid_database_names_the_path(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mmdb"
    junk.write_bytes(b"this is not a MaxMind DB" * 10)
    with pytest.raises(GeoIPDatabaseError, match="ASN.*junk.mmdb"):
        GeoIP(str(CITY), str(junk))


def test_databases_swapped() -> None:
    with pytest.raises(GeoIPDatabaseError, match="GeoLite2-ASN"):
        GeoIP(str(ASN), None)
    with pytest.raises(GeoIPDatabaseError, match="GeoLite2-City"):
        GeoIP(None, str(CITY))


def test_disabled() -> None:
    line = GeoIP.disabled_reason(None, "")
    assert line is not None and "off" in line and "\n" not in line
    assert GeoIP.disabled_reason(str(CITY), None) is not None  # ASN half off
    assert GeoIP.disabled_reason(str(CITY), str(ASN)) is None
    off = GeoIP(None, None)
    assert not off.enabled and off.describe() == "GeoIP: off"
    t = pa.table({"source.ip": pa.array(["216.160.83.57"], pa.string())})
    assert off.apply(t).equals(t)


def test_half_configured() -> None:
    """City only: geo without as; ASN only: as without geo."""
    with GeoIP(str(CITY), None) as city_only, GeoIP(None, str(ASN)) as asn_only:
        assert set(source_of(city_only, "216.160.83.57")) == {"ip", "geo"}
        assert set(source_of(asn_only, "216.160.83.57")) == {"ip", "as"}


def test_geo_keys_are_ecs_fields() -> None:
    for side in ("source", "destination"):
        for key in RESULT_KEYS:
            assert f"{side}.{key}" in FIELDS
    assert len(GEO_KEYS) == 8
