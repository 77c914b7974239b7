"""Top lists: per hour, the heaviest keys of a composite terms panel whose keys are too many
for a cube (the Conversations panel: source, destination and port take ~2 M values a day
in 10 M flows, as many as a cube would have rows), with a bound on every key left out.

For each (index set, ingestion day, hour, value of the dims) — a *segment* — the ``SIZE``
keys with the most bytes are kept with their exact bytes, and the segment's threshold
``_t``: the most bytes any key left out has there (0 when none was left out). Whatever key
one asks about, its bytes in a segment are then exact when listed, and between 0 and
``_t`` when not. query/top_plan.py turns that into an exact top N: candidates from the
lists (and the raw events the lists do not cover), their bytes counted exactly from the
events, and proof that no other key can reach the N-th.

Written by the store's roll-up thread for hours ended ``SETTLE`` seconds ago, from the files
rolled up (``rollup_files``) for that hour, and deleted in the transaction that rolls up a
file holding events of a listed hour (late events): the hour is then read raw until its
list is made again. Retention and ``pipeline.rollups: false`` drop them with the cubes.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from netmeta.event import META_INPUT
from netmeta.store import rollups
from netmeta.store.schema import column_types, quote

HOUR = 3600
SETTLE = 60.0  # seconds after an hour ends before its list is made (late flows)
THRESHOLD = "_t"


@dataclass(frozen=True, slots=True)
class TopList:
    name: str
    keys: tuple[str, ...]  # the composite terms key, in the panel's order
    by: str  # the counter summed and ranked by
    dims: tuple[str, ...]  # low-cardinality fields a query may filter on
    size: int  # keys kept per segment

    @property
    def table(self) -> str:
        return f"rollup_top_{self.name}"

    @property
    def segments(self) -> str:
        return f"rollup_top_{self.name}_hours"


TOP_LISTS = (
    TopList("conversations", ("source.ip", "destination.ip", "destination.port"),
            "network.bytes", ("event.action", "event.dataset", META_INPUT), 2000),
)


def tables() -> list[str]:
    return [t for top in TOP_LISTS for t in (top.table, top.segments)]


def ddl() -> list[str]:
    types = column_types()
    out = []
    for top in TOP_LISTS:
        dims = ", ".join(f"{quote(d)} {types[d]}" for d in top.dims)
        keys = ", ".join(f"{quote(k)} {types[k]}" for k in top.keys)
        head = 'index_set VARCHAR NOT NULL, day DATE NOT NULL, "@timestamp" TIMESTAMP NOT NULL'
        out.append(f"CREATE TABLE IF NOT EXISTS {top.table} ({head}, {dims}, {keys}, "
                   f"{quote(top.by)} HUGEINT, {THRESHOLD} HUGEINT NOT NULL)")
        # _neg: some key's bytes in the segment are negative; the bounds need none
        out.append(f"CREATE TABLE IF NOT EXISTS {top.segments} ({head}, {dims}, "
                   f"{THRESHOLD} HUGEINT NOT NULL, _neg BOOLEAN NOT NULL)")
    return out


def due(con: duckdb.DuckDBPyConnection, now: dt.datetime
        ) -> list[tuple[str, dt.date, dt.datetime]]:
    """(index set, day, hour) of rolled-up events whose hour ended SETTLE seconds before
    ``now`` and has no list yet, oldest first (from the minute cube: every rolled-up event
    is in it)."""
    until = now - dt.timedelta(seconds=HOUR + SETTLE)
    top = TOP_LISTS[0]  # every list is made at once: the first's segments say which exist
    return [tuple(r) for r in con.execute(  # type: ignore[misc]
        f'SELECT DISTINCT index_set, day, time_bucket(INTERVAL {HOUR} SECOND, "@timestamp") '
        f'AS h FROM {rollups.MINUTE.table} WHERE "@timestamp" < ? EXCEPT SELECT index_set, day, '
        f'"@timestamp" FROM {top.segments} ORDER BY h, index_set, day', [until]).fetchall()]


def compute(con: duckdb.DuckDBPyConnection, relation: str, hour: dt.datetime
            ) -> list[tuple[TopList, pa.Table, pa.Table]]:
    """Each list's rows and segments for the events of ``relation`` in ``hour``."""
    out = []
    for top in TOP_LISTS:
        dims = ", ".join(quote(d) for d in top.dims)
        keys = ", ".join(quote(k) for k in top.keys)
        by = quote(top.by)
        ranked = con.execute(
            f"WITH g AS (SELECT {dims}, {keys}, CAST(sum({by}) AS HUGEINT) AS {by} "
            f'FROM ({relation}) WHERE "@timestamp" >= ? AND "@timestamp" < ? GROUP BY ALL) '
            f"SELECT *, row_number() OVER (PARTITION BY {dims} ORDER BY {by} DESC NULLS "
            f"LAST) AS _rank, min({by}) OVER (PARTITION BY {dims}) < 0 AS _neg FROM g",
            [hour, hour + dt.timedelta(seconds=HOUR)]).to_arrow_table()
        con.register("top_ranked", ranked)
        try:
            # a left-out key's bytes: at most the first left out's (NULL bytes count as 0)
            segments = con.execute(
                f"SELECT {dims}, COALESCE(max(CASE WHEN _rank > ? THEN COALESCE({by}, 0) "
                f"END), 0) AS {THRESHOLD}, COALESCE(bool_or(_neg), false) AS _neg FROM top_ranked "
                "GROUP BY ALL", [top.size]).to_arrow_table()
            rows = _listed(con, top, segments)
        finally:
            con.unregister("top_ranked")
        out.append((top, rows, segments))
    return out


def _listed(con: duckdb.DuckDBPyConnection, top: TopList, segments: pa.Table) -> pa.Table:
    """The kept keys of ``top_ranked``, each with its segment's threshold."""
    dims = " AND ".join(f"r.{quote(d)} IS NOT DISTINCT FROM s.{quote(d)}" for d in top.dims)
    con.register("top_segments", segments)
    try:
        return con.execute(
            f"SELECT r.* EXCLUDE (_rank, _neg), s.{THRESHOLD} FROM top_ranked r JOIN "
            f"top_segments s ON {dims} WHERE r._rank <= ?", [top.size]).to_arrow_table()
    finally:
        con.unregister("top_segments")


def insert(con: duckdb.DuckDBPyConnection, index_set: str, day: dt.date, hour: dt.datetime,
           computed: list[tuple[TopList, pa.Table, pa.Table]]) -> None:
    """Within one transaction (the roll-up thread's)."""
    for top, rows, segments in computed:
        for table, data in ((top.table, rows), (top.segments, segments)):
            con.register("top_part", data)
            try:
                con.execute(f'INSERT INTO {table} BY NAME SELECT ? AS index_set, ? AS day, '
                            '? AS "@timestamp", * FROM top_part', [index_set, day, hour])
            finally:
                con.unregister("top_part")


def invalidate(con: duckdb.DuckDBPyConnection, index_set: str, day: dt.date,
               hours: list[dt.datetime]) -> None:
    """Within the transaction rolling up files with events in ``hours``: their lists no
    longer count every event of the hour."""
    if not hours:
        return
    for table in tables():
        con.execute(f'DELETE FROM {table} WHERE index_set = ? AND day = ? AND '
                    '"@timestamp" IN (SELECT unnest(?))', [index_set, day, hours])


def drop(con: duckdb.DuckDBPyConnection, partitions: list[tuple[str, dt.date]]) -> None:
    for table in tables():
        con.executemany(f"DELETE FROM {table} WHERE index_set = ? AND day = ?",
                        [list(p) for p in partitions])
