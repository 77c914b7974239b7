"""Whether an aggregation can be answered exactly from a rollup cube (store/rollups.py),
and the relation it then reads, shaped like the events (each row carries ``_n``, the
events it stands for: 1 for a raw event):

- the cube's whole buckets in the range;
- the events of the same buckets in files not rolled up yet (the last seconds of ingest);
- the events of the partial buckets at the range's two ends, from every file.

The files are listed in the cursor's transaction that then runs the query, so that a
roll-up committing in between cannot count a file twice or not at all."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

import duckdb

from netmeta.query.kql import And, Exists, Match, MatchAll, Node, Not, Or, Range, parse
from netmeta.query.search import Query
from netmeta.store import rollups
from netmeta.store.duckdb import Store
from netmeta.store.schema import NAME, quote

_EPOCH = dt.datetime(2000, 1, 3)  # time_bucket's origin: buckets of a cube start there


@dataclass(frozen=True, slots=True)
class Need:
    """What an aggregation reads: fields it groups or filters by, counters it sums, and a
    histogram's interval (microseconds)."""

    fields: frozenset[str]
    sums: frozenset[str] = frozenset()
    step_us: int | None = None


def kql_fields(text: str) -> set[str] | None:
    """Fields a KQL query tests; None when it searches free text (a bare term)."""
    out: set[str] = set()

    def walk(node: Node) -> bool:
        match node:
            case Or(items) | And(items):
                return all(walk(i) for i in items)
            case Not(item):
                return walk(item)
            case MatchAll():
                return True
            case Match(None, _):
                return False
            case Match(str(name), _) | Exists(name, _) | Range(name, _, _):
                out.add(name)
                return True
        return False

    node = parse(text)
    return out if node is None or walk(node) else None


def _cube_for(need: Need) -> rollups.Cube | None:
    if not need.sums <= set(rollups.SUMS):
        return None
    for cube in rollups.CUBES:
        if not need.fields <= set(cube.dims):
            continue
        if need.step_us is not None and need.step_us % (cube.grain * 10**6):
            continue
        return cube
    return None


def ceil_bucket(t: dt.datetime, grain: int) -> dt.datetime:
    """The first bucket start of ``grain`` seconds at or after ``t``."""
    step = dt.timedelta(seconds=grain)
    rem = (t - _EPOCH) % step
    return t if not rem else t - rem + step


def floor_bucket(t: dt.datetime, grain: int) -> dt.datetime:
    """The start of the bucket of ``grain`` seconds holding ``t``."""
    return t - (t - _EPOCH) % dt.timedelta(seconds=grain)


def _ts(t: dt.datetime) -> str:
    return f"TIMESTAMP '{t.isoformat(sep=' ')}'"  # our own datetime, not user text


def relation(store: Store, q: Query, need: Need, con: duckdb.DuckDBPyConnection
             ) -> str | None:
    """SQL of the rollup relation for ``q``, or None when only the raw events answer it
    exactly (or as fast). ``con``: a cursor in the transaction that will run it."""
    kql = kql_fields(q.kql)
    if kql is None:
        return None
    cube = _cube_for(Need(need.fields | kql, need.sums, need.step_us))
    if cube is None or not all(NAME.match(s) for s in q.index_sets):
        return None
    # whole buckets: [lo, hi); the raw events before lo and from hi on (end is inclusive)
    lo = ceil_bucket(q.start, cube.grain) if q.start is not None else None
    hi = (floor_bucket(q.end + dt.timedelta(microseconds=1), cube.grain)
          if q.end is not None else None)
    if lo is not None and hi is not None and lo >= hi:
        return None
    cols = [*cube.columns(), *rollups.SUMS]
    listed = ", ".join(quote(c) for c in cols)
    where = ["TRUE"]
    if lo is not None:
        where.append(f'"@timestamp" >= {_ts(lo)}')
    if hi is not None:
        where.append(f'"@timestamp" < {_ts(hi)}')
    if q.index_sets:
        where.append(f"index_set IN ({', '.join(repr(s) for s in q.index_sets)})")
    parts = [f'SELECT "@timestamp", {listed}, {rollups.COUNT} FROM {cube.table} '
             f"WHERE {' AND '.join(where)}"]
    try:
        # the whole buckets' events that no cube holds yet
        recent = _raw_part(store, q, lo, hi, "<", listed, con, unrolled=True)
    except duckdb.CatalogException:  # a read-only store written before rollups existed
        return None
    if recent is not None:
        parts.append(recent)
    if q.start is not None and lo is not None and q.start < lo:
        parts.append(_raw_part(store, q, q.start, lo, "<", listed, con))
    if q.end is not None and hi is not None:
        parts.append(_raw_part(store, q, hi, q.end, "<=", listed, con))
    return " UNION ALL BY NAME ".join(f"({p})" for p in parts if p is not None)


def _raw_part(store: Store, q: Query, a: dt.datetime | None, b: dt.datetime | None, op: str,
              listed: str, con: duckdb.DuckDBPyConnection, unrolled: bool = False
              ) -> str | None:
    """The events of [a, b) (``op`` "<") or [a, b] ("<="); None: no file has any."""
    rel = store.events_relation(a, b, q.index_sets, con=con, unrolled=unrolled)
    if rel is None:
        return None
    where = [f'"@timestamp" >= {_ts(a)}' if a is not None else "TRUE"]
    if b is not None:
        where.append(f'"@timestamp" {op} {_ts(b)}')
    return (f'SELECT "@timestamp", {listed}, 1::BIGINT AS {rollups.COUNT} FROM ({rel}) '
            f"WHERE {' AND '.join(where)}")


def names(value: object) -> Iterable[str]:
    """Field names of a terms ``field`` (one name or a composite list)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []
