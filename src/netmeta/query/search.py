"""Searches and top-N aggregations over the store, from KQL.

The time range prunes day partitions (the store knows each one's min/max @timestamp), the
KQL becomes a parameterized WHERE, and the database does the formatting and aggregation.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from netmeta.event import FIELDS, META_EXTRA, row_to_document
from netmeta.query.kql import KQLError
from netmeta.query.sql import compile_where, json_path
from netmeta.store.duckdb import Store

_REL = re.compile(r"^now(?:-(\d+)([smhdw]))?$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_time(text: str | None, now: dt.datetime | None = None) -> dt.datetime | None:
    """ISO time or date, or relative (``now``, ``now-15m``, ``now-7d``); UTC, naive."""
    if text is None or text == "":
        return None
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    m = _REL.match(text.strip())
    if m:
        if not m.group(1):
            return now
        return now - dt.timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        d = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"time {text!r}: use ISO 8601 (2024-07-31T00:00:00Z) or now-15m") \
            from None
    return d.astimezone(dt.UTC).replace(tzinfo=None) if d.tzinfo else d


@dataclass(frozen=True, slots=True)
class Query:
    kql: str = ""
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    index_sets: tuple[str, ...] = ()

    def where(self) -> tuple[str, list[Any]]:
        sql, params = compile_where(self.kql)
        if self.start is not None:
            sql += ' AND "@timestamp" >= ?'
            params.append(self.start)
        if self.end is not None:
            sql += ' AND "@timestamp" <= ?'
            params.append(self.end)
        return sql, params


def search(store: Store, q: Query, limit: int = 100, fields: Sequence[str] = ()
           ) -> list[dict[str, Any]]:
    """Newest first; each hit is the nested ECS document (or only ``fields``, dotted)."""
    where, params = q.where()
    table = _run(store, q, lambda rel: (
        f'SELECT * FROM ({rel}) WHERE {where} ORDER BY "@timestamp" DESC LIMIT ?',
        [*params, int(limit)]))
    rows = table.to_pylist() if table is not None else []
    docs = [row_to_document(r) for r in rows]
    if fields:
        return [{f: pick(d, f) for f in fields} for d in docs]
    return docs


def pick(doc: dict[str, Any], dotted: str) -> Any:
    cur: Any = doc
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def count(store: Store, q: Query) -> int:
    where, params = q.where()
    table = _run(store, q, lambda rel: (f"SELECT count(*) AS n FROM ({rel}) WHERE {where}",
                                        params))
    return int(table.column("n")[0].as_py()) if table is not None else 0


def _value_expr(name: str) -> tuple[str, list[Any], bool]:
    """SQL giving a field's value(s) as text for grouping, its params, and whether a list."""
    if not re.fullmatch(r"[A-Za-z0-9_@.\-]+", name):
        raise KQLError(f"invalid field name {name!r}", 0)
    f = FIELDS.get(name)
    if f is not None:
        col = '"' + name + '"'
        return (col if f.type == "keyword" or f.is_list else f"CAST({col} AS VARCHAR)"), [], \
            f.is_list
    path = json_path(name)
    val = f'json_extract("{META_EXTRA}", ?)'
    expr = (f"list_transform(COALESCE(TRY_CAST({val} AS JSON[]), [{val}]), "
            "x -> json_extract_string(x, '$'))")
    # only documents whose text holds the field's last key are parsed (most events lack a
    # source's fields): the JSON is ours (orjson), so a present key is in its text as its
    # JSON encoding; without it the value is absent either way, and absent keys are dropped
    key = orjson.dumps(name.rsplit(".", 1)[-1]).decode()
    return (f'CASE WHEN contains("{META_EXTRA}", ?) THEN {expr} END', [key, path, path],
            True)


def _metric_expr(name: str) -> tuple[str, list[Any]]:
    f = FIELDS.get(name)
    if f is not None:
        if f.type not in ("long", "double") or f.is_list:
            raise KQLError(f"--by {name}: a numeric field is needed, {name} is {f.type}", 0)
        return '"' + name + '"', []
    return f'TRY_CAST(json_extract_string("{META_EXTRA}", ?) AS DOUBLE)', [json_path(name)]


def top(store: Store, field: str, q: Query, by: str | None = None, limit: int = 10
        ) -> list[tuple[Any, float]]:
    """Top values of ``field`` by event count, or by the sum of the numeric field ``by``."""
    where, wparams = q.where()
    value, vparams, is_list = _value_expr(field)
    if by:
        metric, mparams = _metric_expr(by)
        agg = f"sum({metric})"
    else:
        agg, mparams = "count(*)", []
    value = f"unnest({value})" if is_list else value

    def sql(rel: str) -> tuple[str, list[Any]]:
        inner = f"SELECT {value} AS v, * FROM ({rel}) WHERE {where}"
        # parameters in text order: the metric (outer select), the value, the filter
        return (f"SELECT v, {agg} AS m FROM ({inner}) WHERE v IS NOT NULL GROUP BY v "
                "ORDER BY m DESC NULLS LAST, v LIMIT ?", mparams + vparams + wparams + [limit])

    table = _run(store, q, sql)
    if table is None:
        return []
    metric = [_number(m) for m in table.column("m").to_pylist()]
    return list(zip(table.column("v").to_pylist(), metric, strict=True))


def _number(m: Any) -> int | float | None:
    """sum() of BIGINT is a HUGEINT, which arrives as a Decimal."""
    if m is None or isinstance(m, int | float):
        return m
    return int(m) if m == int(m) else float(m)


def _run(store: Store, q: Query, build: Callable[[str], tuple[str, list[Any]]]
         ) -> pa.Table | None:
    """Run a query over the files of [start, end]; None when there are none.

    Compaction and retention delete files after committing; a query that listed one of
    them just before is run once more with the files as they are now.
    """
    for attempt in (1, 2):
        rel = store.events_relation(q.start, q.end, q.index_sets)
        if rel is None:
            return None
        sql, params = build(rel)
        try:
            return store.cursor().execute(sql, params).to_arrow_table()
        except duckdb.IOException:
            if attempt == 2:
                raise
    return None
