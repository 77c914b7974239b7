"""The exact top N of a composite terms panel from the hourly top lists (store/top_lists.py)
instead of grouping every event by its key — the Conversations panel over 10 M flows.

1. Candidates, in one query: for each key, ``lb`` = its listed bytes over the hours with a
   list in the range, plus its bytes in the events the lists do not cover (hours without a
   list, the range's partial hours, files not rolled up yet), counted exactly; and ``ub`` =
   ``lb`` plus the threshold of every segment in scope that does not list it. Every key's
   true bytes lie in [lb, ub]. With V the N-th largest ``lb``, the keys with ``ub >= V``
   (the top N by ``lb`` among them) are the only ones that can be in the top N.
2. Their bytes counted exactly from the events of the whole range (a filtered scan).
3. The answer is proven when the N-th of those exact values is larger than the sum T of
   every segment's threshold (what a key in no list and no raw event could have); the
   keys left out have ``ub < V``, at most the N-th value. Otherwise (or with too many
   candidates, a key part NULL, a negative counter) ``None``: the caller groups the events.

Only where the lists answer exactly: a terms panel on exactly a list's keys, ranked by the
sum of its counter, descending, no sub-aggregation, a KQL on the list's dims only.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import pyarrow as pa

from netmeta.query.rollup_plan import ceil_bucket, floor_bucket, kql_fields
from netmeta.query.search import Query
from netmeta.query.sql import compile_where
from netmeta.store import rollups, top_lists
from netmeta.store.duckdb import Store
from netmeta.store.schema import NAME, quote
from netmeta.store.top_lists import HOUR, THRESHOLD, TopList

MAX_CANDIDATES = 1000  # keys counted exactly in step 2, at most


def list_for(spec: dict[str, Any], kql: str) -> TopList | None:
    """The top list that answers ``spec`` (a terms aggregation) exactly, if any."""
    metric = spec.get("metric")
    if (spec.get("sub") is not None or spec.get("order", "desc") != "desc"
            or not isinstance(metric, dict) or metric.get("type") != "sum"):
        return None
    fields = kql_fields(kql)
    if fields is None:
        return None
    for top in top_lists.TOP_LISTS:
        if (spec.get("field") == list(top.keys) and metric.get("field") == top.by
                and fields <= set(top.dims)):
            return top
    return None


def top(store: Store, q: Query, top: TopList, size: int
        ) -> list[tuple[list[Any], Any]] | None:
    """The ``size`` heaviest keys and their sums, as grouping every event gives them
    (keys as lists of text, ties by key), or None when the lists cannot prove it."""
    if q.start is None or q.end is None or not all(NAME.match(s) for s in q.index_sets):
        return None
    lo = ceil_bucket(q.start, HOUR)  # whole hours: [lo, hi)
    hi = floor_bucket(q.end + dt.timedelta(microseconds=1), HOUR)
    if lo >= hi:
        return None
    con = store.cursor()
    con.execute("BEGIN TRANSACTION")  # the lists and the files listed: one snapshot
    try:
        return _top(store, q, top, size, lo, hi, con)
    except duckdb.IOException:  # a file merged or dropped meanwhile
        return None
    except duckdb.CatalogException:  # a read-only store written before top lists existed
        return None
    finally:
        con.execute("ROLLBACK")  # read only
        con.close()


def _top(store: Store, q: Query, top: TopList, size: int, lo: dt.datetime, hi: dt.datetime,
         con: duckdb.DuckDBPyConnection) -> list[tuple[list[Any], Any]] | None:
    scope = ["\"@timestamp\" >= ? AND \"@timestamp\" < ?"]
    sparams: list[Any] = [lo, hi]
    if q.index_sets:
        scope.append(f"index_set IN ({', '.join('?' * len(q.index_sets))})")
        sparams += list(q.index_sets)
    # an hour counts as listed only when every partition (index set, ingestion day) with
    # rolled-up events in it has its list: late events ingested on the next day, or an
    # index set rolled up later, would otherwise be in neither the lists nor the raw part
    hours = [h for h, in con.execute(
        f"WITH m AS (SELECT DISTINCT index_set, day, time_bucket(INTERVAL {HOUR} SECOND, "
        f"\"@timestamp\") AS h FROM {rollups.MINUTE.table} WHERE {' AND '.join(scope)}), "
        f"s AS (SELECT DISTINCT index_set, day, \"@timestamp\" AS h FROM {top.segments} "
        f"WHERE {' AND '.join(scope)}) SELECT m.h FROM m LEFT JOIN s ON s.index_set = "
        "m.index_set AND s.day = m.day AND s.h = m.h GROUP BY m.h "
        "HAVING bool_and(s.h IS NOT NULL) ORDER BY m.h", [*sparams, *sparams]).fetchall()]
    if not hours:
        return None
    scope.append("\"@timestamp\" IN (SELECT unnest(?))")  # the lists of those hours only
    sparams.append(hours)
    where, wparams = q.where()
    dims = ", ".join(quote(d) for d in top.dims)
    keys = [quote(k) for k in top.keys]
    klist = ", ".join(keys)
    by = quote(top.by)
    seg = (f"SELECT * FROM (SELECT \"@timestamp\", {dims}, {THRESHOLD}, _neg FROM "
           f"{top.segments} WHERE {' AND '.join(scope)}) WHERE {where}")
    total, negative = con.execute(
        f"SELECT COALESCE(sum({THRESHOLD}), 0), COALESCE(bool_or(_neg), false) FROM ({seg})",
        [*sparams, *wparams]).fetchone() or (0, False)
    if negative:
        return None
    listed = (f"SELECT {klist}, COALESCE({by}, 0) AS _b, {THRESHOLD} AS _l FROM (SELECT "
              f"\"@timestamp\", {dims}, {klist}, {by}, {THRESHOLD} FROM {top.table} WHERE "
              f"{' AND '.join(scope)}) WHERE {where}")
    params: list[Any] = [*sparams, *wparams]
    raw_parts = []
    # events outside the listed hours, from every file; inside them, from the files no
    # list counts yet (not rolled up): each a time range, so that files and row groups
    # outside it are skipped
    listed_runs = _runs(sorted(hours))
    for a, b, inclusive, unrolled in [*((a, b, inc, False) for a, b, inc
                                        in _gaps(q.start, q.end, listed_runs)),
                                      *((a, b, False, True) for a, b in listed_runs)]:
        rel = store.events_relation(a, b, q.index_sets, con=con, unrolled=unrolled)
        if rel is None:
            continue
        raw_parts.append(f"SELECT {klist}, {by} FROM ({rel}) WHERE {where} AND "
                         f"\"@timestamp\" >= ? AND \"@timestamp\" {'<=' if inclusive else '<'} ?")
        params += [*wparams, a, b]
    raw = " UNION ALL ".join(
        f"SELECT {klist}, COALESCE({by}, 0) AS _b, 0 AS _l FROM ({p})" for p in raw_parts)
    union = f"({listed})" + (f" UNION ALL ({raw})" if raw else "")
    cands = con.execute(
        f"WITH c AS (SELECT {klist}, sum(_b) AS lb, sum(_l) AS lt FROM ({union}) GROUP BY "
        f"ALL), v AS (SELECT lb FROM c ORDER BY lb DESC LIMIT 1 OFFSET ?) "
        f"SELECT {klist} FROM c WHERE lb + ? - lt >= (SELECT lb FROM v) LIMIT ?",
        [*params, size - 1, total, MAX_CANDIDATES + 1]).to_arrow_table()
    if not 0 < cands.num_rows <= MAX_CANDIDATES or any(
            cands.column(i).null_count for i in range(cands.num_columns)):
        return None
    exact = _exact(con, store, q, top, cands, where, wparams)
    if exact is None or exact.num_rows < size:
        return None
    rows = list(zip(exact.column("k0").to_pylist(), exact.column("m").to_pylist(),
                    strict=True))[:size]
    nth = rows[-1][1]
    if nth is None or nth <= total:
        return None
    return rows


def _runs(hours: list[dt.datetime]) -> list[tuple[dt.datetime, dt.datetime]]:
    """Consecutive hours as [start, end) ranges."""
    out: list[tuple[dt.datetime, dt.datetime]] = []
    for h in hours:
        if out and out[-1][1] == h:
            out[-1] = (out[-1][0], h + dt.timedelta(seconds=HOUR))
        else:
            out.append((h, h + dt.timedelta(seconds=HOUR)))
    return out


def _gaps(start: dt.datetime, end: dt.datetime,
          runs: list[tuple[dt.datetime, dt.datetime]]
          ) -> list[tuple[dt.datetime, dt.datetime, bool]]:
    """[start, end] less the runs: (from, to, whether ``to`` is included)."""
    out, at = [], start
    for a, b in runs:
        if at < a:
            out.append((at, a, False))
        at = max(at, b)
    if at <= end:
        out.append((at, end, True))
    return out


def _exact(con: duckdb.DuckDBPyConnection, store: Store, q: Query, top: TopList,
           cands: pa.Table, where: str, wparams: list[Any]) -> pa.Table | None:
    """The candidates' sums over every event of the range, ranked as the grouping query
    ranks (sum descending, then the key as text)."""
    kql, kparams = compile_where(q.kql)
    # files wholly in the range need no time filter: reading @timestamp for every event
    # costs a third of the scan
    parts, params = [], []
    for within, cond, cparams in ((True, kql, kparams), (False, where, wparams)):
        rel = store.events_relation(q.start, q.end, q.index_sets, con=con, within=within)
        if rel is not None:
            parts.append((rel, cond))
            params += cparams
    if not parts:
        return None
    keys = [quote(k) for k in top.keys]
    klist = ", ".join(keys)
    text = ", ".join(f"CAST({k} AS VARCHAR)" for k in keys)
    con.register("top_candidates", cands)
    try:
        # one constant IN list on the key's hash is the cheapest filter DuckDB runs on
        # every event (half the time of IN lists on the parts); a key sharing a
        # candidate's hash is dropped by the join on the key itself
        hashes = [int(h) for h, in con.execute(
            f"SELECT DISTINCT hash({klist}) FROM top_candidates").fetchall()]
        narrow = f"hash({klist}) IN ({', '.join(f'{h}::UBIGINT' for h in hashes)})"
        scans = " UNION ALL ".join(
            f"SELECT {klist}, {quote(top.by)} FROM ({rel}) WHERE {cond} AND {narrow}"
            for rel, cond in parts)
        return con.execute(
            f"WITH g AS (SELECT {klist}, sum({quote(top.by)}) AS m FROM ({scans}) GROUP BY "
            f"ALL) SELECT [{text}] AS k0, m FROM g SEMI JOIN top_candidates USING ({klist}) "
            "ORDER BY m DESC NULLS LAST, k0", params).to_arrow_table()
    finally:
        con.unregister("top_candidates")
