"""The batch Packetbeat normalizer gives the reference's rows, event for event.

netmeta.normalize.packetbeat_batch takes each event by the fastest path that fits: a
compiled shape (packetbeat_shapes), the flat walk (packetbeat_flat) or the reference
(packetbeat.normalize_event + event.split_document, the one checked against Elastic's sample
documents in test_packetbeat_normalize.py). Here all three make rows from the peer samples,
from hand-made odd events and from generated mutations, and the rows must be equal: typed
column values as the store takes them, and the JSON of the rest; failures must give the
reference's reason.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netmeta.event import from_rows
from netmeta.normalize import packetbeat_batch, packetbeat_flat, packetbeat_shapes
from netmeta.normalize.packetbeat import NormalizeError, normalize_event

from .conftest import PEER

SAMPLES = PEER / "packetbeat" / "network_traffic"
NOW = dt.datetime(2024, 2, 14, 21, 18, 30, 123456, tzinfo=dt.UTC)
NOW_ISO = "2024-02-14T21:18:30.123Z"


def shipped(kind: str) -> dict[str, Any]:
    """A sample as Packetbeat ships it (no Fleet fields, with @metadata)."""
    doc = json.loads((SAMPLES / kind / "sample_event.json").read_text())
    for k in ("elastic_agent", "data_stream"):
        doc.pop(k, None)
    doc.setdefault("agent", {})["type"] = "packetbeat"
    doc["@metadata"] = {"beat": "packetbeat", "type": "_doc", "version": "8.17.0"}
    return doc


KINDS = ("dns", "http", "flow")


def canonical(row: tuple[dict[str, Any], str | None]) -> bytes:
    """A row as the store would hold it (Arrow converts the typed values), comparable."""
    typed, extra = row
    cells = {k: v for k, v in from_rows([typed], [extra], "t").to_pylist()[0].items()
             if v is not None and k not in ("_extra", "_id", "_input")}
    return orjson.dumps({"typed": cells, "extra": orjson.loads(extra) if extra else None},
                        option=orjson.OPT_SORT_KEYS, default=str)


def reference(event: Any) -> bytes | str:
    """The reference's row, or the reason it refuses the event."""
    try:
        return canonical(packetbeat_batch.reference_row(event, NOW))
    except NormalizeError as e:
        return str(e)


def by_every_path(event: Any) -> list[bytes | str]:
    """The event's row by the batch, by a compiled shape and by the flat walk (each where it
    takes the event), as :func:`reference` gives it."""
    out: list[bytes | str] = []
    rows = packetbeat_batch.normalize_rows([copy.deepcopy(event)], NOW)
    if rows.typed:
        out.append(canonical((rows.typed[0], rows.extras[0])))
    else:
        why = rows.failures[0][0]
        out.append(why.removeprefix("event 1 of the batch: "))
    for path in (packetbeat_shapes.shaped_row, packetbeat_flat.flat_row):
        try:
            row = path(copy.deepcopy(event), NOW_ISO)
        except (packetbeat_flat.Slow, TypeError):  # TypeError: orjson, on a 65-bit number
            continue
        if row is not None:
            out.append(canonical(row))
    return out


def assert_same(event: Any) -> None:
    want = reference(event)
    for got in by_every_path(event):
        assert got == want, (event, got, want)


def test_peer_samples_take_compiled_shapes_and_give_the_reference_rows() -> None:
    events = [shipped(k) for k in KINDS] * 3
    rows = packetbeat_batch.normalize_rows(copy.deepcopy(events), NOW)
    assert (rows.flat, rows.slow, rows.failures) == (0, 0, [])
    assert rows.index == list(range(len(events)))
    got = [canonical(r) for r in zip(rows.typed, rows.extras, strict=True)]
    assert got == [reference(e) for e in events]
    for e in events:
        assert packetbeat_shapes.shaped_row(copy.deepcopy(e), NOW_ISO) is not None


def test_rows_keep_ecs_and_gim_fields() -> None:
    rows = packetbeat_batch.normalize_rows([shipped("dns")], NOW)
    typed, extra = rows.typed[0], orjson.loads(rows.extras[0] or "{}")
    assert typed["dns.question.name"] == "nothing.elastic.co"
    assert typed["event.dataset"] == "network_traffic.dns"
    assert typed["related.ip"] == ["192.168.238.68", "8.8.8.8"]
    assert extra["gim_event_type_code"] == "140300"
    assert extra["query_request"] == "nothing.elastic.co"
    assert extra["data_stream"] == {"dataset": "network_traffic.dns", "namespace": "default",
                                    "type": "logs"}
    assert "@metadata" not in extra


def _with(kind: str, **changes: Any) -> dict[str, Any]:
    """A sample with dotted paths set (None-valued keys given as ...: removed)."""
    doc = shipped(kind)
    for dotted, value in changes.items():
        *parents, last = dotted.replace("__", ".").split(".")
        cur = doc
        for p in parents:
            cur = cur.setdefault(p, {})
        if value is ...:
            cur.pop(last, None)
        else:
            cur[last] = value
    return doc


ODD: list[Any] = [
    5, "text", [], {},
    {"@timestamp": "2024-01-01T00:00:00Z", "message": "a filebeat event"},
    _with("dns", **{"source.ip": "not an address"}),
    _with("dns", **{"source.port": "53"}),
    _with("dns", **{"source.port": "5.7"}),
    _with("dns", **{"source.port": True}),
    _with("dns", **{"source.bytes": 2**70}),
    _with("dns", **{"event.duration": 1.0}),
    _with("dns", **{"event.start": "yesterday"}),
    _with("dns", **{"event.start": 1700000000000}),
    _with("dns", **{"@timestamp": None}),
    _with("dns", **{"@timestamp": ...}),
    _with("dns", **{"event": None}),
    _with("dns", **{"event": {}}),
    _with("dns", **{"event.dataset": "dns"}),
    _with("dns", **{"type": ...}),
    _with("dns", **{"type": ..., "event.dataset": "network_traffic.dns"}),
    _with("dns", data_stream={}),
    _with("dns", data_stream=None),
    _with("dns", data_stream={"dataset": "custom", "namespace": "x", "type": "logs"}),
    _with("dns", tags=["forwarded"]),
    _with("dns", tags="forwarded"),
    _with("dns", **{"host.mac": "02:42:ac:13:00:06"}),
    _with("dns", **{"host.mac": ["02:42:AC:13:00:06", 5]}),
    _with("dns", **{"host.mac": ...}),
    _with("dns", host=None),
    _with("dns", host="a name"),
    _with("dns", related={"ip": None}),
    _with("dns", related={"ip": "10.1.1.1"}),
    _with("dns", related={"hosts": ["x"]}),
    _with("dns", related=None),
    _with("dns", related={}),
    _with("dns", observer={"hostname": "OBS", "ip": ["192.0.2.1", "192.0.2.1"]}),
    _with("dns", observer={"hostname": "", "ip": "192.0.2.1"}, related={"ip": None}),
    _with("dns", **{"dns.resolved_ip": ["192.0.2.9", "bad"]}),
    _with("dns", **{"dns.resolved_ip": "192.0.2.9"}),
    _with("dns", **{"dns.answers": [{"name": "a", "ttl": "30", "data": "192.0.2.9"}]}),
    _with("dns", **{"dns.answers": {"name": "a", "ttl": 30, "data": "192.0.2.9"}}),
    _with("dns", **{"dns.answers": [5]}),
    _with("dns", **{"dns.answers": [{"ttl": "soon"}]}),
    _with("dns", **{"dns.type": "query", "dns.response_code": ...}),
    _with("dns", **{"dns.type": "answer", "dns.response_code": "NOERROR"}),
    _with("dns", **{"dns.question.name": ""}),
    _with("dns", **{"source.ip": "fe80::1%eth0", "destination.ip": "2001:db8::1"}),
    _with("dns", **{"agent.type": "filebeat"}),
    _with("dns", **{"agent.type": "filebeat", "@metadata": ...}),
    _with("dns", **{"@metadata": {"beat": "packetbeat", "a.b": 1}}),
    _with("dns", **{"@metadata": "x", "agent.type": "x"}),
    _with("dns", **{"source.ip": ...}, **{"x.y": 1}),
    _with("dns", **{"custom": {"a.b": 1}}),
    _with("dns", **{"custom": {"a": {}, "b": [1, {"c.d": 2}]}}),
    _with("dns", source_ip="kept", query_request=""),
    _with("dns", **{"source.nat": {}}),
    _with("dns", **{"event.category": ["network", 5]}),
    _with("dns", **{"event.category": "network"}),
    _with("dns", **{"host.ip": ["172.19.0.6", "nope"]}),
    _with("dns", **{"host.ip": []}),
    _with("dns", **{"network.bytes": None}),
    _with("http", **{"http.response.headers": None}),
    _with("http", **{"http.response.headers": "text/html"}),
    _with("http", **{"http.response.headers": {"content-type": "TEXT/HTML", "a.b": 1}}),
    _with("http", **{"http.response.status_code": ...}),
    _with("http", **{"http.response.status_code": ..., "http.request.method": ...}),
    _with("http", **{"http.request.bytes": "898"}),
    _with("http", **{"url.domain": "", "server.domain": "Example.COM"}),
    _with("flow", **{"flow.final": "true"}),
    _with("flow", **{"flow.final": "maybe"}),
    _with("flow", **{"network.type": "ipv6"}),
]


def test_odd_events_give_the_reference_rows_or_failures() -> None:
    for event in ODD:
        assert_same(event)


def test_a_batch_of_odd_events_loses_only_the_refused_ones() -> None:
    events = [shipped("dns"), *ODD, shipped("http")]
    rows = packetbeat_batch.normalize_rows(copy.deepcopy(events), NOW)
    refused = [i for i, e in enumerate(events) if isinstance(reference(e), str)]
    assert sorted(rows.index + refused) == list(range(len(events)))
    assert len(rows.failures) == len(refused) > 5
    assert rows.failures[0][0].startswith(f"event {refused[0] + 1} of the batch: ")
    assert rows.slow >= len(refused)


def test_not_a_json_array() -> None:
    assert packetbeat_batch.normalize_json(b"{nope").failures[0][0].startswith(
        "not a JSON array")
    assert packetbeat_batch.normalize_json(b"{}").failures[0][0].startswith(
        "expected a JSON array")


def test_the_event_is_not_modified() -> None:
    event = shipped("http")
    before = copy.deepcopy(event)
    packetbeat_batch.normalize_rows([event, event], NOW)
    assert event == before


# ---------------------------------------------------------------- generated events

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**65), 2**65), st.floats(allow_nan=False),
    st.sampled_from(["", "53", "5.7", "true", "false", "10.0.0.1", "::1", "nope", "query",
                     "answer", "NOERROR", "NXDOMAIN", "dns", "http", "flow", "forwarded",
                     "2024-01-01T00:00:00Z", "02:42:ac:13:00:06", "packetbeat"]),
    st.lists(st.sampled_from(["10.0.0.1", "x", "forwarded", 3]), max_size=3),
    st.just({}), st.just({"a.b": 1}), st.just({"ip": "10.0.0.2"}),
    st.just([{"data": "10.0.0.3", "ttl": "5"}])).map(copy.deepcopy)  # no value shared


def _paths(doc: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.append((*prefix, k))
            out += _paths(v, (*prefix, k))
    return out


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    event = shipped(draw(st.sampled_from(KINDS)))
    for _ in range(draw(st.integers(1, 4))):
        paths = _paths(event)
        path = draw(st.sampled_from(paths))
        parent: Any = event
        for p in path[:-1]:
            parent = parent[p]
        action = draw(st.sampled_from(["set", "set", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "add":
            target = parent[path[-1]] if isinstance(parent[path[-1]], dict) else parent
            key = draw(st.sampled_from(["ip", "port", "mac", "extra", "x.y", "dataset",
                                        "hostname", "type", "related", "host", "tags"]))
            target[key] = draw(VALUES)
        else:
            parent[path[-1]] = draw(VALUES)
    return event


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_generated_events_give_the_reference_rows(event: dict[str, Any]) -> None:
    assert_same(event)
    # and in a batch beside events of known shapes (shapes tried in turn, misses skipped)
    rows = packetbeat_batch.normalize_rows(
        copy.deepcopy([shipped("dns"), event, shipped("flow")]), NOW)
    want = reference(event)
    if isinstance(want, str):
        assert rows.index == [0, 2]
    else:
        assert canonical((rows.typed[1], rows.extras[1])) == want


def test_the_reference_is_what_elastic_keeps() -> None:
    """The oracle itself: a sample's row holds the normalized document's values."""
    doc = normalize_event(shipped("flow"), NOW)
    rows = packetbeat_batch.normalize_rows([shipped("flow")], NOW)
    assert rows.typed[0]["source.ip"] == doc["source"]["ip"] == "::1"
    assert orjson.loads(rows.extras[0] or "{}")["source_ipv6"] == "::1"
