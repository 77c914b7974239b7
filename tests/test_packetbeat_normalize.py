"""Packetbeat events → network_traffic documents (normalize/packetbeat.py), and the worker's
"packetbeat" format with netmeta's enrich stage behind it."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import orjson
import pytest

from netmeta.event import Origin, to_documents
from netmeta.normalize import gim
from netmeta.normalize.packetbeat import (
    TYPES,
    NormalizeError,
    normalize_batch,
    normalize_event,
    normalize_json,
)
from netmeta.worker import EnrichSpec, Job, Processor

from .conformance import allowlist, compare
from .conftest import PEER

SAMPLES = PEER / "packetbeat" / "network_traffic"
ALLOW = allowlist("packetbeat.network_traffic")
NOW = dt.datetime(2024, 2, 14, 21, 18, 30, tzinfo=dt.UTC)


def sample(kind: str) -> dict[str, Any]:
    return json.loads((SAMPLES / kind / "sample_event.json").read_text())


def ecs_only(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in gim.FIELD_NAMES}


def test_peer_samples_normalize_to_themselves() -> None:
    pairs = [(ecs_only(normalize_event(copy.deepcopy(sample(k)), NOW)), sample(k))
             for k in ("dns", "http", "flow")]
    c = compare(pairs, ALLOW)
    print(f"packetbeat conformance: {c.matched}/{c.total} expected fields matched in "
          f"{len(pairs)} sample events")
    assert c.problems == []
    assert c.matched == c.total
    assert not c.stale(ALLOW)


def test_every_allow_list_entry_has_a_reason() -> None:
    for section in ("added", "absent"):
        for key, reason in ALLOW[section].items():
            assert isinstance(reason, str) and len(reason) > 10, key


def test_the_sample_is_not_modified_in_place() -> None:
    event = sample("dns")
    before = copy.deepcopy(event)
    normalize_event(event, NOW)
    assert event == before or "@metadata" not in before  # only @metadata may be popped


def test_peer_field_definitions_are_all_typed() -> None:
    """Every field of the package's protocol field files has a type here, and the same."""
    import yaml
    for kind in ("dns", "http", "flow"):
        spec = yaml.safe_load((SAMPLES / kind / "fields-protocol.yml").read_text())
        for name, typ in _walk(spec):
            if typ in ("group",):
                continue
            want = {"object": "object[]"}.get(typ, typ)
            got = TYPES.get(name, "").removesuffix("[]")
            assert got == want.removesuffix("[]"), (name, got, typ)


def _walk(fields: list[dict[str, Any]], prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for f in fields:
        name = prefix + f["name"]
        if f.get("type") == "group":
            out += _walk(f.get("fields", []), name + ".")
        else:
            out.append((name, f["type"]))
    return out


# ---------------------------------------------------------------- what a Beat ships

def shipped(**over: Any) -> dict[str, Any]:
    """A DNS event as standalone Packetbeat 8 sends it over output.logstash."""
    ev = sample("dns")
    for k in ("data_stream", "elastic_agent"):
        ev.pop(k)
    ev["event"] = {k: v for k, v in ev["event"].items() if k not in ("ingested",
                                                                     "agent_id_status")}
    ev["event"]["dataset"] = "dns"
    ev["@metadata"] = {"beat": "packetbeat", "type": "_doc", "version": "8.12.1"}
    ev.update(over)
    return ev


def test_standalone_event_gets_the_integration_dataset_and_data_stream() -> None:
    doc = normalize_event(shipped(), NOW)
    assert "@metadata" not in doc
    assert doc["event"]["dataset"] == "network_traffic.dns"
    assert doc["data_stream"] == {"dataset": "network_traffic.dns", "namespace": "default",
                                  "type": "logs"}
    assert doc["gim_event_type_code"] == "140300"  # NXDOMAIN


def test_types_are_coerced_per_field_definitions() -> None:
    ev = shipped()
    ev["dns"]["flags"]["authoritative"] = "true"
    ev["dns"]["answers_count"] = "3"
    ev["source"]["port"] = 65020.0
    ev["event"]["duration"] = "58475961"
    doc = normalize_event(ev, NOW)
    assert doc["dns"]["flags"]["authoritative"] is True
    assert doc["dns"]["answers_count"] == 3
    assert doc["source"]["port"] == 65020 and isinstance(doc["source"]["port"], int)
    assert doc["event"]["duration"] == 58475961


@pytest.mark.parametrize(("path", "value", "why"), [
    (("source", "ip"), "not-an-ip", "source.ip: 'not-an-ip' is not a valid ip"),
    (("dns", "flags", "authoritative"), "yes", "dns.flags.authoritative"),
    (("source", "port"), "http", "source.port"),
    (("event", "start"), "yesterday", "event.start"),
    (("http",), 5, "http: expected an object"),
    (("http", "request", "headers"), "x", "http.request.headers: expected an object"),
])
def test_values_elasticsearch_would_refuse_make_the_event_fail(
        path: tuple[str, ...], value: Any, why: str) -> None:
    ev = shipped()
    cur = ev
    for p in path[:-1]:
        cur = cur.setdefault(p, {})
    cur[path[-1]] = value
    with pytest.raises(NormalizeError, match=why.replace("(", r"\(").replace("'", "'")):
        normalize_event(ev, NOW)


def test_dotted_keys_are_objects() -> None:
    ev = shipped()
    del ev["source"]
    ev["source.ip"] = "10.1.2.3"
    ev["source.port"] = "53"
    ev["http.request.headers"] = {"x.y": 1}
    doc = normalize_event(ev, NOW)
    assert doc["source"] == {"ip": "10.1.2.3", "port": 53}
    assert doc["http"]["request"]["headers"] == {"x.y": 1}


def test_pipeline_steps_mac_related_observer_forwarded() -> None:
    ev = shipped(observer={"hostname": "sensor1", "ip": ["192.0.2.7"]})
    ev["host"]["mac"] = ["02:42:ac:13:00:06", "0242.ac13.0007"]
    del ev["related"]
    doc = normalize_event(ev, NOW)
    assert doc["host"]["mac"] == ["02-42-AC-13-00-06", "02-42-AC-13-00-07"]
    assert doc["related"]["ip"] == ["192.168.238.68", "8.8.8.8", "192.0.2.7"]
    assert doc["related"]["hosts"] == ["sensor1"]
    forwarded = normalize_event(shipped(tags=["forwarded"]), NOW)
    assert "host" not in forwarded


def test_related_hosts_from_domains_when_missing() -> None:
    ev = sample("http")
    del ev["related"]
    doc = normalize_event(ev, NOW)
    assert doc["related"] == {"ip": ["127.0.0.1"], "hosts": ["packetbeat.com"]}


def test_other_beats_pass_with_types_checked_but_no_network_traffic_shape() -> None:
    ev = {"@timestamp": "2024-01-01T00:00:00.000Z", "message": "hello",
          "@metadata": {"beat": "filebeat"}, "agent": {"type": "filebeat"},
          "source": {"port": "22"}}
    doc = normalize_event(ev, NOW)
    assert doc == {"@timestamp": "2024-01-01T00:00:00.000Z", "message": "hello",
                   "agent": {"type": "filebeat"}, "source": {"port": 22}}


def test_missing_timestamp_is_the_arrival_time() -> None:
    ev = shipped()
    del ev["@timestamp"]
    assert normalize_event(ev, NOW)["@timestamp"] == "2024-02-14T21:18:30.000Z"


def test_batches_cost_only_the_bad_events() -> None:
    out = normalize_batch([shipped(), 5, {"source": {"ip": "x"}}, shipped()], NOW)
    assert out.index == [0, 3]
    assert [why for why, _ in out.failures] == [
        "event 2 of the batch: an event is a JSON object, got a number",
        "event 3 of the batch: source.ip: 'x' is not a valid ip"]
    assert orjson.loads(out.failures[1][1]) == {"source": {"ip": "x"}}
    assert normalize_json(b"{nope").failures[0][0].startswith("not a JSON array")
    assert normalize_json(b"{}").failures[0][0].startswith("expected a JSON array")


# ---------------------------------------------------------------- through the worker

def _processor() -> Processor:
    return Processor(EnrichSpec(None, None, 100, 0, ("private",), {}, 65536))


def test_worker_keeps_the_community_id_packetbeat_sent_and_adds_missing_ones() -> None:
    with_id = shipped()
    without = shipped()
    del without["network"]["community_id"]
    flow = sample("flow")
    del flow["network"]["community_id"]
    job = Job("beats", "packetbeat", Origin("beats"), orjson.dumps([with_id, without, flow]),
              digest="d" * 64)
    r = _processor()(job)
    docs = to_documents(r.events)
    assert r.failures == []
    assert docs[0]["network"]["community_id"] == "1:qYA6Pi3oK/YLNdQXD2WrnEBi118="
    # computed by netmeta's enrich stage: the same id Packetbeat had computed
    assert docs[1]["network"]["community_id"] == "1:qYA6Pi3oK/YLNdQXD2WrnEBi118="
    assert docs[2]["network"]["community_id"] == "1:5y9AkdbV9U8xqD9dhlj6obkubHg="
    assert [r.events.column("_id")[i].as_py() for i in range(3)] == [
        f"beats:{'d' * 32}:{i}" for i in range(3)]
    # locality fills what Packetbeat left empty, never what it said
    assert docs[0]["network"]["direction"] == "unknown"
    assert docs[2]["network"]["direction"] == "internal"


def test_worker_turns_rejects_and_bad_events_into_failures() -> None:
    job = Job("beats", "packetbeat", Origin("beats"), b'[{"source": {"ip": 1}}, 3]',
              digest="e" * 64, rejects=(("beats: 1.2.3.4: event 9: not JSON", b"{x"),))
    r = _processor()(job)
    assert r.n_events == 0
    assert [f.message for f in r.failures] == [
        "beats: 1.2.3.4: event 9: not JSON",
        "packetbeat: event 1 of the batch: source.ip: 1 is not a valid ip",
        "packetbeat: event 2 of the batch: an event is a JSON object, got a number"]


def test_stored_documents_keep_the_ecs_fields() -> None:
    kinds = ("dns", "http", "flow")
    r = _processor()(Job("beats", "packetbeat", Origin("beats"),
                         orjson.dumps([sample(k) for k in kinds]), digest="f" * 64))
    pairs = [(ecs_only(d), sample(k)) for d, k in zip(to_documents(r.events), kinds,
                                                      strict=True)]
    stored = allowlist("packetbeat.stored")
    c = compare(pairs, stored)
    print(f"packetbeat stored conformance: {c.matched}/{c.total} expected fields matched")
    assert c.problems == []
    assert not c.stale(stored)
