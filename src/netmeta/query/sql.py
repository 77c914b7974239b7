"""Compile a KQL query into a DuckDB WHERE expression over a stored event table.

Safety: no value from the query is ever pasted into SQL text. Values and JSON paths are
``?`` parameters; column names come from the schema (``fields``) and are quoted.

Null handling: every leaf is wrapped so it is TRUE or FALSE, never NULL. That gives
Kibana's semantics for ``not``: ``not destination.port:53`` also matches events that have
no ``destination.port`` at all.

SQL shapes (``E`` is a lambda variable holding one element):

- scalar column            ``COALESCE(<test on "col">, FALSE)``
- list column (``[]``)     ``COALESCE(len(list_filter("col", lambda E: <test on E>)) > 0, FALSE)``
- IP equality/CIDR/range   the same shapes on the ``"<field>#b"`` 16-byte key column
- field not in the schema  elements of ``json_extract(_extra, ?)`` (an array's items, else
  the value itself) filtered with ``<test on json_extract_string(E, '$')>``
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from netmeta.event import (
    FIELDS,
    META_EXTRA,
    META_ID,
    META_INPUT,
    META_STREAMS,
    Field,
    cidr_key_range,
    ip_key,
)
from netmeta.query.kql import (
    And,
    Exists,
    KQLError,
    Match,
    MatchAll,
    Node,
    Not,
    Or,
    Range,
    Value,
    parse,
)

Frag = tuple[str, tuple[Any, ...]]

# Meta columns a user may filter on (e.g. ``_input:goflow2``) though not in ecs_fields.yml.
_META_FIELDS = {
    META_ID: Field(META_ID, "keyword", False),
    META_INPUT: Field(META_INPUT, "keyword", False),
    META_STREAMS: Field(META_STREAMS, "keyword", True),
}
# Where a bare term (no field) is searched, besides the text of ``_extra``.
_TEXT_FIELDS = ("event.original", "message")
_ELEM = "__e"  # lambda variable; no stored column has this name
_LIKE_ESCAPE = "\\"
_NUMBER_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_INT64 = (-(2**63), 2**63 - 1)
_EPOCH = dt.datetime(1970, 1, 1)
_DATE_RE = re.compile(
    r"(?P<y>\d{4})(?:-(?P<mo>\d{2})(?:-(?P<d>\d{2})"
    r"(?:[T ](?P<h>\d{2})(?::(?P<mi>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<f>\d+))?)?)?)?)?)?"
    r"(?P<tz>Z|[+-]\d{2}(?::?\d{2})?)?"
)
_NOW_RE = re.compile(r"now(?:(?P<sign>[+-])(?P<n>\d{1,9})(?P<unit>[smhdw]))?")
_NOW_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def compile_where(
    query: str | Node | None, fields: Mapping[str, Field] = FIELDS
) -> tuple[str, list[Any]]:
    """DuckDB boolean SQL for ``query`` and its positional parameters.

    Raises KQLError for a query that does not parse or does not fit the field types.
    """
    node = parse(query) if isinstance(query, str) else query
    if node is None:
        return "TRUE", []
    sql, params = _node(node, fields)
    return sql, list(params)


# ---------------------------------------------------------------- boolean structure


def _node(node: Node, fields: Mapping[str, Field]) -> Frag:
    match node:
        case Or(items):
            return _join(" OR ", [_node(i, fields) for i in items])
        case And(items):
            return _join(" AND ", [_node(i, fields) for i in items])
        case Not(item):
            sql, params = _node(item, fields)
            return f"(NOT {sql})", params
        case MatchAll():
            return "TRUE", ()
        case Match(None, value):
            return _bare_term(value, fields)
        case Match(str(name), value):
            return _leaf(name, fields, lambda f: _match_pred(name, f, value), value.pos)
        case Exists(name, pos):
            return _leaf(name, fields, lambda f: _Pred(lambda x: f"{x} IS NOT NULL", ()), pos)
        case Range(name, op, value):
            return _leaf(name, fields, lambda f: _range_pred(name, f, op, value), value.pos)
    raise TypeError(f"not a KQL node: {node!r}")


def _join(sep: str, frags: list[Frag]) -> Frag:
    sql = "(" + sep.join(s for s, _ in frags) + ")"
    return sql, tuple(p for _, ps in frags for p in ps)


# ---------------------------------------------------------------- leaves


@dataclass(frozen=True, slots=True)
class _Pred:
    """A test on one element; ``test`` maps the element's SQL expression to a condition."""

    test: Callable[[str], str]
    params: tuple[Any, ...]
    on_key: bool = False  # applies to the IP key column "<field>#b", not the text column


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lookup(name: str, fields: Mapping[str, Field]) -> Field | None:
    """The typed column for ``name``; None means the field lives in ``_extra``."""
    return fields.get(name) or _META_FIELDS.get(name)


def _leaf(
    name: str, fields: Mapping[str, Field], pred_for: Callable[[Field | None], _Pred], pos: int
) -> Frag:
    try:
        field = _lookup(name, fields)
        pred = pred_for(field)
    except _BadValue as e:
        raise KQLError(str(e), pos) from None
    if field is None:
        return _json_any(name, pred)
    column = field.key_column if pred.on_key and field.key_column else field.name
    return _any_element(_ident(column), field.is_list, pred)


def _any_element(column: str, is_list: bool, pred: _Pred) -> Frag:
    if not is_list:
        return f"COALESCE({pred.test(column)}, FALSE)", pred.params
    test = pred.test(_ELEM)
    return (
        f"COALESCE(len(list_filter({column}, lambda {_ELEM}: {test})) > 0, FALSE)",
        pred.params,
    )


def json_path(name: str) -> str:
    """JSONPath of a dotted field inside ``_extra``; every segment quoted (may be "@x-1")."""
    return "$" + "".join(f'."{seg}"' for seg in name.split("."))


def _json_any(name: str, pred: _Pred) -> Frag:
    """Any element of the JSON value (an array's items, else the value) passes ``pred``.

    TRY_CAST to JSON[] is NULL for a non-array, then the value is taken as a one-item list.
    Elements are compared by their text form (strings unquoted, numbers as written).
    """
    value = f"json_extract({_ident(META_EXTRA)}, ?)"
    elems = f"COALESCE(TRY_CAST({value} AS JSON[]), [{value}])"
    test = pred.test(f"json_extract_string({_ELEM}, '$')")
    path = json_path(name)
    return (
        f"COALESCE(len(list_filter({elems}, lambda {_ELEM}: {test})) > 0, FALSE)",
        (path, path, *pred.params),
    )


def _bare_term(value: Value, fields: Mapping[str, Field]) -> Frag:
    """Case-insensitive substring (or wildcard) search in the free-text fields and _extra."""
    pattern = "%" + _like_pattern(value.pieces) + "%"
    columns = [
        _ident(n) for n in _TEXT_FIELDS
        if (f := fields.get(n)) is not None and f.type == "keyword" and not f.is_list
    ]
    columns.append(f"CAST({_ident(META_EXTRA)} AS VARCHAR)")
    tests = [f"{c} ILIKE ? ESCAPE '{_LIKE_ESCAPE}'" for c in columns]
    return f"COALESCE({' OR '.join(tests)}, FALSE)", (pattern,) * len(columns)


# ---------------------------------------------------------------- per-type predicates


class _BadValue(Exception):
    """A value that does not fit its field; turned into KQLError at the value's position."""


def _match_pred(name: str, field: Field | None, value: Value) -> _Pred:
    if field is None:
        return _json_match(value)
    if field.type == "keyword":
        return _text_match(value)
    if field.type == "ip":
        return _ip_match(name, value)
    if field.type in ("long", "double"):
        num = _number(name, value)
        return _Pred(lambda x: f"{x} = ?", (num,))
    if field.type == "boolean":
        flag = _boolean(name, value)
        return _Pred(lambda x: f"{x} = ?", (flag,))
    if field.type == "date":
        lo, hi = _date_bounds(name, value)
        return _Pred(lambda x: f"({x} >= ? AND {x} < ?)", (lo, hi))
    raise _BadValue(f"{name}: unsupported field type {field.type!r}")


def _range_pred(name: str, field: Field | None, op: str, value: Value) -> _Pred:
    if field is None:
        return _json_range(op, value)
    if field.type == "keyword":
        return _Pred(lambda x: f"{x} {op} ?", (value.text,))
    if field.type == "ip":
        key = ip_key(value.text)
        if key is None:
            raise _BadValue(f"{name} expects an IP address, got {value.text!r}")
        return _Pred(lambda x: f"{x} {op} ?", (key,), on_key=True)
    if field.type in ("long", "double"):
        return _Pred(lambda x: f"{x} {op} ?", (_number(name, value),))
    if field.type == "date":
        return _date_range(op, _date_bounds(name, value))
    raise _BadValue(f"{name}: range comparison is not supported on {field.type} fields")


def _text_match(value: Value) -> _Pred:
    if value.has_wildcard:
        pattern = _like_pattern(value.pieces)
        return _Pred(lambda x: f"{x} LIKE ? ESCAPE '{_LIKE_ESCAPE}'", (pattern,))
    return _Pred(lambda x: f"{x} = ?", (value.text,))


def _json_match(value: Value) -> _Pred:
    """Text equality; a numeric value also matches numerically (70 finds 70.0)."""
    num = None if value.has_wildcard else _parse_number(value.text)
    if num is None:
        return _text_match(value)
    return _Pred(
        lambda x: f"({x} = ? OR TRY_CAST({x} AS DOUBLE) = ?)", (value.text, float(num))
    )


def _json_range(op: str, value: Value) -> _Pred:
    num = _parse_number(value.text)
    if num is None:
        return _Pred(lambda x: f"{x} {op} ?", (value.text,))
    return _Pred(lambda x: f"TRY_CAST({x} AS DOUBLE) {op} ?", (float(num),))


def _ip_match(name: str, value: Value) -> _Pred:
    if value.has_wildcard:
        # Wildcards are a text pattern (10.1.*), so they run on the text column.
        return _text_match(value)
    text = value.text.strip()
    if "/" in text:
        try:
            lo, hi = cidr_key_range(text)
        except ValueError:
            raise _BadValue(f"{name} expects an IP address or CIDR, got {text!r}") from None
        return _Pred(lambda x: f"{x} BETWEEN ? AND ?", (lo, hi), on_key=True)
    key = ip_key(text)
    if key is None:
        raise _BadValue(f"{name} expects an IP address or CIDR, got {text!r}")
    return _Pred(lambda x: f"{x} = ?", (key,), on_key=True)


def _like_pattern(pieces: tuple[str, ...]) -> str:
    """LIKE pattern: literal pieces escaped, wildcards between them become ``%``."""
    def esc(s: str) -> str:
        return (
            s.replace(_LIKE_ESCAPE, _LIKE_ESCAPE * 2)
            .replace("%", _LIKE_ESCAPE + "%")
            .replace("_", _LIKE_ESCAPE + "_")
        )

    return "%".join(esc(p) for p in pieces)


# ---------------------------------------------------------------- value parsing


def _parse_number(text: str) -> int | float | None:
    text = text.strip()
    if not _NUMBER_RE.fullmatch(text):
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        n = int(text)
        # Beyond BIGINT the driver cannot bind an int; a double compares correctly anyway.
        return n if _INT64[0] <= n <= _INT64[1] else float(n)
    return float(text)


def _number(name: str, value: Value) -> int | float:
    num = None if value.has_wildcard else _parse_number(value.text)
    if num is None:
        raise _BadValue(f"{name} expects a number, got {value.text!r}")
    return num


def _boolean(name: str, value: Value) -> bool:
    text = value.text.strip().lower()
    if value.has_wildcard or text not in ("true", "false"):
        raise _BadValue(f"{name} expects true or false, got {value.text!r}")
    return text == "true"


def _date_range(op: str, bounds: tuple[dt.datetime, dt.datetime]) -> _Pred:
    """Elasticsearch rounding: a date covers its whole precision (2024-07-31 is a day).

    So ``> day`` starts after the day, ``<= day`` includes all of it.
    """
    lo, hi = bounds
    sql_op, bound = {">": (">=", hi), ">=": (">=", lo), "<": ("<", lo), "<=": ("<", hi)}[op]
    return _Pred(lambda x: f"{x} {sql_op} ?", (bound,))


def _date_bounds(name: str, value: Value) -> tuple[dt.datetime, dt.datetime]:
    """[lo, hi) in naive UTC covered by a date value; raises _BadValue."""
    text = value.text.strip()
    try:
        bounds = None if value.has_wildcard else _parse_date_bounds(text)
    except (ValueError, OverflowError):
        bounds = None
    if bounds is None:
        raise _BadValue(f"{name} expects a date (2024-07-31T12:00:00Z, now-15m), "
                          f"got {value.text!r}")
    return bounds


def _parse_date_bounds(text: str) -> tuple[dt.datetime, dt.datetime] | None:
    if m := _NOW_RE.fullmatch(text):
        now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        if m["sign"]:
            delta = dt.timedelta(**{_NOW_UNITS[m["unit"]]: int(m["n"])})
            now = now + delta if m["sign"] == "+" else now - delta
        return now, now + dt.timedelta(microseconds=1)
    if re.fullmatch(r"-?\d+", text) and len(text) != 4:
        # Like Elasticsearch's epoch_millis; four digits are a year.
        lo = _EPOCH + dt.timedelta(milliseconds=int(text))
        return lo, lo + dt.timedelta(milliseconds=1)
    m = _DATE_RE.fullmatch(text)
    return _iso_bounds(m) if m else None


def _iso_bounds(m: re.Match[str]) -> tuple[dt.datetime, dt.datetime]:
    year = int(m["y"])
    month, day = int(m["mo"] or 1), int(m["d"] or 1)
    hour, minute, second = int(m["h"] or 0), int(m["mi"] or 0), int(m["s"] or 0)
    frac = m["f"] or ""
    micro = int(frac[:6].ljust(6, "0")) if frac else 0
    lo = dt.datetime(year, month, day, hour, minute, second, micro)
    if frac:
        hi = lo + dt.timedelta(microseconds=10 ** max(0, 6 - len(frac)))
    elif m["s"]:
        hi = lo + dt.timedelta(seconds=1)
    elif m["mi"]:
        hi = lo + dt.timedelta(minutes=1)
    elif m["h"]:
        hi = lo + dt.timedelta(hours=1)
    elif m["d"]:
        hi = lo + dt.timedelta(days=1)
    elif m["mo"]:
        hi = dt.datetime(year + month // 12, month % 12 + 1, 1)
    else:
        hi = dt.datetime(year + 1, 1, 1)
    offset = _tz_offset(m["tz"])
    return lo - offset, hi - offset


def _tz_offset(tz: str | None) -> dt.timedelta:
    """Offset of ``Z`` / ``+02:00`` / ``-0530``; a date without zone is UTC."""
    if not tz or tz == "Z":
        return dt.timedelta(0)
    digits = tz[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(tz)
    delta = dt.timedelta(hours=hours, minutes=minutes)
    return delta if tz[0] == "+" else -delta
