"""The embedded store: one DuckDB file under the data dir.

Index sets are series of daily partitions, one table per UTC day of *ingestion* (as
Graylog's daily rotation): retention drops whole tables, never deletes rows. Each
partition's min/max @timestamp is kept in ``partitions`` so that a time-bounded query reads
only the partitions that can hold matches; queries span days through UNION ALL.

Appends are columnar (Arrow tables scanned by DuckDB) and transactional: events, failures
and the file positions they came from commit together, which is what makes a tailed input
exactly-once across crashes.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from netmeta.event import FAILURE_COLUMNS, META_STREAMS, failures_table, storage_columns
from netmeta.route.streams import Router, Stream
from netmeta.store.schema import (
    BASE_COLUMNS,
    META_DDL,
    NAME,
    SCHEMA_TABLE,
    column_types,
    event_table_ddl,
    partition_table,
    quote,
)

DB_FILE = "netmeta.duckdb"


class StoreLocked(RuntimeError):
    """Another process (``netmeta serve``) has the store open."""


@dataclass(frozen=True, slots=True)
class IndexSet:
    name: str
    title: str = ""
    retention_days: int = 90


@dataclass(frozen=True, slots=True)
class Position:
    input: str
    device: int
    inode: int
    path: str | None
    offset: int


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Store:
    def __init__(self, data_dir: str | Path, index_sets: Iterable[IndexSet] = (),
                 streams: Sequence[Stream] = (), *, read_only: bool = False,
                 threads: int | None = None) -> None:
        self.path = Path(data_dir) / DB_FILE
        self.read_only = read_only
        if not read_only:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        elif not self.path.exists():
            raise FileNotFoundError(f"no store at {self.path} (nothing ingested yet?)")
        try:
            self.con = duckdb.connect(str(self.path), read_only=read_only)
        except duckdb.IOException as e:
            if "lock" in str(e).lower():
                raise StoreLocked(str(e)) from e
            raise
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        self._lock = threading.Lock()  # one writer transaction at a time
        self.router = Router(list(streams))
        self._routes = self.router.routes()
        self._columns: dict[str, set[str]] = {}  # partition -> its columns
        if not read_only:
            self._migrate(index_sets)

    # ------------------------------------------------------------ schema

    def _migrate(self, index_sets: Iterable[IndexSet]) -> None:
        for ddl in META_DDL:
            self.con.execute(ddl)
        now = _utcnow()
        wanted = list(index_sets)
        if not any(s.name == "default" for s in wanted):
            wanted.append(IndexSet("default", "Default index set", 90))
        for s in wanted:
            if not NAME.match(s.name):
                raise ValueError(f"index set name {s.name!r}: lowercase letters, digits and _")
            # created at first start when absent, left alone when present
            self.con.execute(
                "INSERT INTO index_sets VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [s.name, s.title or s.name, s.retention_days, now])
        existing = {c for c, in self.con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = 'failures'").fetchall()}
        for c, t in FAILURE_COLUMNS:
            if c not in existing:
                self.con.execute(f"ALTER TABLE failures ADD COLUMN {quote(c)} {t}")
        self.con.execute(event_table_ddl(SCHEMA_TABLE))
        self._add_columns(SCHEMA_TABLE, [c for c, _ in storage_columns()])
        for table in self._partition_tables():
            self._columns[table] = self._table_columns(table)

    def _table_columns(self, table: str) -> set[str]:
        return {c for c, in self.con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table]).fetchall()}

    def _add_columns(self, table: str, columns: Iterable[str],
                     con: duckdb.DuckDBPyConnection | None = None) -> set[str]:
        """Add the storage columns a table lacks (new ECS fields, or a partition's first
        event carrying a field); returns the table's columns."""
        con = con or self.con
        have = self._table_columns(table) if table not in self._columns else self._columns[table]
        types = column_types()
        for c in columns:
            if c not in have:
                con.execute(f"ALTER TABLE {quote(table)} ADD COLUMN {quote(c)} {types[c]}")
                have = have | {c}
        return have

    def _partition_tables(self) -> list[str]:
        return [t for t, in self.con.execute("SELECT table_name FROM partitions").fetchall()]

    def index_sets(self) -> list[dict[str, Any]]:
        rows = self.con.cursor().execute(
            "SELECT name, title, retention_days FROM index_sets ORDER BY name").fetchall()
        return [{"name": n, "title": t, "retention_days": r} for n, t, r in rows]

    # ------------------------------------------------------------ writing

    def positions(self, input_name: str) -> dict[tuple[int, int], int]:
        rows = self.con.cursor().execute(
            'SELECT device, inode, "offset" FROM file_positions WHERE input = ?',
            [input_name]).fetchall()
        return {(int(d), int(i)): int(o) for d, i, o in rows}

    def append(self, events: pa.Table | None, failures: pa.Table | None = None,
               positions: Sequence[Position] = (), now: dt.datetime | None = None,
               forget: Sequence[tuple[str, int, int]] = ()) -> dict[str, int]:
        """Store a batch in one transaction; returns rows stored per stream."""
        day = (now or _utcnow()).date().isoformat()
        counts: dict[str, int] = {}
        with self._lock:
            con = self.con
            con.execute("BEGIN")
            try:
                if events is not None and events.num_rows:
                    counts = self._append_events(con, events, day)
                if failures is not None and failures.num_rows:
                    con.register("failure_batch", failures)
                    con.execute("INSERT INTO failures BY NAME SELECT * FROM failure_batch")
                    con.unregister("failure_batch")
                if positions:
                    con.executemany(
                        'INSERT OR REPLACE INTO file_positions VALUES (?, ?, ?, ?, ?, ?)',
                        [[p.input, p.device, p.inode, p.path, p.offset, _utcnow()]
                         for p in positions])
                if forget:  # files closed for good: an inode reused later starts at 0
                    con.executemany(
                        "DELETE FROM file_positions WHERE input = ? AND device = ? AND inode = ?",
                        [list(k) for k in forget])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return counts

    def _append_events(self, con: duckdb.DuckDBPyConnection, events: pa.Table,
                       day: str) -> dict[str, int]:
        con.register("batch", events)
        try:
            sql, params = self.router.counts_sql()
            row = con.execute(f"SELECT {sql} FROM batch", params).fetchone() or ()
            counts = {c[0].name: int(n) for c, n in zip(self.router.conditions, row, strict=False)}
            types = column_types()
            unknown = [c for c in events.column_names if c not in types]
            if unknown:
                raise ValueError(f"batch has columns the store does not know: {unknown}")
            wanted = list(BASE_COLUMNS) + events.column_names
            for route in self._routes:
                table = partition_table(route.index_set, day)
                if table not in self._columns:
                    con.execute(event_table_ddl(table, wanted))
                    con.execute(
                        "INSERT INTO partitions (table_name, index_set, day) VALUES (?, ?, ?) "
                        "ON CONFLICT DO NOTHING", [table, route.index_set, day])
                    self._columns[table] = set(wanted)
                elif not self._columns[table].issuperset(wanted):
                    self._columns[table] = self._add_columns(table, wanted, con)
                n = con.execute(
                    f"INSERT INTO {quote(table)} BY NAME SELECT *, {route.streams} AS "
                    f"{quote(META_STREAMS)} FROM batch WHERE {route.where}",
                    route.streams_params + route.where_params).fetchone()[0]
                if n:
                    con.execute(
                        'UPDATE partitions SET rows = rows + ?, '
                        'min_ts = least(coalesce(min_ts, ?), ?), '
                        'max_ts = greatest(coalesce(max_ts, ?), ?) WHERE table_name = ?',
                        [n, *self._ts_range(con, route)] + [table])
                    if route.index_set == "default" and not self.router.conditions:
                        counts["default"] = counts.get("default", 0) + int(n)
            return counts
        finally:
            con.unregister("batch")

    @staticmethod
    def _ts_range(con: duckdb.DuckDBPyConnection, route: Any) -> list[Any]:
        lo, hi = con.execute(
            f'SELECT min("@timestamp"), max("@timestamp") FROM batch WHERE {route.where}',
            route.where_params).fetchone()
        return [lo, lo, hi, hi]

    # ------------------------------------------------------------ retention

    def apply_retention(self, today: dt.date | None = None) -> list[str]:
        """Drop whole day partitions older than their index set's retention."""
        today = today or _utcnow().date()
        with self._lock:
            old = self.con.execute(
                "SELECT p.table_name FROM partitions p JOIN index_sets s ON s.name = p.index_set "
                "WHERE p.day < ?::DATE - s.retention_days * INTERVAL 1 DAY", [today]).fetchall()
            for (table,) in old:
                self.con.execute("BEGIN")
                self.con.execute(f"DROP TABLE IF EXISTS {quote(table)}")
                self.con.execute("DELETE FROM partitions WHERE table_name = ?", [table])
                self.con.execute("COMMIT")
                self._columns.pop(table, None)
        return [t for t, in old]

    # ------------------------------------------------------------ reading

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()

    def tables_for(self, start: dt.datetime | None, end: dt.datetime | None,
                   index_sets: Sequence[str] = ()) -> list[str]:
        sql = "SELECT table_name FROM partitions WHERE rows > 0"
        params: list[Any] = []
        if start is not None:
            sql += " AND max_ts >= ?"
            params.append(start)
        if end is not None:
            sql += " AND min_ts <= ?"
            params.append(end)
        if index_sets:
            sql += f" AND index_set IN ({', '.join('?' * len(index_sets))})"
            params += list(index_sets)
        return [t for t, in self.con.cursor().execute(sql + " ORDER BY day", params).fetchall()]

    def events_relation(self, start: dt.datetime | None, end: dt.datetime | None,
                        index_sets: Sequence[str] = ()) -> str | None:
        """SQL of a subquery over every partition that can hold events in [start, end]."""
        tables = self.tables_for(start, end, index_sets)
        if not tables:
            return None
        return " UNION ALL BY NAME ".join(f"SELECT * FROM {quote(t)}"
                                          for t in [SCHEMA_TABLE, *tables])

    def failures(self, limit: int = 100) -> pa.Table:
        return self.con.cursor().execute(
            'SELECT * FROM failures ORDER BY "@timestamp" DESC LIMIT ?', [limit]).to_arrow_table()

    def close(self) -> None:
        self.con.close()


def failures_batch(failures: list[Any]) -> pa.Table | None:
    return failures_table(failures) if failures else None
