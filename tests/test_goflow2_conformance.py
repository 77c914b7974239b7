"""GoFlow2 sFlow documents against Elastic's expected output, field by field.

Input, test config (tags, event.timezone) and expected documents come from Elastic's goflow2
package (../shared/peer/goflow2). Differences must be listed with a reason in
tests/conformance_allowlist.yml; anything else fails.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from netmeta.config import Config, Input, InputEnrich
from netmeta.event import Origin, flatten, to_documents
from netmeta.worker import EnrichSpec, Job, Processor

from .conformance import allowlist, compare
from .conftest import GEOIP, PEER

CASE = PEER / "goflow2" / "pipeline" / "test-goflow2-sflow-sample.log"
ALLOW = allowlist("goflow2.sflow")


def _processor(enrich: InputEnrich | None = None) -> Processor:
    test_cfg = yaml.safe_load(Path(str(CASE) + "-config.yml").read_text())["fields"]
    tags = test_cfg.pop("tags")
    cfg = Config()
    cfg.enrich.geoip.city_db = str(GEOIP / "GeoLite2-City-Test.mmdb")
    cfg.enrich.geoip.asn_db = str(GEOIP / "GeoLite2-ASN-Test.mmdb")
    cfg.inputs["goflow2"] = Input(type="goflow2", paths=["x"], tags=tags, fields=test_cfg,
                                  enrich=enrich or InputEnrich())
    return Processor(EnrichSpec.from_config(cfg))


def _documents(processor: Processor) -> list[dict[str, Any]]:
    data = CASE.read_bytes()
    origin = Origin("goflow2", str(CASE), 1, 2, 0)
    result = processor(Job("goflow2", "goflow2", origin, data))
    assert result.failures == []
    docs = to_documents(result.events)
    return sorted(docs, key=lambda d: d["log"]["offset"])


def _expected() -> list[dict[str, Any]]:
    return json.loads(Path(str(CASE) + "-expected.json").read_text())["expected"]


def test_all_twelve_cases_match_field_by_field() -> None:
    expected = _expected()
    docs = _documents(_processor())
    assert len(expected) == 12 and len(docs) == 12
    c = compare(zip(docs, expected, strict=True), ALLOW)
    print(f"goflow2 conformance: {c.matched}/{c.total} expected fields matched in 12 cases")
    assert c.problems == []
    assert c.matched == c.total
    stale = c.stale(ALLOW)
    assert not stale, f"allow-list entries never needed: {sorted(stale)}"


def test_with_elastic_enrichment_only_the_agent_fields_differ() -> None:
    """Community id and locality off: only the filestream metadata remains added."""
    docs = _documents(_processor(InputEnrich(geoip=True, community_id=False, locality=False)))
    for got, want in zip(docs, _expected(), strict=True):
        extra = flatten(got).keys() - flatten(want).keys()
        assert extra == {"input.type", "log.file.path", "log.file.device_id", "log.file.inode",
                         "log.offset"}
        for key, value in flatten(want).items():
            assert flatten(got)[key] == value


@pytest.mark.parametrize("line,field,value", [
    (b'{"type":"NETFLOW_V9","time_flow_start_ns":1722384059000000000,'
     b'"time_flow_end_ns":1722384060500000000,"bytes":1000,"packets":10,"sampling_rate":100,'
     b'"src_addr":"10.0.0.1","dst_addr":"8.8.8.8","proto":"UDP","etype":"IPv4",'
     b'"src_port":5353,"dst_port":53,"sampler_address":"192.0.2.1","sequence_num":7}',
     "network.bytes", 100000),
    (b'{"type":"IPFIX","time_flow_start_ns":1722384059000000000,'
     b'"time_flow_end_ns":1722384060500000000,"bytes":1000,"packets":10,"sampling_rate":0,'
     b'"src_addr":"10.0.0.1","dst_addr":"8.8.8.8","proto":"UDP"}',
     "network.packets", 10),
])
def test_netflow_records_use_the_same_mapping(line: bytes, field: str, value: int) -> None:
    result = _processor()(Job("goflow2", "goflow2", Origin("goflow2"), line + b"\n"))
    doc = flatten(to_documents(result.events)[0])
    assert doc[field] == value
    assert doc["event.duration"] == 1_500_000_000
    assert doc["event.start"] == "2024-07-31T00:00:59.000Z"
    assert doc["event.end"] == "2024-07-31T00:01:00.500Z"
    assert doc["netflow.octet_delta_count"] == 1000
    assert "sflow.bytes" not in doc
    assert doc["source.locality"] == "internal" and doc["network.direction"] == "outbound"


def test_sflow_and_netflow_records_mixed_in_one_chunk() -> None:
    sflow = CASE.read_bytes().splitlines()[0]
    netflow = (b'{"type":"NETFLOW_V5","time_flow_start_ns":1722384059000000000,'
               b'"time_flow_end_ns":1722384059000000000,"bytes":500,"packets":5,'
               b'"sampling_rate":0,"src_addr":"10.0.0.1","dst_addr":"10.0.0.2",'
               b'"sequence_num":9,"packets_extra":1}')
    result = _processor()(Job("goflow2", "goflow2", Origin("goflow2"),
                              sflow + b"\n" + netflow + b"\n" + sflow + b"\n"))
    docs = [flatten(d) for d in to_documents(result.events)]
    assert [d["event.action"] for d in docs] == ["SFLOW_5", "NETFLOW_V5", "SFLOW_5"]
    assert [d["network.bytes"] for d in docs] == [70000, 500, 70000]
    assert [d["network.packets"] for d in docs] == [1000, 5, 1000]
    assert docs[1]["netflow.flow_sequence"] == 9 and "sflow.sequence_num" not in docs[1]
    assert docs[1]["goflow2.packets_extra"] == 1 and "goflow2.packets" not in docs[1]
    assert docs[0]["sflow.sequence_num"] == 44555 and "netflow.flow_sequence" not in docs[0]
