"""Sorted searches with cursor paging (``search_after``, as Elasticsearch does it).

A page is ``ORDER BY <sort field>, _id LIMIT n``; the cursor is the last hit's sort value
and id, so the next page starts strictly after it, whatever was stored meanwhile, and no
OFFSET ever makes the database skip rows it has already sorted.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from typing import Any

import orjson

from netmeta.event import FIELDS, META_ID, META_INPUT, row_to_document
from netmeta.query.search import Query, _run, pick

MAX_LIMIT = 10_000


class PagingError(ValueError):
    pass


def _sort_field(sort: str) -> tuple[str, str]:
    """``field`` or ``field:asc|desc`` (default desc) → (column, direction)."""
    name, _, direction = (sort or "@timestamp").partition(":")
    direction = (direction or "desc").lower()
    if direction not in ("asc", "desc"):
        raise PagingError(f"sort {sort!r}: the direction is asc or desc")
    f = FIELDS.get(name)
    if f is None or f.is_list:
        raise PagingError(f"sort {name!r}: sorting takes a typed single-valued field "
                          "(see /api/fields)")
    return name, direction.upper()


def encode_cursor(value: Any, event_id: str | None) -> str:
    v = {"t": value.isoformat()} if isinstance(value, dt.datetime) else value
    return base64.urlsafe_b64encode(orjson.dumps([v, event_id or ""])).decode().rstrip("=")


def decode_cursor(text: str, column: str) -> tuple[Any, str]:
    try:
        raw = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        value, event_id = raw
        if isinstance(value, dict):
            value = dt.datetime.fromisoformat(value["t"])
    except (ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        raise PagingError("cursor: not one this server handed out") from None
    return value, str(event_id)


def search_page(store: Any, q: Query, limit: int = 100, fields: Sequence[str] = (),
                sort: str = "@timestamp:desc", cursor: str | None = None
                ) -> tuple[list[dict[str, Any]], str | None]:
    """A page of hits (nested ECS documents, with ``_id``) and the cursor of the next page
    (None when this one is the last)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise PagingError(f"limit must be 1 to {MAX_LIMIT}")
    column, direction = _sort_field(sort)
    col = '"' + column + '"'
    rid = f'COALESCE("{META_ID}", \'\')'
    where, params = q.where()
    after, aparams = "", []
    if cursor:
        value, event_id = decode_cursor(cursor, column)
        cmp = "<" if direction == "DESC" else ">"
        if value is None:  # nulls come last: only more nulls follow
            after = f" AND {col} IS NULL AND {rid} {cmp} ?"
            aparams = [event_id]
        else:
            after = (f" AND ({col} {cmp} ? OR ({col} = ? AND {rid} {cmp} ?) OR {col} IS NULL)")
            aparams = [value, value, event_id]
    order = f"{col} {direction} NULLS LAST, {rid} {direction}"
    table = _run(store, q, lambda rel: (
        f"SELECT * FROM ({rel}) WHERE {where}{after} ORDER BY {order} LIMIT ?",
        [*params, *aparams, int(limit) + 1]))
    rows = table.to_pylist() if table is not None else []
    more = len(rows) > limit
    rows = rows[:limit]
    hits = []
    for r in rows:
        doc = row_to_document(r)
        doc = {f: pick(doc, f) for f in fields} if fields else doc
        doc["_id"] = r.get(META_ID)
        doc["_input"] = r.get(META_INPUT)  # which input told it (the pivot shows several)
        hits.append(doc)
    nxt = encode_cursor(rows[-1].get(column), rows[-1].get(META_ID)) if more and rows else None
    return hits, nxt
