"""Gigamon AMI documents against Elastic's expected output, field by field.

Inputs and expected documents are the gigamon package's pipeline tests
(../shared/peer/gigamon/pipeline): 70 AMI JSON records and one decoded CEF event.
Differences must be listed with a reason in tests/conformance_allowlist.yml (section
``gigamon``); anything else fails.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from netmeta.event import flatten
from netmeta.normalize.gigamon import normalize_cef, normalize_record

from .conformance import allowlist, compare
from .conftest import PEER

CASES = PEER / "gigamon" / "pipeline"
ALLOW = allowlist("gigamon")


def _load(name: str, key: str) -> list[dict[str, Any]]:
    return json.loads((CASES / name).read_text())[key]


def _pairs() -> list[tuple[dict[str, Any], dict[str, Any]]]:
    ami = [normalize_record(e["json"]) for e in _load("test-ami.json", "events")]
    cef = [normalize_cef(e["cef"]) for e in _load("test-cef.json", "events")]
    expected = (_load("test-ami.json-expected.json", "expected")
                + _load("test-cef.json-expected.json", "expected"))
    assert len(ami) == 70 and len(cef) == 1 and len(expected) == 71
    return list(zip(ami + cef, expected, strict=True))


def test_all_cases_match_field_by_field() -> None:
    pairs = _pairs()
    c = compare(pairs, ALLOW)
    print(f"gigamon conformance: {c.matched}/{c.total} expected fields matched in "
          f"{len(pairs)} cases")
    assert c.problems == []
    absent = sum(1 for _, w in pairs for k in flatten(w) if k in ALLOW["absent"])
    assert c.matched + absent == c.total
    stale = c.stale(ALLOW)
    assert not stale, f"allow-list entries never needed: {sorted(stale)}"


def test_every_allow_list_entry_has_a_reason() -> None:
    for section in ("ignored", "added", "absent"):
        for key, reason in ALLOW[section].items():
            assert isinstance(reason, str) and len(reason) > 10, key


# Behaviour the 71 cases do not reach, taken from the pipeline's processors.

BASE = {"ts": "Wed Dec 13 15:25:25 2023", "src_ip": "10.0.0.1", "dst_ip": "10.0.0.2",
        "src_mac": "00:50:56:8d:89:41", "app_name": "https", "app_id": "68"}


def _doc(**attrs: Any) -> dict[str, Any]:
    return flatten(normalize_record({**BASE, **attrs}))


def test_unconvertible_values_are_removed_with_an_error_message() -> None:
    doc = _doc(src_port="abc", start_time="yesterday", dns_reverse_addr="not-an-ip")
    assert "gigamon.ami.src_port" not in doc and "source.port" not in doc
    assert "gigamon.ami.start_time" not in doc and "related.ip" not in doc
    assert doc["error.message"] == [
        "Processor date with tag date_gigamon_ami_start_time in pipeline "
        "logs-gigamon.ami-2.4.1 failed with message: unable to parse date [yesterday]",
        "Processor convert with tag convert_src_port in pipeline "
        "logs-gigamon.ami-2.4.1 failed with message: unable to convert [abc] to long",
        "Processor convert with tag convert_dns_reverse_addr in pipeline "
        "logs-gigamon.ami-2.4.1 failed with message: 'not-an-ip' is not an IP string literal.",
    ]
    assert doc["event.kind"] == "event"


def test_http_tls_smb_and_tcp_lookups() -> None:
    doc = _doc(http_rtt="2", http_uri="/a?b", http_host="example.org",
               ssl_cipher_suite_id="49199", ssl_protocol_version="771",
               ssl_ext_sig_algorithm_scheme="1027", ssl_validity_not_before="170831063004Z",
               ssl_validity_not_after="2020-08-31 06:30:04", smb_version="1",
               snmp_version="2c", tcp_flags="20", tcp_rtt="0.000015")
    assert doc["event.duration"] == 2.0e9 and doc["gigamon.ami.http_rtt"] == 2.0
    assert doc["url.full"] == "/a?b" and doc["host.name"] == "example.org"
    assert doc["tls.cipher"] == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
    assert doc["tls.version_protocol"] == "TLS_1_2"
    assert doc["gigamon.ami.ssl_ext_sig_algorithm_scheme_value"] == "ecdsa_secp256r1_sha256"
    assert doc["tls.client.not_before"] == "2017-08-31T06:30:04.000Z"
    assert doc["tls.client.not_after"] == "2020-08-31T06:30:04.000Z"
    assert doc["service.version"] == "SMB-V1"  # smb wins over snmp, as in the pipeline
    assert doc["gigamon.ami.tcp_flag_reset"] == "1" and doc["gigamon.ami.tcp_rtt"] == 1.5e-05


@pytest.mark.parametrize("suite,value,protocol", [
    ("47", "TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"),
    ("4866", "TLS_AES_256_GCM_SHA384", None),
    ("GREASE", "GREASE", None),
    ("1", None, None),
])
def test_cipher_suite_table(suite: str, value: str | None, protocol: str | None) -> None:
    doc = _doc(ssl_cipher_suite_id=suite)
    assert doc.get("gigamon.ami.ssl_cipher_suite_id_value") == value
    assert doc.get("gigamon.ami.ssl_cipher_suite_id_protocol") == protocol


def test_a_failing_script_marks_the_document_as_the_pipeline_does() -> None:
    doc = _doc(ssl_cipher_suite_id=7, end_reason="2")
    assert doc["event.kind"] == "pipeline_error"
    assert doc["tags"] == ["preserve_original_event"]
    assert doc["error.message"].startswith("Processor 'script' with tag 'script_lookup_mapping'")
    assert doc["gigamon.ami.end_reason_value"] == "Active Timeout"  # ran before the failure
    assert "source.ip" not in doc  # the steps after it did not run


def test_ipv6_addresses_win_and_bad_ips_stop_at_geoip() -> None:
    doc = _doc(src_ipv6="2a02:cf40::1")
    assert doc["source.ip"] == "2a02:cf40::1" and doc["destination.ip"] == "10.0.0.2"
    bad = _doc(dst_ip="somewhere")
    assert bad["event.kind"] == "pipeline_error" and "source.mac" not in bad


def test_cef_conditional_renames_and_unrenamed_keys() -> None:
    cef = {"version": "0", "name": "x", "severity": "6", "device": {"vendor": "Gigamon"},
           "extensions": {"src": "10.0.0.1", "sourceAddress": "10.9.9.9", "spt": "1",
                          "GigamonMdata_dns_query": "a.b.example.com", "TcpClientWinMax": "5"}}
    doc = flatten(normalize_cef(cef))
    assert doc["source.ip"] == "10.0.0.1" and doc["gigamon.ami.sourceAddress"] == "10.9.9.9"
    assert doc["dns.question.subdomain"] == "a.b"
    assert doc["dns.question.top_level_domain"] == "com"
    assert doc["gigamon.ami.device.vendor"] == "Gigamon" and "cef.version" not in doc
    # default.yml renames TcpClientWinMax before the CEF sub-pipeline creates gigamon.ami
    assert doc["gigamon.ami.TcpClientWinMax"] == "5"


def test_input_is_not_modified_and_empty_values_are_dropped() -> None:
    record = {**BASE, "dns_host": "", "vendor": "Gigamon"}
    before = json.dumps(record)
    doc = flatten(normalize_record(record))
    assert json.dumps(record) == before
    assert "gigamon.ami.dns_host" not in doc and "host.name" not in doc
    assert doc["@timestamp"] == "2023-12-13T15:25:25.000Z"
    assert doc["source.mac"] == "00-50-56-8D-89-41"
