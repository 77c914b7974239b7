"""The Elasticsearch-compatible input over real HTTP on 127.0.0.1: what a Beat asks at start,
_bulk with Elasticsearch's exact answers (per-item results and errors, filter_path, gzip),
auth, and answers only once stored."""

from __future__ import annotations

import base64
import concurrent.futures as cf
import gzip
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from netmeta.config import EsInput
from netmeta.sources.es_bulk import create_app, filter_path, index_prefix, with_prefix
from netmeta.web.app import HttpServer

from .conftest import free_port


class Recorder:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.delay, self.fail = delay, fail
        self.docs: list[dict[str, Any]] = []
        self.rejects: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    def __call__(self, docs: list[bytes], rejects: list[tuple[str, bytes]], digest: str,
                 ids: list[str] | None) -> cf.Future[None]:
        fut: cf.Future[None] = cf.Future()

        def done() -> None:
            if self.fail:
                fut.set_exception(RuntimeError("store is down"))
                return
            with self.lock:
                self.docs += [orjson.loads(d) for d in docs]
                self.rejects += rejects
            fut.set_result(None)

        threading.Timer(self.delay, done).start() if self.delay else done()
        return fut


class Es:
    def __init__(self, cfg: EsInput | None = None, rec: Recorder | None = None) -> None:
        self.rec = rec or Recorder()
        self.port = free_port()
        self.server = HttpServer(create_app("es", cfg or EsInput(), self.rec), "127.0.0.1",
                                 self.port)
        self.server.start()

    def call(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=body,
                                     method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, hdrs, raw = r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
        except urllib.error.HTTPError as e:
            status, hdrs, raw = e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()
        return status, hdrs, orjson.loads(raw) if raw else None

    def bulk(self, lines: list[Any], path: str = "/_bulk", **kw: Any) -> tuple[int, Any]:
        body = b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in lines)
        status, _, obj = self.call("POST", path, body, {"Content-Type": "application/x-ndjson",
                                                        **kw})
        return status, obj


@pytest.fixture
def es() -> Iterator[Es]:
    e = Es()
    yield e
    e.server.stop()


EVENT = {"@timestamp": "2024-01-01T00:00:00.000Z", "type": "dns", "dns": {"id": 1}}


def test_root_answers_as_elasticsearch_8(es: Es) -> None:
    status, headers, obj = es.call("GET", "/")
    assert status == 200 and headers["x-elastic-product"] == "Elasticsearch"
    assert obj["version"]["number"] == "8.19.0"
    assert obj["version"]["build_flavor"] == "default"
    assert obj["tagline"] == "You Know, for Search"
    assert obj["cluster_uuid"] and obj["cluster_name"] == "netmeta" and obj["name"]
    assert es.call("HEAD", "/")[0] == 200


def test_license_and_xpack(es: Es) -> None:
    status, _, obj = es.call("GET", "/_license?human=false")
    assert status == 200 and obj["license"]["type"] == "basic"
    assert obj["license"]["status"] == "active"
    status, _, obj = es.call("GET", "/_xpack")
    assert status == 200 and obj["features"]["ilm"]["available"]


def test_setup_calls_a_beat_makes(es: Es) -> None:
    """ILM policy, index template and ingest pipeline: checked, absent, put, then present."""
    policy = {"policy": {"phases": {"hot": {"actions": {}}}}}
    assert es.call("GET", "/_ilm/policy/packetbeat")[0] == 404
    assert es.call("PUT", "/_ilm/policy/packetbeat", orjson.dumps(policy),
                   {"Content-Type": "application/json"})[2] == {"acknowledged": True}
    status, _, obj = es.call("GET", "/_ilm/policy/packetbeat")
    assert status == 200 and obj["packetbeat"]["policy"] == policy["policy"]

    tmpl = {"index_patterns": ["packetbeat-8.17.0"], "data_stream": {}, "priority": 150}
    assert es.call("HEAD", "/_index_template/packetbeat-8.17.0")[0] == 404
    es.call("PUT", "/_index_template/packetbeat-8.17.0", gzip.compress(orjson.dumps(tmpl)),
            {"Content-Encoding": "gzip"})
    assert es.call("HEAD", "/_index_template/packetbeat-8.17.0")[0] == 200
    obj = es.call("GET", "/_index_template/packetbeat-8.17.0")[2]
    assert obj["index_templates"][0]["index_template"] == tmpl

    assert es.call("GET", "/_ingest/pipeline/packetbeat-8.17.0-routing")[0] == 404
    es.call("PUT", "/_ingest/pipeline/packetbeat-8.17.0-routing", b'{"processors": []}')
    obj = es.call("GET", "/_ingest/pipeline/packetbeat-8.17.0-routing")[2]
    assert obj == {"packetbeat-8.17.0-routing": {"processors": []}}
    assert es.call("GET", "/_component_template/x")[0] == 404
    assert es.call("GET", "/_nodes")[0] == 200
    assert es.call("GET", "/_cluster/health")[2]["status"] == "green"


def test_bulk_create_and_index(es: Es) -> None:
    status, obj = es.bulk([{"create": {"_index": "packetbeat-8.17.0"}}, EVENT,
                           {"index": {"_index": "logs-network_traffic.dns-default",
                                      "_id": "abc"}}, {**EVENT, "n": 2}])
    assert status == 200
    assert obj["errors"] is False and isinstance(obj["took"], int)
    first, second = obj["items"]
    assert first["create"]["status"] == 201 and first["create"]["result"] == "created"
    assert first["create"]["_index"] == "packetbeat-8.17.0" and first["create"]["_id"]
    assert set(first["create"]) == {"_index", "_id", "_version", "result", "_shards",
                                    "_seq_no", "_primary_term", "status"}
    assert second["index"]["_id"] == "abc" and second["index"]["status"] == 201
    a, b = es.rec.docs
    assert "data_stream" not in a and "@metadata" not in a
    assert a["_index"] == "packetbeat-8.17.0" and b["_index"] == "logs-network_traffic.dns-default"
    assert b["data_stream"] == {"type": "logs", "dataset": "network_traffic.dns",
                                "namespace": "default"}
    assert a["dns"] == {"id": 1} and b["n"] == 2


def test_bad_source_line_is_a_400_item_others_stored(es: Es) -> None:
    status, obj = es.bulk([{"create": {"_index": "pb"}}, EVENT,
                           {"create": {"_index": "pb"}}, b'{"broken": ',
                           {"create": {"_index": "pb"}}, b"[1, 2]",
                           {"create": {"_index": "pb"}}, {**EVENT, "n": 4}])
    assert status == 200 and obj["errors"] is True
    statuses = [i["create"]["status"] for i in obj["items"]]
    assert statuses == [201, 400, 400, 201]
    err = obj["items"][1]["create"]["error"]
    assert err["type"] == "document_parsing_exception" and "failed to parse" in err["reason"]
    assert len(es.rec.docs) == 2
    assert [doc for _, doc in es.rec.rejects] == [b'{"broken": ', b"[1, 2]"]


def test_path_index_and_filter_path_as_beats_ask(es: Es) -> None:
    fp = ("errors,items.index.status,items.index.error,items.create.status,"
          "items.create.error,items.update.status,items.update.error")
    status, obj = es.bulk([{"create": {}}, EVENT, {"create": {}}, b"nope"],
                          path=f"/packetbeat-8.17.0/_bulk?filter_path={fp}")
    assert status == 200
    assert obj == {"errors": True, "items": [
        {"create": {"status": 201}},
        {"create": {"status": 400, "error": {
            "type": "document_parsing_exception",
            "reason": obj["items"][1]["create"]["error"]["reason"]}}}]}
    assert es.rec.docs[0] == {**EVENT, "_index": "packetbeat-8.17.0"}  # the URL's index
    _, obj = es.bulk([{"create": {}}, EVENT], path="/pb/_bulk?filter_path=took,items.*._id")
    assert set(obj) == {"took", "items"} and list(obj["items"][0]["create"]) == ["_id"]
    _, obj = es.bulk([{"create": {}}, EVENT], path="/pb/_bulk?filter_path=items.*.error")
    assert obj == {}


def test_gzip_body(es: Es) -> None:
    body = b"".join(orjson.dumps(x) + b"\n" for x in [{"create": {"_index": "pb"}}, EVENT] * 50)
    status, _, obj = es.call("POST", "/_bulk", gzip.compress(body),
                             {"Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert status == 200 and len(obj["items"]) == 50 and not obj["errors"]
    two = gzip.compress(body[:len(body) // 2]) + gzip.compress(body[len(body) // 2:])
    status, _, obj = es.call("POST", "/_bulk", two, {"Content-Encoding": "gzip"})
    assert status == 200 and len(obj["items"]) == 50  # gzip members one after the other
    status, _, obj = es.call("POST", "/_bulk", gzip.compress(body)[:-20],
                             {"Content-Encoding": "gzip"})
    assert status == 400
    status, _, obj = es.call("POST", "/_bulk", b"\x1f\x8bnot gzip", {"Content-Encoding": "gzip"})
    assert status == 400 and obj["status"] == 400


@pytest.mark.parametrize("body, kind", [
    (b"", "action_request_validation_exception"),
    (b'{"create": {"_index": "pb"}}\n{}', "illegal_argument_exception"),  # no final newline
    (b'not json\n{}\n', "x_content_parse_exception"),
    (b'{"upsert": {"_index": "pb"}}\n{}\n', "illegal_argument_exception"),
    (b'{"create": {}}\n{}\n', "action_request_validation_exception"),  # no index
])
def test_malformed_requests_fail_whole(es: Es, body: bytes, kind: str) -> None:
    status, headers, obj = es.call("POST", "/_bulk", body)
    assert status == 400
    assert obj["error"]["type"] == kind and obj["error"]["root_cause"][0]["type"] == kind
    assert obj["status"] == 400 and headers["x-elastic-product"] == "Elasticsearch"
    assert es.rec.docs == []


def test_delete_and_update_are_refused_per_item(es: Es) -> None:
    _, obj = es.bulk([{"delete": {"_index": "pb", "_id": "1"}},
                      {"update": {"_index": "pb", "_id": "1"}}, {"doc": {"a": 1}},
                      {"create": {"_index": "pb"}}, EVENT])
    assert [next(iter(i.values()))["status"] for i in obj["items"]] == [400, 400, 201]


def test_answer_waits_for_storage() -> None:
    rec = Recorder(delay=0.8)
    es = Es(rec=rec)
    try:
        t0 = time.monotonic()
        status, obj = es.bulk([{"create": {"_index": "pb"}}, EVENT])
        assert status == 200 and time.monotonic() - t0 >= 0.8 and len(rec.docs) == 1
    finally:
        es.server.stop()
    es = Es(rec=Recorder(fail=True))
    try:
        status, obj = es.bulk([{"create": {"_index": "pb"}}, EVENT])
        assert status == 503 and obj["error"]["type"] == "unavailable_shards_exception"
    finally:
        es.server.stop()


def test_body_limits() -> None:
    es = Es(EsInput(max_body=1000, max_decompressed=5000))
    try:
        big = b'{"create":{"_index":"pb"}}\n{"a":"' + b"x" * 2000 + b'"}\n'
        assert es.call("POST", "/_bulk", big)[0] == 413
        bomb = gzip.compress(b'{"create":{"_index":"pb"}}\n{"a":"' + b"x" * 100000 + b'"}\n')
        assert len(bomb) < 1000
        assert es.call("POST", "/_bulk", bomb, {"Content-Encoding": "gzip"})[0] == 413
    finally:
        es.server.stop()


def test_auth_basic_and_api_key() -> None:
    es = Es(EsInput(username="beat", password="s3cret", api_keys=["id1:key1"]))
    try:
        status, headers, obj = es.call("GET", "/")
        assert status == 401 and obj["error"]["type"] == "security_exception"
        assert "Basic" in headers["www-authenticate"]
        basic = "Basic " + base64.b64encode(b"beat:s3cret").decode()
        assert es.call("GET", "/", headers={"Authorization": basic})[0] == 200
        wrong = "Basic " + base64.b64encode(b"beat:nope").decode()
        assert es.call("GET", "/", headers={"Authorization": wrong})[0] == 401
        apikey = "ApiKey " + base64.b64encode(b"id1:key1").decode()
        assert es.bulk([{"create": {"_index": "pb"}}, EVENT], Authorization=apikey)[0] == 200
        assert es.bulk([{"create": {"_index": "pb"}}, EVENT])[0] == 401
        assert es.call("GET", "/_license")[0] == 401
        assert len(es.rec.docs) == 1
    finally:
        es.server.stop()


def test_pure_helpers() -> None:
    p = index_prefix("logs-network_traffic.flow-default")
    assert orjson.loads(with_prefix(b"{}", p))["data_stream"]["dataset"] == \
        "network_traffic.flow"
    doc = orjson.loads(with_prefix(b' { "data_stream": {"type": "metrics"}, "a": 1}', p))
    assert doc["data_stream"] == {"type": "metrics"} and doc["a"] == 1  # the event's own wins
    assert filter_path({"a": [{"b": {"c": 1, "d": 2}}], "e": 3}, "a.*.c,e") == \
        {"a": [{"b": {"c": 1}}], "e": 3}


def test_bulk_through_serve(tmp_path: Any) -> None:
    """A Beat's start-up calls, then _bulk into `netmeta serve`: answered once stored."""
    from .servers import Serve
    from .test_beats_input import packetbeat_events

    port = free_port()
    serve = Serve(tmp_path, [str(tmp_path / "none" / "*.log")], inputs={"pbes": {
        "type": "elasticsearch", "listen": "127.0.0.1", "port": port,
        "elasticsearch": {"api_keys": ["beat:k3y"]}}})
    auth = {"Authorization": "ApiKey " + base64.b64encode(b"beat:k3y").decode()}
    with serve:
        es = Es.__new__(Es)
        es.port = port
        assert es.call("GET", "/", headers=auth)[2]["version"]["number"] == "8.19.0"
        assert es.call("GET", "/_license?human=false", headers=auth)[0] == 200
        assert es.call("HEAD", "/_index_template/packetbeat-8.17.0", headers=auth)[0] == 404
        events = [{k: v for k, v in e.items() if k != "@metadata"} for e in packetbeat_events()]
        lines: list[Any] = []
        for e in events:
            lines += [{"create": {"_index": "packetbeat-8.17.0"}}, e]
        lines += [{"create": {"_index": "logs-network_traffic.dns-prod"}}, events[0],
                  {"create": {"_index": "packetbeat-8.17.0"}}, b'{"truncated": tr']
        status, obj = es.bulk(lines, **auth)
        assert status == 200 and obj["errors"] is True
        assert [i["create"]["status"] for i in obj["items"]] == [201, 201, 201, 201, 400]
        assert serve.total("_input:pbes") == 4  # stored when answered
        assert serve.total("_input:pbes and data_stream.namespace:prod") == 1
        assert serve.total("_input:pbes and event.dataset:network_traffic.http") == 1
        status, obj = es.bulk(lines, **auth)  # the same request again: a retry
        assert status == 200 and serve.total("_input:pbes") == 4
        failures = serve.get("/api/failures")["failures"]
        assert any("_bulk line 10" in f["error.message"] for f in failures)
        assert es.bulk(lines)[0] == 401
