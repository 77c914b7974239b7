"""The embedded store: a DuckDB catalog and columnar event files under the data dir.

Index sets are series of daily partitions, one per UTC day of *ingestion* (as Graylog's
daily rotation). A partition is a set of Parquet files that DuckDB queries directly; the
DuckDB file (``netmeta.duckdb``) holds the catalog of those files with each one's min/max
@timestamp (so a time-bounded query reads only files that can match), the failure store,
the index sets and the positions of tailed files. Retention drops whole days.

Why files and not DuckDB tables: appending to a persistent DuckDB table costs about
11 µs per event of this width on the target machine, a Parquet file about 3 µs, written
without holding the GIL; DuckDB reads both equally well.

Exactly once: event files are written and fsynced first, then one DuckDB transaction
records them together with the failures and the file positions they came from. A crash in
between leaves files no catalog row names; they are deleted at the next start.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from netmeta.event import storage_columns
from netmeta.route.streams import Router, Stream
from netmeta.store import rollups, top_lists
from netmeta.store.partitions import EventFile, merge_files, write_routed
from netmeta.store.rollups import CUBES as ROLLUP_CUBES  # __init__'s rollups: a flag
from netmeta.store.schema import (
    EVENTS_DIR,
    FILE_NAME,
    META_DDL,
    NAME,
    SCHEMA_TABLE,
    quote,
    schema_table_ddl,
)

log = logging.getLogger("netmeta")

DB_FILE = "netmeta.duckdb"
COMPACT_AT = 32  # files of one size tier in a partition before they are merged
BUSY_FACTOR = 8  # while ingest is behind, tiers may grow to this many times COMPACT_AT
BATCH_MEMORY_DAYS = 7  # how long a pushed batch's digest is remembered
MERGE_BELOW = 1_000_000  # rows: files smaller than this are merged
ROLLUP_DELAY = 2.0  # seconds between roll-ups while events come in (store/rollups.py)
ROLLUP_ROWS = 2_000_000  # events aggregated into the cubes at once, at most


def _hours(cubes: list[tuple[rollups.Cube, pa.Table]]) -> list[dt.datetime]:
    """The hours the events of a roll-up fall in (from its minute cube's buckets)."""
    table = next(t for cube, t in cubes if cube is rollups.MINUTE)
    hours = pc.unique(pc.floor_temporal(table.column("@timestamp"), unit="hour"))
    return [h for h in hours.to_pylist() if h is not None]


def _tier(rows: int) -> int:
    """Size tier of a file: 0 below 32 rows, 1 below 1024, 2 below 32768 ... (powers of
    COMPACT_AT, so that merging COMPACT_AT files of a tier reaches the next one)."""
    return (max(rows, 1).bit_length() - 1) // (COMPACT_AT.bit_length() - 1)


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
                 threads: int | None = None, rollups: bool = True) -> None:
        self.root = Path(data_dir)
        self.path = self.root / DB_FILE
        self.read_only = read_only
        self.rollups = rollups  # keep the cubes of store/rollups.py (queries may use them)
        if not read_only:
            self.root.mkdir(parents=True, exist_ok=True)
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
        # merges run in a thread of their own: a commit (and the client waiting for it)
        # never waits for one
        self._compact_cv = threading.Condition()
        self._compact_due: dict[tuple[str, dt.date], int] = {}
        self._compacting = False
        self._closing = False
        self._compactor: threading.Thread | None = None
        self._merge_at: dict[tuple[str, dt.date], int] = {}  # last threshold asked per partition
        # roll-ups (store/rollups.py) run in a thread of their own too, a few seconds behind
        self._rollup_cv = threading.Condition()
        self._rollup_due = False
        self._roller: threading.Thread | None = None
        self._roll_lock = threading.Lock()  # one roll-up at a time (the thread, wait_compacted)
        self.router = Router(list(streams))
        self._routes = self.router.routes()
        # bumped by add_stream: the pipeline hands the new streams to its workers with the
        # next jobs (0: the streams the store was opened with, which the workers have)
        self.streams_version = 0
        if not read_only:
            self._migrate(index_sets)
            self._remove_orphans()
            if not rollups:  # the cubes would fall behind merges: rebuilt when back on
                for table in ["rollup_files", *(c.table for c in ROLLUP_CUBES),
                              *top_lists.tables()]:
                    self.con.execute(f"DELETE FROM {table}")
            elif self._pending_rollup(self.con):  # older files, or a crash
                self._request_rollup()

    # ------------------------------------------------------------ schema

    def _migrate(self, index_sets: Iterable[IndexSet]) -> None:
        for ddl in META_DDL + rollups.ddl() + top_lists.ddl():
            self.con.execute(ddl)
        self.con.execute(schema_table_ddl())
        have = {c for c, in self.con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ?",
            [SCHEMA_TABLE]).fetchall()}
        for c, t in storage_columns():  # fields added to ecs_fields.yml since
            if c not in have:
                self.con.execute(f"ALTER TABLE {SCHEMA_TABLE} ADD COLUMN {quote(c)} {t}")
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

    def _remove_orphans(self) -> None:
        """Files written before a crash but never committed to the catalog."""
        self.con.execute("DELETE FROM rollup_files r WHERE NOT EXISTS "
                         "(SELECT 1 FROM event_files f WHERE f.path = r.path)")
        known = {p for p, in self.con.execute("SELECT path FROM event_files").fetchall()}
        base = self.root / EVENTS_DIR
        if not base.is_dir():
            return
        for f in base.rglob("*"):
            rel = f.relative_to(self.root).as_posix()
            if f.is_file() and rel not in known:
                f.unlink()

    def index_sets(self) -> list[dict[str, Any]]:
        rows = self.con.cursor().execute(
            "SELECT name, title, retention_days FROM index_sets ORDER BY name").fetchall()
        return [{"name": n, "title": t, "retention_days": r} for n, t, r in rows]

    def add_stream(self, stream: Stream) -> None:
        """Route with ``stream`` too, from now on (a stream created while serve runs)."""
        with self._lock:  # append takes a router and its routes together, under this lock
            router = Router([*self.router.streams, stream])
            self.router, self._routes = router, router.routes()
            self.streams_version += 1

    # ------------------------------------------------------------ writing

    def positions(self, input_name: str) -> dict[tuple[int, int], int]:
        rows = self.con.cursor().execute(
            'SELECT device, inode, "offset" FROM file_positions WHERE input = ?',
            [input_name]).fetchall()
        return {(int(d), int(i)): int(o) for d, i, o in rows}

    def append(self, events: pa.Table | None, failures: pa.Table | None = None,
               positions: Sequence[Position] = (), now: dt.datetime | None = None,
               forget: Sequence[tuple[str, int, int]] = ()) -> dict[str, int]:
        """Store a batch atomically; returns rows stored per stream."""
        day = (now or _utcnow()).date()
        counts: dict[str, int] = {}
        written: list[EventFile] = []
        if events is not None and events.num_rows:
            with self._lock:  # a router and its routes, never one of each (add_stream)
                router, routes = self.router, self._routes
            con = self.con.cursor()
            try:
                counts, written = write_routed(events, router, routes, self.root, day, con)
            finally:
                con.close()
        self.commit(written, failures, positions, forget)
        return counts

    def commit(self, written: Sequence[EventFile], failures: pa.Table | None = None,
               positions: Sequence[Position] = (),
               forget: Sequence[tuple[str, int, int]] = (), busy: bool = False,
               batches: Sequence[tuple[str, str]] = ()) -> None:
        """Record already written event files with failures and positions, atomically.
        ``busy``: more is waiting to be stored, so small files are merged only once a
        tier holds BUSY_FACTOR times COMPACT_AT of them (merging competes with ingest for
        the same cores; the file count stays bounded all the same)."""
        with self._lock:
            try:
                self._commit(written, failures, positions, forget, batches)
            except BaseException:
                for f in written:
                    (self.root / f.path).unlink(missing_ok=True)
                raise
        if written:
            self._request_rollup()
            self._request_compaction({(f.index_set, f.day) for f in written},
                                     COMPACT_AT * (BUSY_FACTOR if busy else 1))

    def _commit(self, written: Sequence[EventFile],
                failures: pa.Table | None, positions: Sequence[Position],
                forget: Sequence[tuple[str, int, int]],
                batches: Sequence[tuple[str, str]] = ()) -> None:
        if not (written or (failures is not None and failures.num_rows) or positions or forget
                or batches):
            return
        con = self.con
        con.execute("BEGIN")
        try:
            now = _utcnow()
            if written:
                con.executemany("INSERT INTO event_files VALUES (?, ?, ?, ?, ?, ?, ?)",
                                [[f.path, f.index_set, f.day, f.rows, f.min_ts, f.max_ts, now]
                                 for f in written])
            if failures is not None and failures.num_rows:
                con.register("failure_batch", failures)
                con.execute("INSERT INTO failures BY NAME SELECT * FROM failure_batch")
                con.unregister("failure_batch")
            if positions:
                con.executemany(
                    "INSERT OR REPLACE INTO file_positions VALUES (?, ?, ?, ?, ?, ?)",
                    [[p.input, p.device, p.inode, p.path, p.offset, now] for p in positions])
            if batches:
                con.executemany("INSERT INTO batches VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                                [[i, d, now] for i, d in batches])
            if forget:  # files closed for good: an inode reused later starts at 0
                con.executemany(
                    "DELETE FROM file_positions WHERE input = ? AND device = ? AND inode = ?",
                    [list(k) for k in forget])
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------ compaction

    def _request_compaction(self, partitions: set[tuple[str, dt.date]], at: int) -> None:
        with self._compact_cv:
            if self._closing:
                return
            for part in partitions:
                self._compact_due[part] = min(at, self._compact_due.get(part, at))
                self._merge_at[part] = at
            if self._compactor is None:
                self._compactor = threading.Thread(target=self._compact_loop,
                                                   name="compactor", daemon=True)
                self._compactor.start()
            self._compact_cv.notify()

    def wait_compacted(self, timeout: float = 60.0) -> bool:
        """Roll up what is pending, then wait until no merge is due or running (tests,
        shutdown)."""
        self.roll_up()
        with self._compact_cv:
            return self._compact_cv.wait_for(
                lambda: not self._compact_due and not self._compacting, timeout)

    def _compact_loop(self) -> None:
        con = self.con.cursor()
        try:
            while True:
                with self._compact_cv:
                    self._compact_cv.wait_for(lambda: self._compact_due or self._closing)
                    if self._closing:
                        return
                    (index_set, day), at = self._compact_due.popitem()
                    self._compacting = True
                try:
                    while not self._closing and self._compact_once(con, index_set, day, at):
                        pass
                except Exception:  # noqa: BLE001 - files stay unmerged; queries still see them
                    log.exception("merging small files of %s/%s failed", index_set, day)
                finally:
                    with self._compact_cv:
                        self._compacting = False
                        self._compact_cv.notify_all()
        finally:
            con.close()

    def _compact_once(self, con: duckdb.DuckDBPyConnection, index_set: str, day: dt.date,
                      at: int = COMPACT_AT) -> bool:
        """Merge COMPACT_AT of a partition's small files when a tier holds ``at`` of them,
        so that a day is a few large files whatever the input rate (a slow input writes one
        file per batch timeout, a busy one per read). Returns whether it merged.

        Files are merged by size tier (tier k holds 32^k to 32^(k+1) rows), COMPACT_AT of
        one tier at a time, so the result lands in a higher tier and a row is rewritten at
        most log32(rows) times, not once per merge. Files of MERGE_BELOW rows and more are
        left alone. DuckDB streams the merge, so memory stays small; the merge itself holds
        no lock, only the swap in the catalog does.
        """
        # with rollups, only files in the cubes: the merged file takes their place there
        rolled = ("AND EXISTS (SELECT 1 FROM rollup_files r WHERE r.path = f.path) "
                  if self.rollups else "")
        small = con.execute(
            "SELECT path, rows FROM event_files f WHERE index_set = ? AND day = ? AND rows < ? "
            f"{rolled}ORDER BY created", [index_set, day, MERGE_BELOW]).fetchall()
        tiers: dict[int, list[str]] = {}
        for path, rows in small:
            tiers.setdefault(_tier(rows), []).append(path)
        full = [t for t, files in tiers.items() if len(files) >= at]
        if not full:
            return False
        paths = tiers[min(full)][:COMPACT_AT]
        new = merge_files(self.root, index_set, day, paths, con)
        with self._lock:
            con.execute("BEGIN")
            try:
                listed = ", ".join("?" * len(paths))
                still, = con.execute(f"SELECT count(*) FROM event_files WHERE path IN ({listed})",
                                     paths).fetchone()
                if still != len(paths):  # retention dropped some meanwhile
                    con.execute("ROLLBACK")
                    (self.root / new.path).unlink(missing_ok=True)
                    return False
                con.executemany("DELETE FROM event_files WHERE path = ?", [[p] for p in paths])
                con.executemany("DELETE FROM rollup_files WHERE path = ?", [[p] for p in paths])
                con.execute("INSERT INTO event_files VALUES (?, ?, ?, ?, ?, ?, ?)",
                            [new.path, index_set, day, new.rows, new.min_ts, new.max_ts,
                             _utcnow()])
                if self.rollups:
                    con.execute("INSERT INTO rollup_files VALUES (?, ?)",
                                [new.path, _utcnow()])
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                (self.root / new.path).unlink(missing_ok=True)
                raise
        for p in paths:
            (self.root / p).unlink(missing_ok=True)
        return True

    # ------------------------------------------------------------ roll-ups

    def _request_rollup(self) -> None:
        with self._rollup_cv:
            if self._closing or not self.rollups:
                return
            self._rollup_due = True
            if self._roller is None:
                self._roller = threading.Thread(target=self._rollup_loop, name="rollups",
                                                daemon=True)
                self._roller.start()
            self._rollup_cv.notify()

    def _rollup_loop(self) -> None:
        con = self.con.cursor()
        try:
            while True:
                with self._rollup_cv:
                    self._rollup_cv.wait_for(lambda: self._rollup_due or self._closing)
                    # a few seconds of commits at once: fewer, larger cube rows
                    self._rollup_cv.wait_for(lambda: self._closing, timeout=ROLLUP_DELAY)
                    if self._closing:
                        return
                    self._rollup_due = False
                try:
                    while not self._closing and self._roll_up(con):
                        pass
                    while not self._closing and self._make_top_lists(con, 4):
                        pass
                except Exception:  # noqa: BLE001 - retried at the next commit; queries read raw
                    log.exception("rolling up event files failed")
        finally:
            con.close()

    def roll_up(self) -> int:
        """Put every committed file no cube holds yet into the cubes now; returns how many
        files (the thread does this on its own a few seconds behind ingest)."""
        if self.read_only or not self.rollups:
            return 0
        con = self.con.cursor()
        try:
            n = 0
            while k := self._roll_up(con):
                n += k
            while self._make_top_lists(con, 64):
                pass
            return n
        finally:
            con.close()

    def _pending_rollup(self, con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, dt.date,
                                                                             int]]:
        return con.execute(
            "SELECT path, index_set, day, rows FROM event_files f WHERE NOT EXISTS "
            "(SELECT 1 FROM rollup_files r WHERE r.path = f.path) ORDER BY created").fetchall()

    def _roll_up(self, con: duckdb.DuckDBPyConnection) -> int:
        """The oldest files not in the cubes, up to ROLLUP_ROWS events, aggregated into
        them; returns how many files. The aggregation holds no lock; the insert and the
        listing of the files are one transaction."""
        with self._roll_lock:
            take: list[tuple[str, str, dt.date, int]] = []
            total = 0
            for row in self._pending_rollup(con):
                if take and total + row[3] > ROLLUP_ROWS:
                    break
                take.append(row)
                total += row[3]
            if not take:
                return 0
            groups: dict[tuple[str, dt.date], list[str]] = {}
            for path, index_set, day, _ in take:
                groups.setdefault((index_set, day), []).append(path)
            computed = [(part, paths, rollups.aggregate(con, self._relation(paths)))
                        for part, paths in groups.items()]
            with self._lock:
                con.execute("BEGIN")
                try:
                    listed = [p for _, paths, _ in computed for p in paths]
                    present = {p for p, in con.execute(
                        "SELECT path FROM event_files WHERE list_contains(?, path)",
                        [listed]).fetchall()}
                    now = _utcnow()
                    for (index_set, day), paths, cubes in computed:
                        if not present.issuperset(paths):
                            continue  # retention or a merge took some meanwhile: next time
                        rollups.insert(con, index_set, day, cubes)
                        top_lists.invalidate(con, index_set, day, _hours(cubes))
                        con.executemany("INSERT INTO rollup_files VALUES (?, ?)",
                                        [[p, now] for p in paths])
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
        with self._compact_cv:  # merges wait for files to be rolled up
            at = {part: self._merge_at.get(part, COMPACT_AT) for part in groups}
        for part, threshold in at.items():
            self._request_compaction({part}, threshold)
        return len(take)

    def _make_top_lists(self, con: duckdb.DuckDBPyConnection, at_most: int) -> int:
        """Lists (store/top_lists.py) of up to ``at_most`` ended hours that have none;
        returns how many. Each hour is read from its rolled-up files and inserted in one
        transaction; a file merged away meanwhile leaves the hour for the next time."""
        with self._roll_lock:
            due = top_lists.due(con, _utcnow())[:at_most]
            made = 0
            for index_set, day, hour in due:
                paths = [p for p, in con.execute(
                    "SELECT path FROM event_files f WHERE index_set = ? AND day = ? AND "
                    "max_ts >= ? AND min_ts < ? AND rows > 0 AND EXISTS "
                    "(SELECT 1 FROM rollup_files r WHERE r.path = f.path)",
                    [index_set, day, hour, hour + dt.timedelta(hours=1)]).fetchall()]
                if not paths:
                    continue
                try:
                    computed = top_lists.compute(con, self._relation(paths), hour)
                except duckdb.IOException:  # merged or dropped meanwhile: next time
                    return made
                with self._lock:
                    con.execute("BEGIN")
                    try:
                        present = con.execute(
                            "SELECT count(*) FROM event_files WHERE list_contains(?, path)",
                            [paths]).fetchone()
                        if present is not None and present[0] == len(paths):
                            top_lists.insert(con, index_set, day, hour, computed)
                            made += 1
                        con.execute("COMMIT")
                    except BaseException:
                        con.execute("ROLLBACK")
                        raise
            return made

    # ------------------------------------------------------------ retention

    def seen_batch(self, input_name: str, digest: str) -> bool:
        """Whether a push input already stored a batch of this content."""
        with self._lock:
            return self.con.execute("SELECT 1 FROM batches WHERE input = ? AND digest = ?",
                                    [input_name, digest]).fetchone() is not None

    def apply_retention(self, today: dt.date | None = None) -> list[str]:
        """Drop whole day partitions older than their index set's retention, and batch
        digests older than BATCH_MEMORY_DAYS (retries come within minutes)."""
        today = today or _utcnow().date()
        with self._lock:
            con = self.con
            con.execute("DELETE FROM batches WHERE stored < ?::TIMESTAMP - ? * INTERVAL 1 DAY",
                        [_utcnow(), BATCH_MEMORY_DAYS])
            old = con.execute(
                "SELECT f.path, f.index_set, f.day FROM event_files f "
                "JOIN index_sets s ON s.name = f.index_set "
                "WHERE f.day < ?::DATE - s.retention_days * INTERVAL 1 DAY", [today]).fetchall()
            if not old:
                return []
            con.execute("BEGIN")
            try:
                con.executemany("DELETE FROM event_files WHERE path = ?",
                                [[p] for p, _, _ in old])
                con.executemany("DELETE FROM rollup_files WHERE path = ?",
                                [[p] for p, _, _ in old])
                rollups.drop(con, sorted({(s, d) for _, s, d in old}))
                top_lists.drop(con, sorted({(s, d) for _, s, d in old}))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
            days = sorted({f"{s}/{d.isoformat()}" for _, s, d in old})
            for p, _, _ in old:
                (self.root / p).unlink(missing_ok=True)
            for d in days:
                folder = self.root / EVENTS_DIR / d
                if folder.is_dir() and not any(folder.iterdir()):
                    folder.rmdir()
        return days

    # ------------------------------------------------------------ reading

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()

    def files_for(self, start: dt.datetime | None, end: dt.datetime | None,
                  index_sets: Sequence[str] = (), *, con: duckdb.DuckDBPyConnection | None = None,
                  unrolled: bool = False, within: bool | None = None) -> list[str]:
        """Event files that can hold events in [start, end]; ``unrolled``: only those no
        cube holds yet; ``within`` True: only those whose every event is in [start, end]
        (a query needs no time filter on them), False: only the others. ``con``: read in
        that cursor's transaction."""
        sql = "SELECT path FROM event_files f WHERE rows > 0"
        if unrolled:
            sql += " AND NOT EXISTS (SELECT 1 FROM rollup_files r WHERE r.path = f.path)"
        params: list[Any] = []
        if within is not None:
            sql += " AND COALESCE(min_ts >= ? AND max_ts <= ?, FALSE) = ?"
            params += [start or dt.datetime.max, end or dt.datetime.min, within]
        if start is not None:
            sql += " AND max_ts >= ?"
            params.append(start)
        if end is not None:
            sql += " AND min_ts <= ?"
            params.append(end)
        if index_sets:
            sql += f" AND index_set IN ({', '.join('?' * len(index_sets))})"
            params += list(index_sets)
        rows = (con or self.con.cursor()).execute(sql + " ORDER BY day, created",
                                                   params).fetchall()
        return [p for p, in rows]

    def partitions(self) -> list[dict[str, Any]]:
        rows = self.con.cursor().execute(
            "SELECT index_set, day, count(*), sum(rows), min(min_ts), max(max_ts) "
            "FROM event_files GROUP BY ALL ORDER BY index_set, day").fetchall()
        return [{"index_set": s, "day": d.isoformat(), "files": f, "rows": int(r),
                 "min_ts": lo, "max_ts": hi} for s, d, f, r, lo, hi in rows]

    def events_relation(self, start: dt.datetime | None, end: dt.datetime | None,
                        index_sets: Sequence[str] = (), *,
                        con: duckdb.DuckDBPyConnection | None = None,
                        unrolled: bool = False, within: bool | None = None) -> str | None:
        """SQL of a subquery over every event file that can hold events in [start, end]
        (``files_for``'s options)."""
        files = self.files_for(start, end, index_sets, con=con, unrolled=unrolled,
                               within=within)
        return self._relation(files) if files else None

    def _relation(self, files: Sequence[str]) -> str:
        for f in files:  # our own names; checked because they are spliced into SQL
            if not FILE_NAME.match(f):
                raise ValueError(f"unexpected event file name {f!r}")
        listing = ", ".join("'" + (self.root / f).as_posix().replace("'", "''") + "'"
                            for f in files)
        return (f"SELECT * FROM {SCHEMA_TABLE} UNION ALL BY NAME "
                f"SELECT * FROM read_parquet([{listing}], union_by_name = true)")

    def failures(self, limit: int = 100) -> pa.Table:
        return self.con.cursor().execute(
            'SELECT * FROM failures ORDER BY "@timestamp" DESC LIMIT ?', [limit]
        ).to_arrow_table()

    def close(self) -> None:
        with self._compact_cv:
            self._closing = True
            self._compact_cv.notify_all()
        with self._rollup_cv:
            self._rollup_cv.notify_all()
        if self._compactor is not None:
            self._compactor.join()  # a merge under way finishes (or its file is an orphan)
        if self._roller is not None:
            self._roller.join()  # a roll-up under way commits or rolls back
        self.con.close()
