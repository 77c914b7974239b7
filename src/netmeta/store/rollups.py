"""Rollups: events pre-aggregated per minute or per hour on the few fields dashboards group
and filter flows by (as Akvorado's consolidated ClickHouse tables), so that a dashboard
panel over a day of 10 M flows reads thousands of rows, not millions.

A *cube* is a DuckDB table ``rollup_<name>`` in the catalog: one row per (index set,
ingestion day, time bucket, value of every dimension), with ``_n`` (events) and the sums of
the flow counters. Dimensions are stored as the events store them (lists stay lists, IP
fields keep their ``#b`` key column), so any KQL predicate, terms key or distinct count on
them gives on a cube row what it gives on each event the row stands for.

Written behind ingest, not with it: a thread of the store (``Store.roll_up``) takes the
committed event files no cube holds yet, a few seconds' worth at a time, aggregates them
with one DuckDB query per cube and, in one transaction, inserts the cube rows and lists
the files in ``rollup_files``. Ingest pays nothing per batch (aggregating each small batch
where it is written cost NetFlow a third of its throughput), and a cube row stands for
the events of many batches. So:

- a file is in the cubes exactly when ``rollup_files`` lists it; a crash or a restart
  leaves the two as the last transaction committed them;
- only rolled-up files are merged, and the merged file is listed in their place (the same
  events, the cube rows unchanged);
- retention deletes a day's cube rows and listings in the transaction that drops its files.

Read (``query.rollup_plan``) only where the answer is exact: every field of the panel and of
its KQL is a dimension of the cube, the metric is a count, a sum of a rolled-up counter or
a distinct count of a dimension, and a histogram's interval is a multiple of the cube's
grain. Whole buckets in the range come from the cube, plus the events of files not rolled
up yet; the partial buckets at the range's two ends from all the events; in one query, in
one transaction with the listing of files.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from netmeta.event import FIELDS, META_INPUT
from netmeta.store.schema import column_types, quote

COUNT = "_n"  # events a cube row stands for
SUMS = ("network.bytes", "network.packets")  # flow counters summed in every cube
LOW = ("event.action", "event.dataset", "event.kind", META_INPUT, "network.transport",
       "network.protocol", "network.type")


@dataclass(frozen=True, slots=True)
class Cube:
    name: str
    grain: int  # seconds; buckets start at whole minutes/hours (UTC)
    dims: tuple[str, ...]

    @property
    def table(self) -> str:
        return f"rollup_{self.name}"

    def columns(self) -> list[str]:
        """Stored dimension columns: each dim, and the key column of an IP dim."""
        out = []
        for d in self.dims:
            out.append(d)
            f = FIELDS.get(d)
            if f is not None and f.key_column:
                out.append(f.key_column)
        return out


# Smallest first: a query uses the first cube that has all of its fields.
CUBES = (
    Cube("minute", 60, (*LOW, "observer.ip")),
    Cube("ports", 3600, (*LOW, "destination.port", "destination.as.organization.name",
                         "destination.geo.country_iso_code", "source.geo.country_iso_code")),
    Cube("sources", 3600, ("event.action", "event.dataset", META_INPUT, "source.ip")),
    Cube("destinations", 3600, ("event.action", "event.dataset", META_INPUT,
                                "destination.ip")),
)

# the finest cube: every rolled-up event is in it (top lists learn from it which hours have
# events, and which hours a roll-up touched)
MINUTE = CUBES[0]

FILES_DDL = """CREATE TABLE IF NOT EXISTS rollup_files (
    path VARCHAR PRIMARY KEY, rolled TIMESTAMP NOT NULL)"""


def ddl() -> list[str]:
    types = column_types()
    out = [FILES_DDL, "DROP TABLE IF EXISTS rollup_rows"]  # a first design's coverage table
    for c in CUBES:
        cols = ", ".join(f"{quote(n)} {types[n]}" for n in c.columns())
        sums = ", ".join(f"{quote(s)} HUGEINT" for s in SUMS)
        out.append(f"CREATE TABLE IF NOT EXISTS {c.table} (index_set VARCHAR NOT NULL, "
                   f"day DATE NOT NULL, \"@timestamp\" TIMESTAMP NOT NULL, {cols}, "
                   f"{COUNT} BIGINT NOT NULL, {sums})")
    return out


def aggregate(con: duckdb.DuckDBPyConnection, relation: str) -> list[tuple[Cube, pa.Table]]:
    """Each cube's rows for the events of ``relation`` (SQL of a subquery with every
    stored column, as Store.events_relation gives it). The files are read once, for the
    columns the cubes need: opening a small file costs more than grouping its rows."""
    needed = dict.fromkeys(["@timestamp", *(n for c in CUBES for n in c.columns()), *SUMS])
    listed = ", ".join(quote(n) for n in needed)
    events = con.execute(f'SELECT {listed} FROM ({relation}) WHERE "@timestamp" IS NOT NULL'
                         ).to_arrow_table()
    out = []
    con.register("rollup_events", events)
    try:
        for c in CUBES:
            dims = ", ".join(quote(n) for n in c.columns())
            sums = ", ".join(f"CAST(sum({quote(s)}) AS HUGEINT) AS {quote(s)}" for s in SUMS)
            bucket = f'time_bucket(INTERVAL {c.grain} SECOND, "@timestamp")'
            sql = (f'SELECT {bucket} AS "@timestamp", {dims}, count(*) AS {COUNT}, {sums} '
                   "FROM rollup_events GROUP BY ALL")
            out.append((c, con.execute(sql).to_arrow_table()))
    finally:
        con.unregister("rollup_events")
    return out


def insert(con: duckdb.DuckDBPyConnection, index_set: str, day: dt.date,
           cubes: Sequence[tuple[Cube, pa.Table]]) -> None:
    """Within the transaction that lists the files these rows were computed from."""
    for cube, table in cubes:
        if not table.num_rows:
            continue
        con.register("rollup_part", table)
        try:
            con.execute(f"INSERT INTO {cube.table} BY NAME SELECT ? AS index_set, ? AS day, * "
                        "FROM rollup_part", [index_set, day])
        finally:
            con.unregister("rollup_part")


def drop(con: duckdb.DuckDBPyConnection, partitions: Sequence[tuple[str, dt.date]]) -> None:
    """Within the transaction dropping these partitions' files (retention)."""
    for c in CUBES:
        con.executemany(f"DELETE FROM {c.table} WHERE index_set = ? AND day = ?",
                        [list(p) for p in partitions])
