"""_bulk with explicit ``_id``: the id becomes the stored id, a repeated ``create`` is answered
409 as Elasticsearch does (per item), an ``index`` of the same content is "updated", of
other content refused — remembered in a real DuckDB store across restarts."""

from __future__ import annotations

import concurrent.futures as cf
import signal
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from netmeta.config import EsInput
from netmeta.sources.es_bulk import create_app, decide, derived_id, prepare
from netmeta.store.duckdb import Store
from netmeta.store.explicit_ids import TABLE, ExplicitIds
from netmeta.web.app import HttpServer

from .conftest import free_port
from .test_es_bulk import Es

EVENT = {"@timestamp": "2024-01-01T00:00:00.000Z", "type": "dns", "dns": {"id": 1}}
IDX = "packetbeat-8.17.0"


class StoringRecorder:
    """A submit that commits the request digest to a real store, as the pipeline does with
    a stored batch (events and digest in one transaction), and keeps what it was given."""

    def __init__(self, store: Store, name: str, fail: bool = False) -> None:
        self.store, self.name, self.fail = store, name, fail
        self.docs: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.rejects: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    def __call__(self, docs: list[bytes], rejects: list[tuple[str, bytes]], digest: str,
                 ids: list[str] | None) -> cf.Future[None]:
        fut: cf.Future[None] = cf.Future()
        if self.fail:
            fut.set_exception(RuntimeError("store is down"))
            return fut
        self.store.commit([], batches=[(self.name, digest)])
        with self.lock:
            self.docs += [orjson.loads(d) for d in docs]
            self.ids += ids if ids is not None else [derived_id(self.name, digest, i)
                                                     for i in range(len(docs))]
            self.rejects += rejects
        fut.set_result(None)
        return fut


class IdEs(Es):
    def __init__(self, store: Store, rec: StoringRecorder) -> None:  # noqa: D107
        self.rec = rec  # type: ignore[assignment]
        self.port = free_port()
        self.server = HttpServer(create_app("es", EsInput(), rec, ExplicitIds(store, "es")),
                                 "127.0.0.1", self.port)
        self.server.start()


def _status(obj: Any) -> list[int]:
    return [next(iter(i.values()))["status"] for i in obj["items"]]


@pytest.fixture
def store(tmp_path: Path) -> Any:
    s = Store(tmp_path / "data")
    yield s
    s.close()


def test_create_with_existing_id_is_409_per_item(store: Store) -> None:
    es = IdEs(store, StoringRecorder(store, "es"))
    try:
        status, obj = es.bulk([{"create": {"_index": IDX, "_id": "a1"}}, EVENT,
                               {"create": {"_index": IDX}}, EVENT])
        assert status == 200 and _status(obj) == [201, 201] and obj["errors"] is False
        assert obj["items"][0]["create"]["_id"] == "a1"
        derived = obj["items"][1]["create"]["_id"]
        assert es.rec.ids == ["a1", derived] and derived.startswith("es:")

        status, obj = es.bulk([{"create": {"_index": IDX, "_id": "a1"}}, {**EVENT, "n": 2},
                               {"create": {"_index": IDX, "_id": "b2"}}, EVENT,
                               {"create": {"_index": "other", "_id": "a1"}}, EVENT])
        assert status == 200 and obj["errors"] is True
        assert _status(obj) == [409, 201, 201]  # an id is per index, as in Elasticsearch
        conflict = obj["items"][0]["create"]
        assert conflict["_index"] == IDX and conflict["_id"] == "a1"
        err = conflict["error"]
        assert err["type"] == "version_conflict_engine_exception"
        assert err["reason"] == ("[a1]: version conflict, document already exists "
                                 "(current version [1])")
        assert err["index"] == IDX and err["shard"] == "0" and err["index_uuid"]
        assert es.rec.ids[2:] == ["b2", "a1"] and len(es.rec.docs) == 4
        assert all("n" not in d for d in es.rec.docs)  # the conflicting source: not stored

        # the same id twice in one request: the second create conflicts
        _, obj = es.bulk([{"create": {"_index": IDX, "_id": "c3"}}, EVENT,
                          {"create": {"_index": IDX, "_id": "c3"}}, EVENT])
        assert _status(obj) == [201, 409]
        # filter_path as Beats ask keeps status and error
        _, obj = es.bulk([{"create": {"_index": IDX, "_id": "c3"}}, EVENT],
                         path="/_bulk?filter_path=errors,items.*.status,items.*.error.type")
        assert obj == {"errors": True, "items": [{"create": {
            "status": 409, "error": {"type": "version_conflict_engine_exception"}}}]}
    finally:
        es.server.stop()


def test_index_same_content_is_updated_other_content_refused(store: Store) -> None:
    es = IdEs(store, StoringRecorder(store, "es"))
    try:
        es.bulk([{"index": {"_index": IDX, "_id": "x"}}, EVENT])
        status, obj = es.bulk([{"index": {"_index": IDX, "_id": "x"}}, EVENT,
                               {"index": {"_index": IDX, "_id": "x"}}, {**EVENT, "n": 9},
                               {"index": {"_index": IDX, "_id": "y"}}, EVENT])
        assert status == 200 and _status(obj) == [200, 400, 201]
        updated = obj["items"][0]["index"]
        assert updated["result"] == "updated" and updated["_version"] == 2
        refused = obj["items"][1]["index"]["error"]
        assert refused["type"] == "illegal_argument_exception"
        assert "append-only" in refused["reason"] and "[x]" in refused["reason"]
        assert es.rec.ids == ["x", "y"]  # stored once; the other content only as a failure
        assert any("[x] exists with other content" in why and doc == orjson.dumps(
            {**EVENT, "n": 9}) for why, doc in es.rec.rejects)
        _, obj = es.bulk([{"index": {"_index": IDX, "_id": "x"}}, EVENT])
        assert obj["items"][0]["index"]["_version"] == 3  # remembered
        _, obj = es.bulk([{"create": {"_index": IDX, "_id": "x"}}, EVENT])
        assert "(current version [3])" in obj["items"][0]["create"]["error"]["reason"]
    finally:
        es.server.stop()


def test_ids_survive_a_restart_and_unstored_ones_are_forgotten(tmp_path: Path) -> None:
    store = Store(tmp_path / "data")
    es = IdEs(store, StoringRecorder(store, "es"))
    try:
        assert _status(es.bulk([{"create": {"_index": IDX, "_id": "keep"}}, EVENT])[1]) == [201]
    finally:
        es.server.stop()
    # a reservation whose request never got stored (a crash before the commit)
    ExplicitIds(store, "es").reserve([((IDX, "lost"), "0" * 32)], "f" * 64)
    store.close()

    store = Store(tmp_path / "data")
    try:
        es = IdEs(store, StoringRecorder(store, "es"))
        try:
            _, obj = es.bulk([{"create": {"_index": IDX, "_id": "keep"}}, EVENT,
                              {"create": {"_index": IDX, "_id": "lost"}}, EVENT])
            assert _status(obj) == [409, 201]
        finally:
            es.server.stop()
        rows = store.cursor().execute(f"SELECT id FROM {TABLE} ORDER BY id").fetchall()
        assert rows == [("keep",), ("lost",)]
    finally:
        store.close()


def test_a_failed_request_does_not_keep_its_ids(store: Store) -> None:
    ids = ExplicitIds(store, "es")
    rec = StoringRecorder(store, "es", fail=True)
    port = free_port()
    server = HttpServer(create_app("es", EsInput(), rec, ids), "127.0.0.1", port)
    server.start()
    es = Es.__new__(Es)
    es.port = port
    try:
        status, obj = es.bulk([{"create": {"_index": IDX, "_id": "z"}}, EVENT])
        assert status == 503
        rec.fail = False
        status, obj = es.bulk([{"create": {"_index": IDX, "_id": "z"}}, EVENT])
        assert status == 200 and _status(obj) == [201] and rec.ids == ["z"]
    finally:
        server.stop()


def test_decide_without_ids_derives_them_as_the_worker_does() -> None:
    body = b"".join((x if isinstance(x, bytes) else orjson.dumps(x)) + b"\n" for x in [
        {"create": {"_index": IDX}}, EVENT, {"create": {"_index": IDX}}, b"[1]",
        {"create": {"_index": IDX}}, EVENT])
    prep = prepare(body, None)
    d = decide(prep, {}, "pb")
    assert d.ids is None and len(d.docs) == 2 and not d.reserve
    # the worker names the k-th document of the job: the answer must name the same ids
    assert [o.id for _, o in d.outcomes if o.status == 201] == [
        derived_id("pb", prep.digest, 0), derived_id("pb", prep.digest, 1)]
    assert prepare(body, None).digest == prep.digest != prepare(body, "x").digest


def test_ids_and_index_through_serve_and_a_restart(tmp_path: Path) -> None:
    """`netmeta serve`: the action's _id is the stored event's id, the index addressed is
    searchable (KQL `_index`), and a create of the same id after a restart is a 409."""
    from .servers import Serve
    from .test_beats_input import packetbeat_events

    port = free_port()
    serve = Serve(tmp_path, [str(tmp_path / "none" / "*.log")], inputs={"pbes": {
        "type": "elasticsearch", "listen": "127.0.0.1", "port": port}})
    es = Es.__new__(Es)
    es.port = port
    events = [{k: v for k, v in e.items() if k != "@metadata"} for e in packetbeat_events()]
    lines: list[Any] = [{"create": {"_index": IDX, "_id": "fp-1"}}, events[0],
                        {"create": {"_index": "logs-network_traffic.dns-prod"}}, events[1]]
    serve.start()
    try:
        status, obj = es.bulk(lines)
        assert status == 200 and _status(obj) == [201, 201]
        hits = serve.get("/api/search", q="_id:fp-1", limit=5)
        assert hits["total"] == 1 and hits["hits"][0]["_index"] == IDX
        assert serve.total(f"_index:{IDX}") == 1
        assert serve.total("_index:packetbeat-*") == 1
        assert serve.total("_index:logs-network_traffic.dns-prod") == 1
        derived = obj["items"][1]["create"]["_id"]
        assert serve.total(f'_id:"{derived}"') == 1  # the answer names the stored id
    finally:
        serve.stop(signal.SIGKILL)  # no clean shutdown: what was answered is durable
    with serve:
        status, obj = es.bulk([{"create": {"_index": IDX, "_id": "fp-1"}}, events[2]])
        assert status == 200 and _status(obj) == [409]
        assert serve.total("_input:pbes") == 2
