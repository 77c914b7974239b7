"""Event files of the store: routing a batch to its index sets and writing each part as a
Parquet file of the day's partition.

Pure file work, no catalog: the files become visible only when the store commits them, so
this runs wherever the batch is (a pipeline worker process or the writer).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from netmeta.event import META_INPUT, META_STREAMS
from netmeta.route.streams import Route, Router
from netmeta.store.schema import EVENTS_DIR, column_types

# Nearly unique per event: a dictionary would only cost time. String statistics are not
# written either (min/max of free text prunes nothing); numbers, times and IP keys keep theirs.
_UNIQUE = frozenset({"event.original", "_extra", "_id", "network.community_id", "flow.id"})


@dataclass(frozen=True, slots=True)
class EventFile:
    path: str  # relative to the data dir
    index_set: str
    day: dt.date
    rows: int
    min_ts: dt.datetime | None
    max_ts: dt.datetime | None


def write_file(root: Path, index_set: str, day: dt.date, table: pa.Table) -> EventFile:
    """Write and fsync one file; it is not part of the store until committed."""
    rel = f"{EVENTS_DIR}/{index_set}/{day.isoformat()}/{uuid.uuid4().hex}.parquet"
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    pq.write_table(table, tmp, compression="zstd", row_group_size=128 * 1024,
                   use_dictionary=[c for c in table.column_names if c not in _UNIQUE],
                   write_statistics=[c for c in table.column_names
                                     if not pa.types.is_string(table.schema.field(c).type)])
    _fsync(tmp)
    tmp.rename(path)
    ts = table.column("@timestamp")
    return EventFile(rel, index_set, day, table.num_rows, pc.min(ts).as_py(),
                     pc.max(ts).as_py())


def merge_files(root: Path, index_set: str, day: dt.date, paths: Sequence[str],
                con: duckdb.DuckDBPyConnection) -> EventFile:
    """One file holding the rows of ``paths`` (streamed by DuckDB, fsynced, not committed)."""
    rel = f"{EVENTS_DIR}/{index_set}/{day.isoformat()}/{uuid.uuid4().hex}.parquet"
    path = root / rel
    tmp = path.with_suffix(".tmp")
    files = [str(root / p) for p in paths]
    con.execute(f"COPY (SELECT * FROM read_parquet(?, union_by_name = true)) TO "
                f"'{_sql_text(tmp.as_posix())}' (FORMAT parquet, COMPRESSION zstd)", [files])
    _fsync(tmp)
    tmp.rename(path)
    rows, lo, hi = con.execute(
        'SELECT count(*), min("@timestamp"), max("@timestamp") FROM read_parquet(?)',
        [str(path)]).fetchone()
    return EventFile(rel, index_set, day, int(rows), lo, hi)


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _with_streams(table: pa.Table, streams: pa.Array) -> pa.Table:
    return table.append_column(META_STREAMS, streams.cast(pa.list_(pa.string())))


def _write_by_input(events: pa.Table, router: Router, plan: dict[str, list[str]], root: Path,
                    day: dt.date) -> tuple[dict[str, int], list[EventFile]]:
    """The whole batch goes to each index set of the plan, with the same stream names."""
    n = events.num_rows
    counts = dict.fromkeys(router.count_names(), 0)
    written: list[EventFile] = []
    try:
        for index_set, names in plan.items():
            k = len(names)
            streams = pa.ListArray.from_arrays(
                pa.array(np.arange(0, (n + 1) * k, k, dtype=np.int32)),
                pa.array(names * n, pa.string()))
            written.append(write_file(root, index_set, day, _with_streams(events, streams)))
            for name in names:
                counts[name] = n
    except BaseException:
        for f in written:
            (root / f.path).unlink(missing_ok=True)
        raise
    return counts, written


def write_routed(events: pa.Table, router: Router, routes: Sequence[Route], root: Path,
                 day: dt.date, con: duckdb.DuckDBPyConnection
                 ) -> tuple[dict[str, int], list[EventFile]]:
    """Route ``events`` to index sets (stream rules run as SQL over the batch) and write one
    file per index set; returns rows per stream and the files written."""
    types = column_types()
    unknown = [c for c in events.column_names if c not in types]
    if unknown:
        raise ValueError(f"batch has columns the store does not know: {unknown}")
    inputs = pc.unique(events.column(META_INPUT)).to_pylist()
    plan = router.by_input(inputs[0]) if len(inputs) == 1 and inputs[0] is not None else None
    if plan is not None:
        return _write_by_input(events, router, plan, root, day)
    con.register("batch", events)
    written: list[EventFile] = []
    try:
        sql, params = router.counts_sql()
        row = con.execute(f"SELECT {sql} FROM batch", params).fetchone() or ()
        counts = {name: int(n) for name, n in zip(router.count_names(), row, strict=True)}
        for route in routes:
            # only the routing columns come back from DuckDB; the events stay in Arrow
            sel = con.execute(f"SELECT ({route.where}) AS m, {route.streams} AS s FROM batch",
                              route.where_params + route.streams_params).to_arrow_table()
            mask = pc.fill_null(sel.column("m"), False)
            n = pc.sum(mask).as_py() or 0
            if not n:
                continue
            whole = n == events.num_rows
            part = events if whole else events.filter(mask)
            streams = sel.column("s") if whole else sel.column("s").filter(mask)
            part = _with_streams(part, streams)
            written.append(write_file(root, route.index_set, day, part))
        return counts, written
    except BaseException:
        for f in written:
            (root / f.path).unlink(missing_ok=True)
        raise
    finally:
        con.unregister("batch")
