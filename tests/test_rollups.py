"""Rollup cubes answer exactly what the raw events answer: many panels, KQL filters and
time ranges on a real DuckDB store (part of it rolled up, part not yet), each aggregated
once through the cubes and once over the events alone; filters or fields outside a cube
fall back to the events; the cubes stay right through merges of small files, retention, a
restart, and files committed since the last roll-up."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

from netmeta.event import add_ip_keys
from netmeta.query import aggregate as agg
from netmeta.query import rollup_plan
from netmeta.query.search import Query
from netmeta.route.streams import Stream
from netmeta.store import duckdb as store_module
from netmeta.store.duckdb import IndexSet, Store

T0 = dt.datetime(2024, 7, 31, 10, 0, 0)
DAY1, DAY2 = dt.datetime(2024, 7, 31, 11), dt.datetime(2024, 8, 1, 1)


def _batch(rng: np.random.Generator, n: int, start: dt.datetime, hours: float,
           inputs: tuple[str, ...], offset: int) -> pa.Table:
    def pick(values: list[Any]) -> pa.Array:
        return pa.array([values[i] for i in rng.integers(0, len(values), n)])

    us = rng.integers(0, int(hours * 3600e6), n)
    sources = [f"10.0.0.{i}" for i in range(30)] + ["2001:db8::1", "2001:db8::2", None]
    observers = [["192.0.2.1"], ["192.0.2.2"], ["192.0.2.1", "192.0.2.3"], None]
    return add_ip_keys(pa.table({
        "@timestamp": pa.array(np.datetime64(start, "us") + us.astype("timedelta64[us]")),
        "_id": [f"r{offset + i}" for i in range(n)],
        "_input": pick(list(inputs)),
        "event.action": pick(["netflow_flow", "SFLOW_5", None]),
        "source.ip": pick(sources),
        "source.port": pa.array(rng.integers(1024, 1100, n)),
        "destination.ip": pick([f"81.2.69.{i}" for i in range(12)]),
        "destination.port": pick([53, 80, 443, 8080, None]),
        "network.transport": pick(["tcp", "udp"]),
        "network.protocol": pick(["dns", "http", None]),
        "network.bytes": pick([40, 1500, 9000, 123456789, None]),
        "network.packets": pa.array(rng.integers(1, 50, n)),
        "destination.as.organization.name": pick(["AS one", "AS two", None]),
        "observer.ip": pa.array([observers[i] for i in rng.integers(0, 4, n)],
                                pa.list_(pa.string())),
    }))


def _fill(store: Store) -> None:
    rng = np.random.default_rng(7)
    offset = 0
    for i in range(12):  # small batches: some merged later; two ingestion days
        start = T0 + dt.timedelta(minutes=25 * i)
        inputs = ("nf",) if i % 3 == 0 else ("nf", "sf")  # constant columns, and not
        store.append(_batch(rng, 400, start, 0.6, inputs, offset), now=DAY1 if i < 8 else DAY2)
        offset += 400
        if i == 6:
            store.roll_up()  # the first seven in the cubes; the rest as the thread finds them


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Store(tmp_path_factory.mktemp("rollups") / "data", [IndexSet("flows", "", 30)],
              [Stream("nf", "flows", ("nf",)), Stream("sf", "default", ("sf",))])
    _fill(s)
    yield s
    s.close()


def _raw(store: Store, q: Query, spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch
         ) -> Any:
    with monkeypatch.context() as m:
        m.setattr(rollup_plan, "relation", lambda *a: None)
        return agg.aggregate(store, q, spec)


def _used(store: Store, q: Query, spec: dict[str, Any]) -> bool:
    """Whether the spec reads a cube (asked through the planner aggregate uses)."""
    seen: list[str | None] = []
    real = rollup_plan.relation

    def spy(*a: Any) -> str | None:
        seen.append(real(*a))
        return seen[-1]

    rollup_plan.relation = spy  # type: ignore[assignment]
    try:
        agg.aggregate(store, q, spec)
    finally:
        rollup_plan.relation = real  # type: ignore[assignment]
    return bool(seen) and seen[-1] is not None


SPECS = [
    {"type": "metric", "metric": {"type": "count"}},
    {"type": "metric", "metric": {"type": "sum", "field": "network.bytes"}},
    {"type": "metric", "metric": {"type": "cardinality", "field": "source.ip"}},
    {"type": "terms", "field": "network.transport", "size": 5},
    {"type": "terms", "field": "observer.ip", "size": 5,
     "metric": {"type": "sum", "field": "network.bytes"}},
    {"type": "terms", "field": "source.ip", "size": 10,
     "metric": {"type": "sum", "field": "network.bytes"}},
    {"type": "terms", "field": "destination.ip", "size": 4, "order": "asc",
     "metric": {"type": "sum", "field": "network.packets"}},
    {"type": "terms", "field": "destination.port", "size": 10},
    {"type": "terms", "field": "destination.as.organization.name", "size": 3,
     "sub": {"type": "terms", "field": "network.protocol", "size": 2}},
    {"type": "terms", "field": ["network.transport", "observer.ip"], "size": 6},
    {"type": "terms", "field": "_input", "size": 3,
     "metric": {"type": "cardinality", "field": "event.action"}},
    {"type": "date_histogram", "interval": "auto",
     "sub": {"type": "terms", "field": "observer.ip", "size": 2}},
    {"type": "date_histogram", "interval": "1h",
     "metric": {"type": "sum", "field": "network.bytes"}},
    {"type": "date_histogram", "interval": "5m",
     "metric": {"type": "sum", "field": "network.packets"}},
]
FILTERS = ["", "event.action:netflow_flow", "network.transport:udp and not destination.port:53",
           "source.ip:10.0.0.0/28 or source.ip:\"2001:db8::1\"", "observer.ip:192.0.2.3",
           "_input:sf", "destination.port >= 443", "not network.protocol:*",
           "event.action:(netflow_flow or SFLOW_5) and destination.as.organization.name:AS*"]
RANGES = [(None, None), (T0, T0 + dt.timedelta(hours=6)),
          (T0 + dt.timedelta(minutes=17, seconds=3, microseconds=5),
           T0 + dt.timedelta(hours=4, minutes=2, seconds=59)),
          (T0 + dt.timedelta(hours=1), T0 + dt.timedelta(hours=3) - dt.timedelta(
              microseconds=1)),
          (T0 + dt.timedelta(minutes=61), None)]


@pytest.mark.parametrize("kql", FILTERS)
def test_cube_answers_equal_the_raw_answers(store: Store, kql: str,
                                            monkeypatch: pytest.MonkeyPatch):
    used = 0
    for spec in SPECS:
        for start, end in RANGES:
            q = Query(kql, start, end)
            if end is None and spec.get("interval", "auto") != "auto":
                continue  # up to now: too many fixed buckets
            got, want = agg.aggregate(store, q, spec), _raw(store, q, spec, monkeypatch)
            if end is None:  # "to" is the time of each call
                got.pop("to", None), want.pop("to", None)
            assert got == want, (kql, spec, start, end)
            used += _used(store, q, spec)
    assert used >= 25  # of about 66: the cubes did answer many of them


@pytest.mark.parametrize(("kql", "spec"), [
    ("source.port:1030", {"type": "terms", "field": "network.transport"}),  # not a dim
    ("1500", {"type": "metric", "metric": {"type": "count"}}),  # free text
    ("destination.port:443", {"type": "terms", "field": "destination.ip"}),  # no cube has both
    ("", {"type": "terms", "field": ["source.ip", "destination.ip"]}),
    ("", {"type": "metric", "metric": {"type": "avg", "field": "network.bytes"}}),
    ("", {"type": "date_histogram", "interval": "30s"}),  # finer than the grain
])
def test_what_no_cube_holds_falls_back_to_the_events(store: Store, kql: str,
                                                     spec: dict[str, Any],
                                                     monkeypatch: pytest.MonkeyPatch):
    q = Query(kql, T0, T0 + dt.timedelta(hours=5))
    assert not _used(store, q, spec)
    got = agg.aggregate(store, q, spec)
    assert got == _raw(store, q, spec, monkeypatch)


def test_cubes_stay_exact_through_merges_retention_and_restart(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "data"
    streams = [Stream("nf", "flows", ("nf",))]
    store = Store(root, [IndexSet("flows", "", 30)], streams)
    _fill(store)
    assert store.roll_up() >= 0 and not store._pending_rollup(store.cursor())
    merged = store._compact_once(store.cursor(), "flows", DAY1.date(), at=2)  # small files
    assert merged
    spec = {"type": "terms", "field": "source.ip", "size": 8,
            "metric": {"type": "sum", "field": "network.bytes"}}
    q = Query("", T0 + dt.timedelta(minutes=3), T0 + dt.timedelta(hours=5, seconds=1))
    before = agg.aggregate(store, q, spec)
    assert _used(store, q, spec) and before == _raw(store, q, spec, monkeypatch)
    store.close()

    store = Store(root, [IndexSet("flows", "", 30)], streams)  # restart
    assert agg.aggregate(store, q, spec) == before and _used(store, q, spec)
    # retention drops the first ingestion day: its cube rows go with its files
    dropped = store.apply_retention(today=DAY2.date() + dt.timedelta(days=30))
    assert dropped and all(d.endswith(DAY1.date().isoformat()) for d in dropped)
    after = agg.aggregate(store, q, spec)
    assert _used(store, q, spec) and after == _raw(store, q, spec, monkeypatch)
    assert after != before
    # a file committed since the last roll-up: read from the events, beside the cube
    from netmeta.store.partitions import write_file

    extra = _batch(np.random.default_rng(3), 50, T0, 1, ("nf",), 10**6)
    f = write_file(root, "flows", DAY2.date(), extra.append_column(
        "_streams", pa.array([["nf"]] * 50, pa.list_(pa.string()))))
    with store._roll_lock:  # the roll-up thread must not take it before the check
        store.commit([f])
        assert [p for p, *_ in store._pending_rollup(store.cursor())] == [f.path]
        assert _used(store, q, spec)
        fresh = agg.aggregate(store, q, spec)
    assert fresh == _raw(store, q, spec, monkeypatch) and fresh != after
    assert store.roll_up() == 1
    assert agg.aggregate(store, q, spec) == fresh
    store.close()


def test_files_left_unrolled_are_rolled_up_at_the_next_start(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "data"
    streams = [Stream("nf", "flows", ("nf",))]
    monkeypatch.setattr(store_module, "ROLLUP_DELAY", 3600.0)  # the thread never gets to it
    store = Store(root, [IndexSet("flows", "", 30)], streams)
    store.append(_batch(np.random.default_rng(5), 300, T0, 1, ("nf",), 0), now=DAY1)
    store.close()
    con = duckdb.connect(str(root / "netmeta.duckdb"))
    assert con.execute("SELECT count(*) FROM rollup_files").fetchone() == (0,)
    con.close()
    store = Store(root, [IndexSet("flows", "", 30)], streams)
    store.wait_compacted()
    assert not store._pending_rollup(store.cursor())
    spec = {"type": "terms", "field": "destination.port", "size": 5}
    q = Query("", T0, T0 + dt.timedelta(hours=2))
    assert _used(store, q, spec) and agg.aggregate(store, q, spec) == _raw(
        store, q, spec, monkeypatch)
    store.close()


def test_rollups_off_reads_the_events_and_still_merges(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "data"
    streams = [Stream("nf", "flows", ("nf",))]
    store = Store(root, [IndexSet("flows", "", 30)], streams)
    _fill(store)
    store.roll_up()
    store.close()
    store = Store(root, [IndexSet("flows", "", 30)], streams, rollups=False)
    assert store.cursor().execute("SELECT count(*) FROM rollup_minute").fetchone() == (0,)
    assert store.roll_up() == 0 and store._roller is None
    spec = {"type": "terms", "field": "destination.port", "size": 5}
    q = Query("", T0, T0 + dt.timedelta(hours=5))
    assert not _used(store, q, spec)
    assert agg.aggregate(store, q, spec) == _raw(store, q, spec, monkeypatch)
    assert store._compact_once(store.cursor(), "flows", DAY1.date(), at=2)  # unlisted files
    store.close()
    store = Store(root, [IndexSet("flows", "", 30)], streams)  # on again: rebuilt
    store.wait_compacted()
    assert _used(store, q, spec)
    assert agg.aggregate(store, q, spec) == _raw(store, q, spec, monkeypatch)
    store.close()
