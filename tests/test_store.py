"""The embedded store on a real DuckDB file: partitions, retention, streams, failures."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from netmeta.event import Failure, add_ip_keys, failures_table, from_documents
from netmeta.query import search as q
from netmeta.route.streams import Stream
from netmeta.store.duckdb import IndexSet, Position, Store

DAY1 = dt.datetime(2026, 1, 10, 12)
DAY2 = dt.datetime(2026, 1, 11, 12)


def _batch(n: int, port: int = 443, ts: str = "2026-01-10T12:00:00Z", input_name: str = "a"):
    docs = [{"@timestamp": ts, "source": {"ip": f"10.0.0.{i % 250}", "port": 1000 + i},
             "destination": {"ip": "8.8.8.8", "port": port}, "network": {"bytes": i},
             "sflow": {"bytes": i}} for i in range(n)]
    return add_ip_keys(from_documents(docs, input_name, [f"{input_name}-{i}" for i in range(n)]))


def _days(path: Path) -> set[str]:
    """Partitions on disk: <index set>/<day> folders holding event files."""
    return {f.parent.relative_to(path / "events").as_posix()
            for f in (path / "events").rglob("*.parquet")}


def test_daily_partitions_queries_span_days_and_retention_drops_whole_days(tmp_path: Path):
    store = Store(tmp_path, [IndexSet("default", "Default", 2)], [Stream("a", inputs=("a",))])
    store.append(_batch(10), now=DAY1)
    store.append(_batch(5, ts="2026-01-11T12:00:00Z"), now=DAY2)
    assert q.count(store, q.Query()) == 15
    assert q.count(store, q.Query("destination.port:443 and source.ip:10.0.0.0/29")) == 8 + 5
    # the time range prunes partitions: only day 2 holds events of Jan 11
    files = store.files_for(dt.datetime(2026, 1, 11), None)
    assert len(files) == 1 and "/default/2026-01-11/" in files[0]
    assert q.count(store, q.Query(start=dt.datetime(2026, 1, 11))) == 5
    assert _days(tmp_path) == {"default/2026-01-10", "default/2026-01-11"}
    dropped = store.apply_retention(today=dt.date(2026, 1, 13))
    assert dropped == ["default/2026-01-10"]
    assert q.count(store, q.Query()) == 5
    assert _days(tmp_path) == {"default/2026-01-11"}
    assert [p["day"] for p in store.partitions()] == ["2026-01-11"]
    store.close()


def test_an_event_may_match_several_streams_and_unrouted_events_are_kept(tmp_path: Path):
    streams = [Stream("a", "flows", ("a",)), Stream("web", "flows", rule="destination.port:443"),
               Stream("big", "big", rule="network.bytes >= 8")]
    store = Store(tmp_path, [IndexSet("flows"), IndexSet("big")], streams)
    counts = store.append(_batch(10), now=DAY1)
    assert counts == {"a": 10, "web": 10, "big": 2, "default": 0}
    counts = store.append(_batch(3, port=53, input_name="other"), now=DAY1)
    assert counts == {"a": 0, "web": 0, "big": 0, "default": 3}
    cur = store.cursor()

    def rows(index_set: str, cols: str) -> list[tuple]:
        rel = store.events_relation(None, None, [index_set])
        return cur.execute(f"SELECT {cols} FROM ({rel})").fetchall()

    flows = rows("flows", '"_streams"')
    assert len(flows) == 10 and all(sorted(s) == ["a", "web"] for s, in flows)
    assert len(rows("big", "*")) == 2
    # matched by no stream: default index set, stream "default"
    assert rows("default", '"_streams", "_input"') == [(["default"], "other")] * 3
    assert q.count(store, q.Query("_streams:web")) == 10


def test_streams_without_rules_route_by_input(tmp_path: Path):
    """The default set-up (a stream per input) routes without evaluating anything per row."""
    streams = [Stream("a", "flows", ("a",)), Stream("b", inputs=("b",)),
               Stream("all_a", "default", ("a",))]
    store = Store(tmp_path, [IndexSet("flows")], streams)
    assert store.append(_batch(4), now=DAY1) == {"a": 4, "b": 0, "all_a": 4, "default": 0}
    assert store.append(_batch(2, input_name="zzz"), now=DAY1) == {
        "a": 0, "b": 0, "all_a": 0, "default": 2}
    cur = store.cursor()
    flows = cur.execute(f"SELECT _streams FROM ({store.events_relation(None, None, ['flows'])})")
    assert flows.fetchall() == [(["a"],)] * 4
    rel = store.events_relation(None, None, ["default"])
    got = cur.execute(f"SELECT _input, _streams FROM ({rel}) ORDER BY _input").fetchall()
    assert got == [("a", ["all_a"])] * 4 + [("zzz", ["default"])] * 2


def test_failures_positions_and_one_transaction(tmp_path: Path):
    store = Store(tmp_path)
    fails = failures_table([Failure("a", "goflow2: invalid JSON", b"\xff\xfe{", "/x.log", 7)])
    store.append(None, fails, [Position("a", 1, 2, "/x.log", 100)])
    assert store.positions("a") == {(1, 2): 100}
    store.append(None, None, [Position("a", 1, 2, "/x.log", 250)])
    assert store.positions("a") == {(1, 2): 250}
    store.append(None, None, forget=[("a", 1, 2)])
    assert store.positions("a") == {}
    row = store.failures().to_pylist()[0]
    assert row["error.message"] == "goflow2: invalid JSON"
    assert row["event.original"] == "\\xff\\xfe{"
    assert row["log.offset"] == 7
    # a failing append stores nothing of the batch (events, failures and positions together)
    bad = _batch(2).append_column("no.such.column", __import__("pyarrow").array([1, 2]))
    with pytest.raises(ValueError, match="no.such.column"):
        store.append(bad, fails, [Position("a", 9, 9, "/y.log", 5)])
    assert store.positions("a") == {}
    assert len(store.failures()) == 1
    assert q.count(store, q.Query()) == 0


def test_files_of_a_crashed_append_are_removed_and_small_files_compacted(tmp_path: Path):
    store = Store(tmp_path)
    for _ in range(40):
        store.append(_batch(3), now=DAY1)
        store.wait_compacted()  # merges run in the background
    # the 32nd small file triggers a merge of them all; 8 more came after
    assert q.count(store, q.Query()) == 120
    assert store.partitions()[0]["files"] == 1 + 8
    for _ in range(24):
        store.append(_batch(3), now=DAY1)
        store.wait_compacted()
    # 32 more small files make a second merged file; the first is of a larger tier and is
    # not rewritten again (a row is merged about log32(rows) times, not once per merge)
    sizes = sorted(r for r, in store.cursor().execute("SELECT rows FROM event_files").fetchall())
    assert sizes == [96, 96]
    assert q.count(store, q.Query("destination.port:443 and sflow.bytes:2")) == 64
    store.close()
    orphan = tmp_path / "events" / "default" / "2026-01-10" / "orphan.parquet"
    orphan.write_bytes(b"never committed")
    store = Store(tmp_path)
    assert not orphan.exists()
    assert q.count(store, q.Query()) == 192


def test_second_writer_is_refused_with_a_clear_error(tmp_path: Path):
    store = Store(tmp_path)
    code = ("import sys; from netmeta.store.duckdb import Store, StoreLocked\n"
            f"try:\n    Store({str(tmp_path)!r})\nexcept StoreLocked:\n    sys.exit(3)\n")
    import subprocess
    import sys
    assert subprocess.run([sys.executable, "-c", code]).returncode == 3
    store.close()


def test_index_set_created_once_and_left_alone(tmp_path: Path):
    Store(tmp_path, [IndexSet("packetbeat", "Packetbeat Logs", 90)]).close()
    store = Store(tmp_path, [IndexSet("packetbeat", "Renamed", 7)])
    sets = {s["name"]: s for s in store.index_sets()}
    assert sets["packetbeat"] == {"name": "packetbeat", "title": "Packetbeat Logs",
                                  "retention_days": 90}
    assert "default" in sets


def test_a_commit_does_not_wait_for_a_merge(tmp_path: Path, monkeypatch: Any) -> None:
    import threading

    from netmeta.store import duckdb as store_module

    release, started = threading.Event(), threading.Event()
    real = store_module.merge_files

    def held_merge(*args: Any, **kwargs: Any) -> Any:
        started.set()
        assert release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(store_module, "merge_files", held_merge)
    store = Store(tmp_path)
    for _ in range(32):
        store.append(_batch(3), now=DAY1)
    assert started.wait(30)  # the 32nd small file started a merge, which is held
    store.append(_batch(3), now=DAY1)  # committed while the merge waits
    assert store.partitions()[0]["files"] == 33
    release.set()
    assert store.wait_compacted()
    assert store.partitions()[0]["files"] == 2
    assert q.count(store, q.Query()) == 99
    store.close()
