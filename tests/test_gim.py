"""GIM categorization (normalize/gim.py) against Graylog's published schema."""

from __future__ import annotations

import copy
import csv
import json
from typing import Any

import pytest

from netmeta.normalize import gim
from netmeta.normalize.packetbeat import normalize_event

from .conftest import PEER

SAMPLES = PEER / "packetbeat" / "network_traffic"
SCHEMA = PEER / "gim" / "graylog-schema-5.0"


def sample(kind: str) -> dict[str, Any]:
    return json.loads((SAMPLES / kind / "sample_event.json").read_text())


def test_our_codes_agree_with_graylogs_category_table() -> None:
    """Each row of gim_event_types.csv says what Graylog's categories.csv says."""
    with (SCHEMA / "categories.csv").open(newline="") as f:
        theirs = {row[0].strip(): [c.strip() for c in row[1:]] for row in csv.reader(f)
                  if row and row[0].strip().isdigit()}
    assert gim.EVENT_TYPES
    for code, t in gim.EVENT_TYPES.items():
        assert [t.klass, t.category, t.subcategory, t.type] == theirs[code], code


def test_every_gim_field_name_is_in_the_schema() -> None:
    names: set[str] = set()
    for entity in ("event", "source", "destination", "network", "query", "http", "gim",
                   "gim_derived"):
        with (SCHEMA / f"{entity}.csv").open(newline="", encoding="utf-8-sig") as f:
            names |= {row[0].strip() for row in csv.reader(f) if row}
    names |= {
        # the 5.0 table's own typo ("network icmp_reply_code_number"), read as meant
        "network_icmp_reply_code_number",
        # required fields of the current network model (go2docs, see gim/NOTES.md), newer
        # than the 5.0 tables
        "source_reference", "destination_reference",
        # the 5.0 source table has source_ipv6 but its destination table no mirror; set by
        # symmetry (gim/NOTES.md: "destination_* mirrors it")
        "destination_ipv6",
    }
    unknown = {n for n in gim.FIELD_NAMES if n not in names}
    assert unknown == set()


@pytest.mark.parametrize(("kind", "code", "fields"), [
    ("dns", "140300", {"gim_event_class": "protocol", "gim_event_category": "name resolution",
                       "gim_event_subcategory": "name resolution.error",
                       "gim_event_type": "dns error"}),
    ("http", "180200", {"gim_event_class": "protocol", "gim_event_category": "http",
                        "gim_event_subcategory": "http.communication",
                        "gim_event_type": "http communication"}),
    ("flow", "120500", {"gim_event_category": "network",
                        "gim_event_subcategory": "network.flow",
                        "gim_event_type": "flow record"}),
])
def test_samples_are_categorized(kind: str, code: str, fields: dict[str, str]) -> None:
    doc = normalize_event(sample(kind))
    assert doc["gim_event_type_code"] == code
    for k, v in fields.items():
        assert doc[k] == v
    if kind == "flow":
        assert "gim_event_class" not in doc  # the network category has no class


def test_dns_query_answer_and_error() -> None:
    ev = sample("dns")
    assert gim.event_type_code(ev) == "140300"
    ev["dns"]["response_code"] = "NOERROR"
    assert gim.event_type_code(ev) == "140200"
    ev["dns"]["type"] = "query"
    assert gim.event_type_code(ev) == "140000"
    del ev["dns"]["type"]
    assert gim.event_type_code(ev) == "149999"


def test_http_request_alone() -> None:
    ev = sample("http")
    del ev["http"]["response"]
    assert gim.event_type_code(ev) == "180100"
    del ev["http"]["request"]
    assert gim.event_type_code(ev) == "180000"


def test_other_protocols_get_field_names_but_no_code() -> None:
    ev = sample("flow")
    ev["type"] = "tls"
    ev["event"]["dataset"] = "network_traffic.tls"
    doc = gim.categorize(copy.deepcopy(ev))
    assert "gim_event_type_code" not in doc
    assert doc["source_ip"] == "::1" and doc["network_transport"] == "tcp"


def test_type_from_dataset_when_the_legacy_type_field_is_missing() -> None:
    ev = sample("flow")
    del ev["type"]
    assert gim.event_type_code(ev) == "120500"


def test_dns_fields() -> None:
    doc = gim.gim_fields(sample("dns"))
    assert {k: doc[k] for k in ("query_request", "query_record_type", "query_record_type_code",
                                "query_class", "query_result", "query_result_code")} == {
        "query_request": "nothing.elastic.co", "query_record_type": "A",
        "query_record_type_code": "1", "query_class": "IN", "query_result": "NXDOMAIN",
        "query_result_code": "3"}
    assert "query_response" not in doc  # no answers


def test_http_fields() -> None:
    doc = gim.gim_fields(sample("http"))
    assert {k: doc[k] for k in doc if k.startswith("http_")} == {
        "http_request_method": "GET", "http_response_code": 200, "http_response": "ok",
        "http_host": "packetbeat.com", "http_uri": "http://packetbeat.com:8002/",
        "http_request_path": "/", "http_version": "1.0",
        "http_user_agent": sample("http")["user_agent"]["original"],
        "http_content_type": "text/html; charset=utf-8", "http_request_bytes": 898,
        "http_response_bytes": 29988, "http_bytes": 30886}
    assert doc["network_direction"] == "inbound"  # Packetbeat's "ingress"


def test_flow_fields() -> None:
    doc = gim.gim_fields(sample("flow"))
    assert doc["source_ip"] == doc["source_ipv6"] == "::1"
    assert doc["source_bytes_sent"] == 88 and doc["destination_packets_sent"] == 1
    assert doc["network_ip_version"] == "6"
    assert doc["network_community_id"] == "1:5y9AkdbV9U8xqD9dhlj6obkubHg="
    assert doc["event_action"] == "network_flow"
    assert doc["source_reference"] == "::1" and doc["destination_port"] == 8000


def test_fields_already_there_are_kept() -> None:
    ev = sample("dns")
    ev["query_request"] = "set by someone else"
    assert gim.categorize(ev)["query_request"] == "set by someone else"


def test_unknown_values_of_mapped_fields_are_left_out() -> None:
    ev = sample("dns")
    ev["network"]["direction"] = "sideways"
    ev["dns"]["response_code"] = "WHATEVER"
    doc = gim.gim_fields(ev)
    assert "network_direction" not in doc and "query_result_code" not in doc
    assert doc["query_result"] == "WHATEVER"
