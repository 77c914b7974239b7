"""Streams and retention changed through the API take effect in the running service: a
stream created while `netmeta serve` runs routes the next events (written by its worker
processes) without a restart, and a shorter retention drops days at once."""

from __future__ import annotations

import datetime as dt
import json
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow as pa

from netmeta.store.duckdb import IndexSet, Store
from netmeta.web.app import HttpServer, create_app

from .conftest import free_port, goflow2_line
from .servers import Serve


def _send(port: int, path: str, body: Any, method: str = "POST") -> Any:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"}, method=method)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_stream_created_through_the_api_routes_at_once_in_the_workers(tmp_path: Path):
    logdir = tmp_path / "flows"
    logdir.mkdir()
    log = logdir / "goflow2.log"
    # before the stream exists: 20 events, 10 of them to port 53
    log.write_text("".join(goflow2_line(i, dst_port=53 if i % 2 else 443) + "\n"
                           for i in range(20)))
    with Serve(tmp_path, [str(logdir / "*.log")]) as serve:  # one worker process
        serve.wait_for(lambda: serve.total() == 20, "the first 20 events")
        _send(serve.port, "/api/index-sets", {"name": "dns_set", "retention_days": 5})
        made = _send(serve.port, "/api/streams", {"name": "dns_only", "index_set": "dns_set",
                                                  "rule": "destination.port:53"})
        assert made["active"] is True
        with log.open("a") as f:  # after: 30 events, 15 to port 53
            f.write("".join(goflow2_line(i, dst_port=53 if i % 2 else 443) + "\n"
                            for i in range(20, 50)))
        serve.wait_for(lambda: serve.total() >= 65, "the new events (port 53 ones twice)")
        assert serve.total("_streams:dns_only") == 15
        assert serve.total("_streams:dns_only and not destination.port:53") == 0
        assert serve.total("_streams:goflow2") == 50  # the input's own stream keeps all
        sets = {s["name"]: s for s in serve.get("/api/index-sets")["index_sets"]}
        assert sets["dns_set"]["events"] == 15
        streams = {s["name"]: s for s in serve.get("/api/streams", **{"from": "2024-07-01"})[
            "streams"]}
        assert streams["dns_only"]["active"] and streams["dns_only"]["events"] == 15
    # and after a restart the stream still routes (recorded in the catalog)
    with log.open("a") as f:
        f.write(goflow2_line(50, dst_port=53) + "\n")
    with Serve(tmp_path, [str(logdir / "*.log")]) as serve:
        serve.wait_for(lambda: serve.total("_streams:dns_only") == 16, "the 16th DNS event")


def test_shorter_retention_through_the_api_drops_old_days_at_once(tmp_path: Path):
    store = Store(tmp_path / "data", [IndexSet("short", "Short", 30)])
    today = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    t = pa.table({"@timestamp": pa.array([today], pa.timestamp("us")), "_id": ["a"],
                  "_input": ["x"]})
    from netmeta.route.streams import Stream

    store.add_stream(Stream("x", "short", ("x",)))
    for age in (0, 10):
        store.append(t, now=today - dt.timedelta(days=age))
    port = free_port()
    server = HttpServer(create_app(store, "none"), "127.0.0.1", port)
    server.start()
    try:
        changed = _send(port, "/api/index-sets/short", {"retention_days": 5}, "PATCH")
        old = (today - dt.timedelta(days=10)).date().isoformat()
        assert changed["dropped"] == [f"short/{old}"]
        usage = {p["day"] for p in store.partitions() if p["index_set"] == "short"}
        assert usage == {today.date().isoformat()}
    finally:
        server.stop()
        store.close()
