"""NetFlow / IPFIX documents against Elastic's golden documents, field by field.

The goldens (../shared/peer/netflow/beats/golden) are the Filebeat netflow input's output;
the expected document is that output after the integration's ingest pipeline
(../shared/peer/netflow/integration/ingest_pipeline/default.yml), whose steps are modelled in
``_ingest`` (GeoIP/AS excepted: no such data for these addresses in the test databases).
netmeta's documents are the normalizer's output after the community id enricher. Every
difference must be listed in NETFLOW_ALLOW with a reason; anything else fails.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import numpy as np
import pytest
import yaml

from netmeta.decode.netflow import decode
from netmeta.decode.templates import TemplateState
from netmeta.enrich.community_id import add_community_id
from netmeta.enrich.locality import Locality
from netmeta.event import flatten, to_documents
from netmeta.normalize.netflow import failures, normalize, xxh64_rows

from .conftest import PEER, ROOT

BEATS = PEER / "netflow" / "beats"
EXPORTER = "192.0.2.1:4444"  # the one session dat_tests.yaml feeds
GOLDEN = ["Netflow-9-valid-01", "Netflow-9-field-layer2segmentid", "IPFIX-Barracuda-firewall"]

# Differences with their reasons live in the project's one allow-list file.
NETFLOW_ALLOW: dict[str, dict[str, str]] = {
    key: value or {} for key, value in yaml.safe_load(
        (ROOT / "tests" / "conformance_allowlist.yml").read_text())["netflow.log"].items()}


def _cases() -> dict[str, Any]:
    return yaml.safe_load((BEATS / "dat_tests.yaml").read_text())["tests"]


def _events(files: list[str]) -> list[dict[str, Any]]:
    state = TemplateState()
    docs: list[dict[str, Any]] = []
    for f in files:
        d = decode((BEATS / "dat" / f).read_bytes(), EXPORTER, state, 0.0)
        table = normalize(d, "netflow", Locality(["private"]))
        if table.num_rows:
            docs += to_documents(add_community_id(table))
    return docs


def _ingest(doc: dict[str, Any]) -> dict[str, Any]:
    """The integration pipeline's deterministic steps on one Filebeat document."""
    doc = copy.deepcopy(doc)
    doc.setdefault("ecs", {})["version"] = "8.11.0"
    net = doc.setdefault("network", {})
    if "iana_number" in net:
        net["iana_number"] = str(net["iana_number"])
    obs = doc.get("observer", {})
    if "ip" in obs and not isinstance(obs["ip"], list):
        obs["ip"] = [obs["ip"]]
    ev = doc.get("event", {})
    if ev.get("category") == "network_session":
        ev["category"] = ["network", "session"]
    nf = doc.get("netflow", {})
    v4 = "source_ipv4_address" in nf or "destination_ipv4_address" in nf
    v6 = "source_ipv6_address" in nf or "destination_ipv6_address" in nf
    if v4:
        net["type"] = ["ipv4", "ipv6"] if v6 else "ipv4"
    elif v6:
        net["type"] = "ipv6"
    src = doc.get("source", {}).get("locality")
    dst = doc.get("destination", {}).get("locality")
    rule = {("external", "internal"): "inbound", ("internal", "external"): "outbound",
            ("internal", "internal"): "internal", ("external", "external"): "external"}
    if (src, dst) in rule:
        net["direction"] = rule[(src, dst)]
    net.setdefault("direction", "unknown")
    return doc


def _date(v: Any) -> dt.datetime | None:
    if not isinstance(v, str) or len(v) < 20 or v[4] != "-" or not v.endswith("Z"):
        return None
    try:
        return dt.datetime.fromisoformat(v[:-1])
    except ValueError:
        return None


def _same(got: Any, want: Any) -> bool:
    """Equal values and JSON types; dates compared as instants (Go drops trailing zeros)."""
    if _date(got) is not None and _date(want) is not None:
        return _date(got) == _date(want)
    return got == want and type(got) is type(want)


def _compare(name: str, got: list[dict[str, Any]], want: list[dict[str, Any]],
             used: set[str], problems: list[str]) -> tuple[int, int]:
    matched = total = 0
    for i, (g_doc, w_doc) in enumerate(zip(got, want, strict=True)):
        g, w = flatten(g_doc), flatten(w_doc)
        for key, value in w.items():
            total += 1
            if key in NETFLOW_ALLOW["absent"]:
                used.add(key)
            elif key in g and _same(g[key], value):
                matched += 1
            else:
                problems.append(f"{name} #{i}: {key}: got {g.get(key, '<absent>')!r}, "
                                f"expected {value!r}")
        for key in g.keys() - w.keys():
            if key in NETFLOW_ALLOW["added"]:
                used.add(key)
            else:
                problems.append(f"{name} #{i}: {key}: not in the expected document "
                                f"({g[key]!r})")
    return matched, total


def test_golden_documents_match_field_by_field() -> None:
    cases = _cases()
    used: set[str] = set()
    problems: list[str] = []
    report: list[str] = []
    all_matched = all_total = 0
    for name in GOLDEN:
        golden = json.loads((BEATS / "golden" / f"{name}.golden.json").read_text())
        # the event's Timestamp is its @timestamp
        want = [_ingest({"@timestamp": e["Timestamp"], **e["Fields"]})
                for e in golden["events"]]
        got = _events(cases[golden["test_name"]]["files"])
        assert len(got) == len(want), name
        matched, total = _compare(name, got, want, used, problems)
        report.append(f"{name}: {matched}/{total}")
        all_matched += matched
        all_total += total
    print(f"\nnetflow conformance: {all_matched}/{all_total} expected fields matched "
          f"({'; '.join(report)})")
    assert problems == [], "\n".join(problems)
    stale = (set(NETFLOW_ALLOW["added"]) | set(NETFLOW_ALLOW["absent"])) - used
    assert not stale, f"allow-list entries never needed: {sorted(stale)}"


@pytest.mark.parametrize("name", sorted(_cases()) if BEATS.is_dir() else [])
def test_every_dat_case_normalizes(name: str) -> None:
    state = TemplateState()
    rows = 0
    for f in _cases()[name]["files"]:
        d = decode((BEATS / "dat" / f).read_bytes(), EXPORTER, state, 0.0)
        table = normalize(d, "netflow", Locality(["private"]))
        assert failures(d, "netflow") == [] or name.endswith("missing templates")
        rows += table.num_rows
        for doc in to_documents(add_community_id(table)):
            assert doc["event"]["action"] in ("netflow_flow", "netflow_options")
            assert doc["netflow"]["exporter"]["address"] == EXPORTER
    assert rows >= 0


def test_flow_id_hash_is_xxh64() -> None:
    # XXH64 reference values (seed 0): "" and "abc"
    assert xxh64_rows(np.zeros((1, 0), np.uint8))[0] == 0xEF46DB3751D8E999
    abc = np.frombuffer(b"abc", np.uint8).reshape(1, 3)
    assert xxh64_rows(abc)[0] == 0x44BC2CF5AD770999
    long = np.frombuffer(bytes(range(40)), np.uint8).reshape(1, 40)
    assert xxh64_rows(np.vstack([long, long]))[1] == xxh64_rows(long)[0]
