"""The fields present in stored events, with their types: what the KQL bar completes.

Typed columns are counted and the JSON keys of ``_extra`` listed by DuckDB (``json_tree``)
over a sample of the newest events of the range: autocompletion needs the names in use,
not exact counts, and a sample keeps this cheap at any store size.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from netmeta.event import FIELDS, META_EXTRA
from netmeta.query.search import Query, _run
from netmeta.store.duckdb import Store

SAMPLE = 20_000  # newest rows looked at
_JSON_TYPES = {"UBIGINT": "long", "BIGINT": "long", "DOUBLE": "double", "VARCHAR": "keyword",
               "BOOLEAN": "boolean", "NULL": "keyword", "ARRAY": "keyword"}
_cache: dict[tuple[Any, ...], tuple[float, list[dict[str, Any]]]] = {}
_lock = threading.Lock()
TTL = 30.0


def fields(store: Store, q: Query) -> list[dict[str, Any]]:
    key = (id(store), q.start and q.start.replace(second=0, microsecond=0),
           q.end and q.end.replace(second=0, microsecond=0), q.index_sets)
    with _lock:
        hit = _cache.get(key)
    if hit is not None and time.monotonic() - hit[0] < TTL:
        return hit[1]
    out = _compute(store, q)
    with _lock:
        _cache[key] = (time.monotonic(), out)
    return out


def _compute(store: Store, q: Query) -> list[dict[str, Any]]:
    typed = [f for f in FIELDS.values()]
    counts = ", ".join(f'count("{f.name}") AS "{i}"' for i, f in enumerate(typed))
    where, params = q.where()
    sample = f"SELECT * FROM ({{rel}}) WHERE {where} LIMIT {SAMPLE}"
    table = _run(store, q, lambda rel: (f"SELECT {counts} FROM ({sample.format(rel=rel)})",
                                        params))
    out: list[dict[str, Any]] = []
    if table is not None:
        row = table.to_pylist()[0]
        for i, f in enumerate(typed):
            if row[str(i)]:
                out.append({"name": f.name, "type": f.type, "list": f.is_list,
                            "typed": True, "count": int(row[str(i)])})
    # keys below _extra: JSON paths without array indexes, leaves only
    extra = _run(store, q, lambda rel: (
        "SELECT regexp_replace(j.fullkey, '\\[[0-9]+\\]', '', 'g') AS k, "
        "any_value(j.type) AS t, count(*) AS n "
        f"FROM (SELECT \"{META_EXTRA}\" AS x FROM ({rel}) WHERE {where} AND "
        f"\"{META_EXTRA}\" IS NOT NULL LIMIT {SAMPLE}) s, json_tree(s.x) j "
        "WHERE j.type NOT IN ('OBJECT', 'ARRAY') GROUP BY k ORDER BY k", params))
    seen = {f["name"] for f in out}
    if extra is not None:
        for k, t, n in zip(*(extra.column(c).to_pylist() for c in ("k", "t", "n")),
                           strict=True):
            name = _dotted(k)
            if name and name not in seen:
                seen.add(name)
                out.append({"name": name, "type": _JSON_TYPES.get(t, "keyword"),
                            "list": False, "typed": False, "count": int(n)})
    out.sort(key=lambda f: f["name"])
    return out


def _dotted(path: str) -> str:
    """``$.gigamon.ami."app_name"`` → ``gigamon.ami.app_name``."""
    return ".".join(p.strip('"') for p in path.removeprefix("$.").split(".")) \
        if path.startswith("$.") else ""
