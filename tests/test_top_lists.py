"""Hourly top lists (store/top_lists.py, query/top_plan.py) give exactly the top N keys and
sums that grouping every event gives, on a real DuckDB store: with KQL filters on the
lists' dims, partial hours at the range's ends, files not rolled up yet, late events in a
listed hour; and they decline (the events answer) where they cannot prove it."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from netmeta.event import add_ip_keys
from netmeta.query import aggregate as agg
from netmeta.query import top_plan
from netmeta.query.search import Query
from netmeta.route.streams import Stream
from netmeta.store import top_lists
from netmeta.store.duckdb import IndexSet, Store

T0 = dt.datetime(2024, 7, 31, 10, 0, 0)
DAY = dt.datetime(2024, 7, 31, 18)
# short lists, so that most keys of a segment are left out and the bounds decide
CONV = dataclasses.replace(top_lists.TOP_LISTS[0], size=50)
SPEC = {"type": "terms", "field": list(CONV.keys), "size": 15,
        "metric": {"type": "sum", "field": CONV.by}}


@pytest.fixture(scope="module", autouse=True)
def _short_lists() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as m:
        m.setattr(top_lists, "TOP_LISTS", (CONV,))
        yield


def _flows(rng: np.random.Generator, n: int, start: dt.datetime, hours: float, offset: int,
           nbytes: np.ndarray | None = None, source: str | None = None) -> pa.Table:
    us = rng.integers(0, int(hours * 3600e6), n)
    src = rng.zipf(1.4, n) % 3000
    if nbytes is None:
        nbytes = rng.lognormal(7, 2.2, n).astype(np.int64)
    byte_col = pa.array(nbytes, mask=rng.random(n) < 0.01)  # a few flows without bytes
    ports = np.array([53, 80, 443, 22, 8080])
    return add_ip_keys(pa.table({
        "@timestamp": pa.array(np.datetime64(start, "us") + us.astype("timedelta64[us]")),
        "_id": [f"t{offset + i}" for i in range(n)],
        "_input": pa.array(np.where(rng.random(n) < 0.7, "nf", "sf")),
        "event.action": pa.array(np.where(rng.random(n) < 0.8, "netflow_flow", "SFLOW_5")),
        "source.ip": pa.array([source or f"10.1.{s // 250}.{s % 250}" for s in src]),
        # few destinations: popular sources repeat conversations, many flows each
        "destination.ip": pa.array([f"81.2.0.{d}" for d in rng.integers(1, 40, n)]),
        "destination.port": pa.array(ports[rng.integers(0, len(ports), n)]),
        "network.transport": pa.array(np.full(n, "tcp")),
        "network.bytes": byte_col,
        "network.packets": pa.array(rng.integers(1, 50, n)),
    }))


def _fill(s: Store, seed: int, batches: int) -> np.random.Generator:
    """Half-hour batches of 6000 flows from T0 on, rolled up (and listed); the generator
    goes on for what a test adds."""
    rng = np.random.default_rng(seed)
    for i in range(batches):
        s.append(_flows(rng, 6000, T0 + dt.timedelta(minutes=30 * i), 0.5, i * 6000), now=DAY)
    s.roll_up()
    return rng


def _store(root: Path) -> Store:
    return Store(root, [IndexSet("flows", "", 30)],
                 [Stream("nf", "flows", ("nf",)), Stream("sf", "default", ("sf",))])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = _store(tmp_path_factory.mktemp("top") / "data")
    _fill(s, 11, 10)  # five hours
    yield s
    s.close()


def _raw(store: Store, q: Query, spec: dict[str, Any], monkeypatch: pytest.MonkeyPatch
         ) -> Any:
    with monkeypatch.context() as m:
        m.setattr(top_plan, "list_for", lambda *a: None)
        return agg.aggregate(store, q, spec)


def _expected(store: Store, q: Query, size: int, monkeypatch: pytest.MonkeyPatch
              ) -> list[tuple[list[str], int]]:
    got = _raw(store, q, {**SPEC, "size": size}, monkeypatch)
    return [(b["key"], b["value"]) for b in got["buckets"]]


def test_every_hour_has_segments_with_thresholds(store: Store) -> None:
    rows = store.con.execute(
        f'SELECT "@timestamp", count(*), max(_t) FROM {CONV.segments} GROUP BY 1 ORDER BY 1'
    ).fetchall()
    assert [r[0] for r in rows] == [T0 + dt.timedelta(hours=h) for h in range(5)]
    assert all(n == 4 for _, n, _ in rows)  # 2 actions x 2 inputs (each its index set)
    assert all(t > 0 for _, _, t in rows)  # more keys than kept: the bounds matter
    per_segment = store.con.execute(
        f'SELECT max(c) FROM (SELECT index_set, "@timestamp", "event.action", _input, '
        f'count(*) c FROM {CONV.table} GROUP BY ALL)').fetchone()
    assert per_segment is not None and per_segment[0] == CONV.size


RANGES = [
    (T0, T0 + dt.timedelta(hours=5)),  # whole hours only
    (T0 + dt.timedelta(minutes=7, seconds=3), T0 + dt.timedelta(hours=4, minutes=41)),
    (T0 + dt.timedelta(hours=1), T0 + dt.timedelta(hours=2) - dt.timedelta(microseconds=1)),
    (T0 - dt.timedelta(days=1), T0 + dt.timedelta(days=1)),
]
FILTERS = ["", "event.action:netflow_flow", "_input:sf",
           "event.action:(netflow_flow or SFLOW_5) and not _input:nf"]


@pytest.mark.parametrize("kql", FILTERS)
@pytest.mark.parametrize("span", RANGES, ids=["whole", "partial", "one-hour", "wide"])
def test_top_lists_equal_grouping_every_event(store: Store, kql: str,
                                              span: tuple[dt.datetime, dt.datetime],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    q = Query(kql, *span)
    for size in (1, 5, 15, 60):
        want = _expected(store, q, size, monkeypatch)
        got = top_plan.top(store, q, CONV, size)  # None: not proven, the events answer
        if got is not None:
            assert [(k, int(v)) for k, v in got] == want, size
        answer = agg.aggregate(store, q, {**SPEC, "size": size})
        assert [(b["key"], b["value"]) for b in answer["buckets"]] == want


def test_the_lists_prove_a_dashboard_panel(store: Store) -> None:
    """The top 15 of the whole range, with and without a filter: proven, not declined."""
    for kql in ("", "event.action:(netflow_flow or SFLOW_5)"):
        for size in (1, 5, 15):
            assert top_plan.top(store, Query(kql, T0, T0 + dt.timedelta(hours=5)), CONV,
                                size) is not None, (kql, size)


def test_declines_what_it_cannot_answer(store: Store) -> None:
    q = Query("", T0, T0 + dt.timedelta(hours=5))
    assert top_plan.list_for(SPEC, "network.transport:tcp") is None  # not a dim
    assert top_plan.list_for({**SPEC, "order": "asc"}, "") is None
    assert top_plan.list_for({**SPEC, "field": ["source.ip", "destination.ip"]}, "") is None
    assert top_plan.list_for({**SPEC, "metric": {"type": "count"}}, "") is None
    assert top_plan.list_for(SPEC, "") is CONV
    # within one hour: no whole hour, nothing listed to use
    assert top_plan.top(store, Query("", T0 + dt.timedelta(minutes=5),
                                     T0 + dt.timedelta(minutes=50)), CONV, 15) is None
    assert top_plan.top(store, Query("", None, None), CONV, 15) is None
    assert top_plan.top(store, q, CONV, 15) is not None


def test_even_keys_cannot_be_proven_and_the_events_answer(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    s = _store(tmp_path / "data")
    try:
        rng = np.random.default_rng(3)
        for i in range(4):  # every flow the same bytes: the threshold equals the top
            s.append(_flows(rng, 6000, T0 + dt.timedelta(minutes=30 * i), 0.5, i * 6000,
                            nbytes=np.full(6000, 100)), now=DAY)
        s.roll_up()
        q = Query("", T0, T0 + dt.timedelta(hours=2))
        assert s.con.execute(f"SELECT count(*) FROM {CONV.segments}").fetchone() == (8,)
        assert top_plan.top(s, q, CONV, 15) is None
        got = agg.aggregate(s, q, SPEC)
        assert got == _raw(s, q, SPEC, monkeypatch) and len(got["buckets"]) == 15
    finally:
        s.close()


def test_negative_counters_make_the_bounds_unusable(tmp_path: Path) -> None:
    s = _store(tmp_path / "data")
    try:
        rng = np.random.default_rng(4)
        nbytes = rng.lognormal(7, 2.2, 6000).astype(np.int64)
        nbytes[::50] *= -1
        s.append(_flows(rng, 6000, T0, 1.0, 0, nbytes=nbytes), now=DAY)
        s.roll_up()
        assert s.con.execute(f"SELECT bool_or(_neg) FROM {CONV.segments}").fetchone() == (True,)
        assert top_plan.top(s, Query("", T0, T0 + dt.timedelta(hours=1)), CONV, 15) is None
    finally:
        s.close()


def test_late_events_count_before_and_after_their_roll_up(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    s = _store(tmp_path / "data")
    try:
        rng = _fill(s, 5, 6)
        q = Query("", T0, T0 + dt.timedelta(hours=3))
        hour = T0 + dt.timedelta(hours=1)

        def segments() -> int:
            row = s.con.execute(f'SELECT count(*) FROM {CONV.segments} WHERE '
                                '"@timestamp" = ?', [hour]).fetchone()
            return int(row[0]) if row else 0

        assert segments() == 4
        # late: a heavy conversation in a listed hour, committed, not rolled up yet
        late = _flows(rng, 200, hour, 1.0, 900_000, nbytes=np.full(200, 10**9),
                      source="10.9.9.9")
        with monkeypatch.context() as m:  # the thread must not roll it up yet
            m.setattr(s, "_request_rollup", lambda: None)
            s.append(late, now=DAY)
            want = _expected(s, q, 15, monkeypatch)
            assert want[0][0][0] == "10.9.9.9"
            got = top_plan.top(s, q, CONV, 15)
            assert got is not None and [(k, int(v)) for k, v in got] == want
        s.roll_up()  # the hour's lists deleted with the roll-up, then made again
        assert segments() == 4
        listed = s.con.execute(f"SELECT count(*) FROM {CONV.table} WHERE \"source.ip\" = "
                               "'10.9.9.9'").fetchone()
        assert listed is not None and listed[0] > 0
        got = top_plan.top(s, q, CONV, 15)
        assert got is not None and [(k, int(v)) for k, v in got] == want
    finally:
        s.close()


def test_retention_and_rollups_off_drop_the_lists(tmp_path: Path) -> None:
    root = tmp_path / "data"
    s = _store(root)
    rng = np.random.default_rng(6)
    s.append(_flows(rng, 3000, T0, 1.0, 0), now=DAY)
    s.roll_up()
    assert s.con.execute(f"SELECT count(*) FROM {CONV.segments}").fetchone() != (0,)
    s.close()
    s = Store(root, [IndexSet("flows", "", 30)], [Stream("nf", "flows", ("nf",))],
              rollups=False)
    assert s.con.execute(f"SELECT count(*) FROM {CONV.segments}").fetchone() == (0,)
    assert s.con.execute(f"SELECT count(*) FROM {CONV.table}").fetchone() == (0,)
    s.close()
    s = _store(root)
    try:
        s.roll_up()  # back on: rebuilt from the files
        assert s.con.execute(f"SELECT count(*) FROM {CONV.segments}").fetchone() != (0,)
        s.apply_retention(today=DAY.date() + dt.timedelta(days=400))
        assert s.con.execute(f"SELECT count(*) FROM {CONV.segments}").fetchone() == (0,)
        assert s.con.execute(f"SELECT count(*) FROM {CONV.table}").fetchone() == (0,)
    finally:
        s.close()


def test_a_segment_without_bytes_is_listed_and_declines(tmp_path: Path) -> None:
    """Flows with no byte counts at all (some exporters): the hour still gets its segments
    (threshold 0), and a top by bytes is not proven from them (the 15th sum is not > 0)."""
    s = _store(tmp_path / "data")
    try:
        t = _flows(np.random.default_rng(8), 3000, T0, 1.0, 0)
        t = t.set_column(t.schema.get_field_index(CONV.by), CONV.by,
                         pa.nulls(t.num_rows, pa.int64()))
        s.append(t, now=DAY)
        s.roll_up()
        assert s.con.execute(f"SELECT count(*), max(_t), bool_or(_neg) FROM {CONV.segments}"
                             ).fetchone() == (4, 0, False)
        assert top_plan.top(s, Query("", T0, T0 + dt.timedelta(hours=1)), CONV, 15) is None
    finally:
        s.close()


def test_an_hour_listed_in_one_partition_only_is_read_raw(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """Late events ingested the next day (another partition), rolled up but not listed yet:
    their hour is read from the events, not half from a list."""
    s = _store(tmp_path / "data")
    try:
        rng = _fill(s, 9, 4)
        hour = T0 + dt.timedelta(hours=1)
        late = _flows(rng, 100, hour, 1.0, 800_000, nbytes=np.full(100, 10**9),
                      source="10.8.8.8")
        q = Query("", T0, T0 + dt.timedelta(hours=2))
        with monkeypatch.context() as m:
            m.setattr(s, "_request_rollup", lambda: None)
            m.setattr(s, "_make_top_lists", lambda *a: 0)  # rolled up, no list yet
            s.append(late, now=DAY + dt.timedelta(days=1))
            s.roll_up()
            assert not s.files_for(None, None, unrolled=True)  # every file rolled up
            want = _expected(s, q, 15, monkeypatch)
            assert want[0][0][0] == "10.8.8.8"
            got = top_plan.top(s, q, CONV, 15)
            assert got is None or [(k, int(v)) for k, v in got] == want
        s.roll_up()  # now its list too: both partitions listed
        got = top_plan.top(s, q, CONV, 15)
        assert got is not None and [(k, int(v)) for k, v in got] == want
    finally:
        s.close()


def test_a_read_only_store_from_before_top_lists_reads_the_events(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    s = _store(root)
    s.append(_flows(np.random.default_rng(10), 3000, T0, 1.0, 0), now=DAY)
    s.roll_up()
    for table in top_lists.tables():  # as a store written by an earlier netmeta
        s.con.execute(f"DROP TABLE {table}")
    s.close()
    ro = Store(root, read_only=True)
    try:
        q = Query("", T0, T0 + dt.timedelta(hours=1))
        assert top_plan.top(ro, q, CONV, 15) is None
        got = agg.aggregate(ro, q, SPEC)
        assert got == _raw(ro, q, SPEC, monkeypatch) and len(got["buckets"]) == 15
    finally:
        ro.close()
