"""Aggregations over the store: terms (top-N), date histogram, metrics, one level of nesting.

Every aggregation, nested or not, is compiled into ONE DuckDB query: the database scans the
partition files once per panel and returns only the buckets. Nothing is aggregated in Python.

A spec is a small JSON object (the body of ``/api/aggregate``)::

    {"type": "terms", "field": "source.ip", "size": 10,
     "metric": {"type": "sum", "field": "network.bytes"},
     "sub": {"type": "terms", "field": "destination.port", "size": 5}}
    {"type": "date_histogram", "interval": "auto", "sub": {"type": "terms",
     "field": "event.dataset", "size": 6}}
    {"type": "metric", "metric": {"type": "cardinality", "field": "source.ip"}}

``field`` of a terms aggregation may be a list (a composite key, e.g. conversations).
Metrics: count, sum, avg, min, max, cardinality (HyperLogLog, as Elasticsearch's), and
``ratio``: the share of events matching a KQL ``q`` (e.g. the NXDOMAIN rate).

A panel that a rollup cube answers exactly (store/rollups.py, query/rollup_plan.py) reads
the cube instead of the events: the same SQL over a relation whose rows stand for ``_n``
events each, so a count becomes ``sum(_n)``; sums, keys and distinct counts are unchanged.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from netmeta.event import FIELDS, META_EXTRA, META_INPUT, META_STREAMS, format_date
from netmeta.query import rollup_plan, top_plan
from netmeta.query.kql import KQLError
from netmeta.query.search import Query, _number, _run, _value_expr
from netmeta.query.sql import compile_where, json_path
from netmeta.store import rollups
from netmeta.store.duckdb import Store

MAX_SIZE = 1000  # buckets of one terms level
MAX_BUCKETS = 2000  # date histogram buckets
_INTERVAL_RE = re.compile(r"^(\d+)(ms|s|m|h|d)$")
_MICROS = {"ms": 1000, "s": 10**6, "m": 60 * 10**6, "h": 3600 * 10**6, "d": 86400 * 10**6}
# "auto" picks the first of these giving at most ~120 buckets (Kibana's auto interval idea);
# microseconds, from 1 ms (a range of a few seconds, e.g. one connection) to a week
_STEPS = [1000 * ms for ms in (1, 2, 5, 10, 20, 50, 100, 200, 500)] + [
    10**6 * s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 3 * 3600,
                        6 * 3600, 12 * 3600, 86400, 7 * 86400)]
_METRICS = ("count", "sum", "avg", "min", "max", "cardinality", "ratio")


class AggError(ValueError):
    """A spec that cannot be compiled; worded for the user."""


@dataclass(slots=True)
class _Sql:
    """SQL text with its ``?`` parameters, kept together so that order never slips."""

    text: str = ""
    params: list[Any] = field(default_factory=list)

    def add(self, text: str, params: list[Any] | tuple[Any, ...] = ()) -> _Sql:
        self.text += text
        self.params += list(params)
        return self


def _field_name(name: Any) -> str:
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_@.\-]+", name):
        raise AggError(f"invalid field name {name!r}")
    return name


# meta columns one may group by: the input an event came from, the streams it matched
_META_KEYS = {META_INPUT: (f'"{META_INPUT}"', False), META_STREAMS: (f'"{META_STREAMS}"', True)}


def _one_key(name: str) -> tuple[str, list[Any], bool]:
    if name in _META_KEYS:
        expr, is_list = _META_KEYS[name]
        return expr, [], is_list
    return _value_expr(_field_name(name))


def _key_parts(names: list[Any]) -> list[tuple[str, list[Any]]]:
    """The scalar expressions (and params) of a composite terms key's fields."""
    if not names or len(names) > 4:
        raise AggError("a composite terms key takes 1 to 4 fields")
    parts = []
    for n in names:
        expr, p, is_list = _one_key(_field_name(n))
        if is_list:  # one value of a list field: its first (composite keys are scalars)
            expr = f"{expr}[1]"
        parts.append((expr, p))
    return parts


def _key_expr(names: Any) -> tuple[str, list[Any], bool]:
    """Grouping expression of a terms key (text), its params and whether it is a list."""
    if isinstance(names, list):
        parts = _key_parts(names)
        return (f"[{', '.join(e for e, _ in parts)}]", [v for _, p in parts for v in p],
                False)
    return _one_key(_field_name(names))


def _scalar_expr(name: str, numeric: bool) -> tuple[str, list[Any]]:
    """A field as one value per event: its typed column, or its JSON text (as a number when
    ``numeric``). Dates stay dates (min/max of a certificate's not_after)."""
    f = FIELDS.get(name)
    if f is not None:
        if f.is_list:
            raise AggError(f"{name} holds a list; use a terms aggregation on it")
        if numeric and f.type not in ("long", "double", "date"):
            raise AggError(f"{name} is {f.type}: a numeric field is needed")
        return '"' + name + '"', []
    text = f'json_extract_string("{META_EXTRA}", ?)'
    return (f"TRY_CAST({text} AS DOUBLE)" if numeric else text), [json_path(name)]


def _metric(spec: Any, count: str = "count(*)") -> tuple[str, list[Any]]:
    """SQL of a metric; ``count``: how a row counts (a rollup row stands for ``_n``)."""
    spec = spec or {"type": "count"}
    if not isinstance(spec, dict):
        raise AggError("metric must be an object like {\"type\": \"sum\", \"field\": ...}")
    kind = spec.get("type", "count")
    if kind not in _METRICS:
        raise AggError(f"metric type {kind!r}: one of {', '.join(_METRICS)}")
    if kind == "count":
        return count, []
    if kind == "ratio":
        where, params = compile_where(str(spec.get("q", "")))
        return f"avg(CASE WHEN {where} THEN 1.0 ELSE 0.0 END)", params
    name = _field_name(spec.get("field"))
    if kind == "cardinality":
        expr, params = _scalar_expr(name, numeric=False)
        return f"approx_count_distinct({expr})", params
    expr, params = _scalar_expr(name, numeric=True)
    if kind in ("sum", "avg"):
        f = FIELDS.get(name)
        if f is not None and f.type == "date":
            raise AggError(f"{kind} of the date field {name}: use min or max")
    return f"{kind}({expr})", params


def _size(spec: dict[str, Any], default: int = 10) -> int:
    try:
        n = int(spec.get("size", default))
    except (TypeError, ValueError):
        raise AggError("size must be a number") from None
    if not 1 <= n <= MAX_SIZE:
        raise AggError(f"size must be 1 to {MAX_SIZE}")
    return n


def _order(spec: dict[str, Any]) -> str:
    order = spec.get("order", "desc")
    if order not in ("desc", "asc"):
        raise AggError("order is desc or asc")
    return "DESC" if order == "desc" else "ASC"


def interval_micros(spec: dict[str, Any], start: dt.datetime, end: dt.datetime) -> int:
    """Bucket width of a date histogram over [start, end], in microseconds (the stored
    precision of @timestamp)."""
    text = str(spec.get("interval", "auto"))
    span = max((end - start) / dt.timedelta(microseconds=1), 1.0)
    if text == "auto":
        try:
            target = float(spec.get("buckets", 120))
        except (TypeError, ValueError):
            raise AggError("buckets must be a number") from None
        return next((s for s in _STEPS if span / s <= target), _STEPS[-1])
    m = _INTERVAL_RE.match(text)
    if not m:
        raise AggError(f"interval {text!r}: auto, or a number and ms/s/m/h/d (5m, 1h)")
    micros = int(m.group(1)) * _MICROS[m.group(2)]
    if micros <= 0 or span / micros > MAX_BUCKETS:
        raise AggError(f"interval {text} gives more than {MAX_BUCKETS} buckets")
    return micros


def interval_seconds(spec: dict[str, Any], start: dt.datetime, end: dt.datetime
                     ) -> int | float:
    """The same in seconds: a whole number from 1 s up, a fraction below."""
    micros = interval_micros(spec, start, end)
    return micros // 10**6 if micros % 10**6 == 0 else micros / 10**6


def _time_range(store: Store, q: Query) -> tuple[dt.datetime, dt.datetime]:
    """The range a histogram spans: the query's, its open ends taken from the catalog."""
    lo, hi = q.start, q.end
    if lo is None or hi is None:
        row = store.cursor().execute(
            "SELECT min(min_ts), max(max_ts) FROM event_files WHERE rows > 0").fetchone()
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        lo = lo or (row[0] if row and row[0] else now - dt.timedelta(hours=1))
        hi = hi or now
    return lo, hi


def _json(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return format_date(v)
    if isinstance(v, list):
        return [_json(x) for x in v]
    return _number(v) if not isinstance(v, str | bool) else v


def aggregate(store: Store, q: Query, spec: Any) -> dict[str, Any]:
    """Run ``spec`` over the events of ``q``; see the module doc for shapes."""
    if not isinstance(spec, dict):
        raise AggError("aggs must be an object with a type")
    kind = spec.get("type")
    sub = spec.get("sub")
    if sub is not None:
        if not isinstance(sub, dict) or sub.get("sub") is not None:
            raise AggError("sub takes one aggregation and does not nest further")
        if sub.get("type") not in ("terms", "date_histogram"):
            raise AggError("sub is a terms or date_histogram aggregation")
    if kind not in ("metric", "terms", "date_histogram"):
        raise AggError(f"aggregation type {kind!r}: terms, date_histogram or metric")
    if kind == "terms" and store.rollups and (top := top_plan.list_for(spec, q.kql)):
        rows = top_plan.top(store, q, top, _size(spec))
        if rows is not None:
            return {"buckets": [{"key": _json(k), "value": _json(m)} for k, m in rows]}
    if kind != "date_histogram":
        src = _source(store, q, spec, None)
        try:
            return _metric_only(src, q, spec) if kind == "metric" else _terms(src, q, spec)
        finally:
            src.close()
    lo, hi = _time_range(store, q)
    step = interval_micros(spec, lo, hi)
    src = _source(store, q, spec, step)
    try:
        return _histogram(src, q, spec, lo, hi, step)
    finally:
        src.close()


@dataclass(frozen=True, slots=True)
class _Source:
    """Where a panel's query reads: the raw events, or a rollup relation (then a row
    counts as its ``_n`` events)."""

    store: Store
    rollup: str | None = None
    con: duckdb.DuckDBPyConnection | None = None  # the rollup's: in the files' transaction

    @property
    def count(self) -> str:
        # BIGINT as count(*) is (a sum would be a HUGEINT)
        return (f'CAST(sum("{rollups.COUNT}") AS BIGINT)' if self.rollup is not None
                else "count(*)")

    def run(self, q: Query, build: Any) -> pa.Table | None:
        if self.rollup is None:
            return _run(self.store, q, build)
        assert self.con is not None
        sql, params = build(self.rollup)
        try:
            return self.con.execute(sql, params).to_arrow_table()
        except duckdb.IOException:  # a listed file merged or dropped meanwhile
            return _run(self.store, q, build)

    def close(self) -> None:
        if self.con is not None:
            self.con.execute("ROLLBACK")  # read only
            self.con.close()


def _source(store: Store, q: Query, spec: dict[str, Any], step: int | None) -> _Source:
    """A rollup when it answers ``spec`` exactly (query/rollup_plan.py), else the events."""
    fields: set[str] = set()
    sums: set[str] = set()
    for level in (spec, spec.get("sub") or {}):
        fields.update(rollup_plan.names(level.get("field")))
        metric = level.get("metric") or {"type": "count"}
        kind = metric.get("type", "count") if isinstance(metric, dict) else None
        if kind == "sum":
            sums.add(str(metric.get("field")))
        elif kind == "cardinality":
            fields.add(str(metric.get("field")))
        elif kind != "count":
            return _Source(store)
    if not store.rollups:
        return _Source(store)
    con = store.cursor()
    con.execute("BEGIN TRANSACTION")  # the files listed and the cube read: one snapshot
    try:
        rel = rollup_plan.relation(store, q, rollup_plan.Need(frozenset(fields),
                                                              frozenset(sums), step), con)
    except BaseException:
        con.execute("ROLLBACK")
        con.close()
        raise
    if rel is None:
        con.execute("ROLLBACK")
        con.close()
        return _Source(store)
    return _Source(store, rel, con)


def _metric_only(src: _Source, q: Query, spec: dict[str, Any]) -> dict[str, Any]:
    where, wparams = q.where()
    metric, mparams = _metric(spec.get("metric"), src.count)

    def build(rel: str) -> tuple[str, list[Any]]:
        s = _Sql().add(f"SELECT {metric} AS m", mparams).add(f" FROM ({rel}) WHERE ")
        s.add(where, wparams)
        return s.text, s.params

    table = src.run(q, build)
    value = table.column("m")[0].as_py() if table is not None else None
    if value is None and (spec.get("metric") or {}).get("type", "count") == "count":
        value = 0
    return {"value": _json(value)}


@dataclass(slots=True)
class _Level:
    """One grouping level: its key expression (text SQL + params) and how to rank it."""

    expr: str
    params: list[Any]
    is_list: bool
    size: int
    order: str
    metric: str
    mparams: list[Any]
    parts: list[tuple[str, list[Any]]]  # a composite key's fields ([] for one field)


def _terms_level(spec: dict[str, Any], count: str = "count(*)") -> _Level:
    if "field" not in spec:
        raise AggError("a terms aggregation needs a field")
    expr, params, is_list = _key_expr(spec["field"])
    metric, mparams = _metric(spec.get("metric"), count)
    parts = _key_parts(spec["field"]) if isinstance(spec["field"], list) else []
    return _Level(expr, params, is_list, _size(spec), _order(spec), metric, mparams, parts)


def _composite_top(rel: str, where: str, wparams: list[Any], top: _Level) -> _Sql:
    """The top composite keys, grouped by their fields as columns and made lists only at
    the end: hashing a list per event costs twice what hashing its fields does (the
    Conversations panel over 10 M flows: 2.3 s against 1.1 s). Ties rank as the lists."""
    n = len(top.parts)
    s = _Sql().add("WITH base AS (SELECT ")
    for i, (expr, params) in enumerate(top.parts):
        s.add(f"{expr} AS k0_{i}, ", params)
    s.add(f"* FROM ({rel}) WHERE ").add(where, wparams)
    cols = ", ".join(f"k0_{i}" for i in range(n))
    ties = ", ".join(f"CAST(k0_{i} AS VARCHAR)" for i in range(n))
    s.add(f"), top AS (SELECT {cols}, ").add(top.metric, top.mparams)
    s.add(f" AS m FROM base GROUP BY {cols} ORDER BY m {top.order} NULLS LAST, {ties} "
          "LIMIT ?)", [top.size])
    s.add(f" SELECT [{cols}] AS k0, m, NULL AS k1, NULL AS m1 FROM top ORDER BY m "
          f"{top.order} NULLS LAST, k0")
    return s


def _base(rel: str, where: str, wparams: list[Any], cols: list[tuple[str, str, list[Any],
          bool]]) -> _Sql:
    """``SELECT <keys>, * FROM (rel) WHERE ...``: the keys as columns k0, k1..., lists
    unnested (an event counts once per value, as in Elasticsearch's terms on arrays)."""
    s = _Sql().add("SELECT ")
    for alias, expr, params, is_list in cols:
        s.add(f"{'unnest(' + expr + ')' if is_list else expr} AS {alias}, ", params)
    s.add(f"* FROM ({rel}) WHERE ").add(where, wparams)
    return s


def _terms(src: _Source, q: Query, spec: dict[str, Any]) -> dict[str, Any]:
    where, wparams = q.where()
    top = _terms_level(spec, src.count)
    sub = spec.get("sub")
    if sub is not None and sub.get("type") == "date_histogram":
        raise AggError("a date histogram inside terms is not supported; put the terms in "
                       "the histogram's sub")
    inner = _terms_level(sub, src.count) if sub is not None else None

    def build(rel: str) -> tuple[str, list[Any]]:
        if top.parts and inner is None:
            c = _composite_top(rel, where, wparams, top)
            return c.text, c.params
        cols = [("k0", top.expr, top.params, top.is_list)]
        if inner is not None:
            cols.append(("k1", inner.expr, inner.params, inner.is_list))
        s = _Sql().add("WITH base AS (")
        b = _base(rel, where, wparams, cols)
        s.add(b.text, b.params).add("), top AS (SELECT k0, ")
        s.add(top.metric, top.mparams).add(" AS m FROM base WHERE k0 IS NOT NULL GROUP BY k0 "
                                           f"ORDER BY m {top.order} NULLS LAST, k0 LIMIT ?)",
                                           [top.size])
        if inner is None:
            s.add(" SELECT k0, m, NULL AS k1, NULL AS m1 FROM top ORDER BY m "
                  f"{top.order} NULLS LAST, k0")
            return s.text, s.params
        s.add(", sub AS (SELECT k0, k1, ").add(inner.metric, inner.mparams)
        s.add(" AS m1, row_number() OVER (PARTITION BY k0 ORDER BY ")
        s.add(inner.metric, inner.mparams)
        s.add(f" {inner.order} NULLS LAST, k1) AS rn FROM base WHERE k1 IS NOT NULL AND k0 IN "
              "(SELECT k0 FROM top) GROUP BY k0, k1) ")
        s.add("SELECT t.k0, t.m, s.k1, s.m1 FROM top t LEFT JOIN sub s ON s.k0 = t.k0 AND "
              f"s.rn <= ? ORDER BY t.m {top.order} NULLS LAST, t.k0, s.rn", [inner.size])
        return s.text, s.params

    table = src.run(q, build)
    buckets: list[dict[str, Any]] = []
    if table is not None:
        index: dict[Any, dict[str, Any]] = {}
        for k0, m, k1, m1 in zip(*(table.column(c).to_pylist()
                                   for c in ("k0", "m", "k1", "m1")), strict=True):
            key = tuple(k0) if isinstance(k0, list) else k0
            b = index.get(key)
            if b is None:
                b = index[key] = {"key": _json(k0), "value": _json(m)}
                if inner is not None:
                    b["sub"] = []
                buckets.append(b)
            if k1 is not None:
                b["sub"].append({"key": _json(k1), "value": _json(m1)})
    return {"buckets": buckets}


def _histogram(src: _Source, q: Query, spec: dict[str, Any], lo: dt.datetime,
               hi: dt.datetime, step: int) -> dict[str, Any]:
    where, wparams = q.where()
    metric, mparams = _metric(spec.get("metric"), src.count)
    sub = spec.get("sub")
    split = _terms_level(sub, src.count) if sub is not None else None
    bucket = f'time_bucket(to_microseconds({int(step)}::BIGINT), "@timestamp")'

    def build(rel: str) -> tuple[str, list[Any]]:
        cols = [("k1", split.expr, split.params, split.is_list)] if split else []
        s = _Sql().add("WITH base AS (")
        b = _base(rel, where, wparams, cols)
        s.add(b.text, b.params).add(")")
        if split is None:
            s.add(f" SELECT {bucket} AS t, NULL AS k1, ").add(metric, mparams)
            s.add(" AS m FROM base GROUP BY t ORDER BY t")
            return s.text, s.params
        # the series are the top values over the whole range, then counted per bucket
        s.add(", top AS (SELECT k1 FROM base WHERE k1 IS NOT NULL GROUP BY k1 ORDER BY ")
        s.add(split.metric, split.mparams)
        s.add(f" {split.order} NULLS LAST, k1 LIMIT ?)", [split.size])
        s.add(f" SELECT {bucket} AS t, k1, ").add(metric, mparams)
        s.add(" AS m FROM base WHERE k1 IN (SELECT k1 FROM top) GROUP BY t, k1 ORDER BY t, k1")
        return s.text, s.params

    table = src.run(q, build)
    buckets: list[dict[str, Any]] = []
    if table is not None:
        index: dict[dt.datetime, dict[str, Any]] = {}
        for t, k1, m in zip(*(table.column(c).to_pylist() for c in ("t", "k1", "m")),
                            strict=True):
            b = index.get(t)
            if b is None:
                b = index[t] = {"key": format_date(t), "value": 0 if split else _json(m)}
                if split is not None:
                    b["sub"] = []
                buckets.append(b)
            if split is not None:
                b["sub"].append({"key": _json(k1), "value": _json(m)})
                if isinstance(m, int | float):
                    b["value"] += m
    seconds = step // 10**6 if step % 10**6 == 0 else step / 10**6
    # keys are bucket starts; from/to the range asked, which a chart's axis should span
    # (not only the buckets that hold events)
    return {"interval": seconds, "interval_ms": step / 1000, "from": format_date(lo),
            "to": format_date(hi), "buckets": buckets}


def check_kql(text: str) -> None:
    """Raise KQLError early (before any file is listed) for a query that does not compile."""
    compile_where(text)


__all__ = ["AggError", "KQLError", "aggregate", "interval_micros", "interval_seconds"]
