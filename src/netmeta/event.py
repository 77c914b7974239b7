"""The event model shared by every stage.

A batch of events is a ``pyarrow.Table``: one typed column per common ECS field present
(names and types from ``ecs_fields.yml``), plus meta columns:

- ``_id``     deterministic event id (a retried input gives the same id)
- ``_input``  the configured input the event came from (``goflow2`` ...)
- ``_extra``  JSON object holding every other field, nested as in the ECS document

IP fields also carry a hidden ``<field>#b`` column: the address as 16 bytes (IPv4 mapped
into ::ffff:0:0/96), so CIDR and range queries are byte-range comparisons in the database.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import yaml

META_ID = "_id"
META_INPUT = "_input"
META_EXTRA = "_extra"
META_STREAMS = "_streams"
IP_KEY_SUFFIX = "#b"

_ARROW = {
    "keyword": pa.string(),
    "long": pa.int64(),
    "double": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.timestamp("us"),
    "ip": pa.string(),
}
_SQL = {
    "keyword": "VARCHAR",
    "long": "BIGINT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "date": "TIMESTAMP",
    "ip": "VARCHAR",
}


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str  # Elasticsearch mapping type: keyword, long, double, boolean, date, ip
    is_list: bool

    @property
    def arrow_type(self) -> pa.DataType:
        t = _ARROW[self.type]
        return pa.list_(t) if self.is_list else t

    @property
    def sql_type(self) -> str:
        t = _SQL[self.type]
        return t + "[]" if self.is_list else t

    @property
    def key_column(self) -> str | None:
        return self.name + IP_KEY_SUFFIX if self.type == "ip" else None


def _load_fields() -> dict[str, Field]:
    text = resources.files("netmeta").joinpath("ecs_fields.yml").read_text()
    out: dict[str, Field] = {}
    for name, spec in yaml.safe_load(text).items():
        is_list = spec.endswith("[]")
        base = spec.removesuffix("[]")
        if base not in _ARROW:
            raise ValueError(f"ecs_fields.yml: {name}: unknown type {spec!r}")
        out[name] = Field(name, base, is_list)
    return out


FIELDS: dict[str, Field] = _load_fields()
META_SCHEMA = pa.schema(
    [(META_ID, pa.string()), (META_INPUT, pa.string()), (META_EXTRA, pa.string())]
)


def storage_columns() -> list[tuple[str, str]]:
    """(column, SQL type) of a stored event table, in a stable order."""
    cols = [("@timestamp", "TIMESTAMP"), (META_ID, "VARCHAR"), (META_INPUT, "VARCHAR"),
            (META_STREAMS, "VARCHAR[]")]
    for f in FIELDS.values():
        if f.name == "@timestamp":
            continue
        cols.append((f.name, f.sql_type))
        if f.key_column:
            cols.append((f.key_column, "BLOB[]" if f.is_list else "BLOB"))
    # VARCHAR, not JSON: DuckDB would parse every document again on insert; the json_*
    # functions read VARCHAR all the same
    cols.append((META_EXTRA, "VARCHAR"))
    return cols


# ---------------------------------------------------------------- IP keys

_V4_PREFIX = b"\x00" * 10 + b"\xff\xff"


@lru_cache(maxsize=1 << 16)
def ip_key(text: str) -> bytes | None:
    """16-byte sortable form of an IP address; None when ``text`` is not an address."""
    try:
        return _V4_PREFIX + socket.inet_pton(socket.AF_INET, text)
    except (OSError, TypeError, ValueError):  # ValueError: an embedded NUL
        pass
    try:
        return ipaddress.IPv6Address(text.split("%", 1)[0]).packed
    except (ValueError, AttributeError):
        return None


def cidr_key_range(cidr: str) -> tuple[bytes, bytes]:
    """Inclusive byte range of the 16-byte keys inside ``cidr`` (raises ValueError)."""
    net = ipaddress.ip_network(cidr, strict=False)
    if net.version == 4:
        lo = _V4_PREFIX + net.network_address.packed
        hi = _V4_PREFIX + net.broadcast_address.packed
    else:
        lo, hi = net.network_address.packed, net.broadcast_address.packed
    return lo, hi


def _key_fast(text: str) -> bytes | None:
    """ip_key without the cache: inet_pton first, several times faster than ipaddress."""
    try:
        return _V4_PREFIX + socket.inet_pton(socket.AF_INET, text)
    except (OSError, ValueError):
        pass
    try:
        return socket.inet_pton(socket.AF_INET6, text)
    except (OSError, ValueError):
        return ip_key(text)  # zone ids ("fe80::1%eth0") and anything unusual


# Several stages need the keys of the same address columns of a batch (the normalizer's
# check, community id, locality, the stored key column): the last few are remembered. An
# entry holds its array, so the buffer addresses that identify it cannot be reused.
_KEY_MEMO: list[tuple[tuple[Any, ...], pa.Array, tuple[np.ndarray, np.ndarray]]] = []
_KEY_MEMO_SIZE = 16


def single_array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One Array; a one-chunk column without a copy (combine_chunks always copies)."""
    if isinstance(col, pa.ChunkedArray):
        return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()
    return col


def _identity(a: pa.Array) -> tuple[Any, ...]:
    return (str(a.type), len(a), a.offset,
            tuple(b.address if b is not None else 0 for b in a.buffers()))


def exporter_ip(address: str) -> str:
    """"192.0.2.1:2055" or "[2001:db8::1]:2055" → the address."""
    host = address.rsplit(":", 1)[0] if address.count(":") == 1 or "]" in address else address
    return host.strip("[]")


def remember_ip_keys(a: pa.Array, rows: np.ndarray, keys: np.ndarray) -> None:
    """What :func:`distinct_ip_keys` would compute for ``a``, from a decoder that had the
    addresses in binary form: later stages then never parse the text."""
    _KEY_MEMO.append((_identity(a), a, (rows, keys)))
    if len(_KEY_MEMO) > _KEY_MEMO_SIZE:
        del _KEY_MEMO[0]


def ipv4_keys(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, distinct keys) of IPv4 addresses given as (N, 4) network-order bytes."""
    as_int = np.ascontiguousarray(raw).view(">u4").reshape(-1)
    uniq, rows = np.unique(as_int, return_inverse=True)
    keys = np.zeros((len(uniq), 16), np.uint8)
    keys[:, 10:12] = 0xFF
    keys[:, 12:] = uniq.astype(">u4").view(np.uint8).reshape(-1, 4)
    return rows.reshape(-1).astype(np.int64), keys


def _parse_keys(values: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(parsed?, keys of the parsed ones) for distinct address texts. Dotted quads are
    parsed by Arrow kernels over the whole array; the rest (IPv6, odd forms) one by one."""
    n = len(values)
    v4 = np.zeros(n, bool)
    quads = np.zeros((0, 4), np.uint8)
    if n:
        parts = pc.split_pattern(values, ".", max_splits=4)
        four = np.asarray(pc.fill_null(pc.equal(pc.list_value_length(parts), 4), False))
        flat = pc.list_flatten(parts.filter(pa.array(four)))
        digits = pc.fill_null(pc.match_substring_regex(flat, r"^(0|[1-9][0-9]{0,2})$"), False)
        ok = np.asarray(digits).reshape(-1, 4).all(axis=1) if len(flat) else np.zeros(0, bool)
        octets = pc.cast(pc.if_else(digits, flat, "0"), pa.uint16()).to_numpy()
        ok &= (octets.reshape(-1, 4) <= 255).all(axis=1)
        v4[np.flatnonzero(four)[ok]] = True
        quads = octets.reshape(-1, 4)[ok].astype(np.uint8)
    keys = np.zeros((n, 16), np.uint8)
    keys[v4, 10:12] = 0xFF
    keys[v4, 12:] = quads
    good = v4.copy()
    rest = np.flatnonzero(~v4)
    if len(rest):
        texts = values.take(pa.array(rest)).to_pylist()
        for i, text in zip(rest.tolist(), texts, strict=True):
            k = _key_fast(text) if text is not None else None
            if k is not None:
                keys[i] = np.frombuffer(k, np.uint8)
                good[i] = True
    return good, keys[good]


def distinct_ip_keys(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Row indices into a (U, 16) matrix of distinct IP keys, and that matrix.

    Each distinct address string is parsed once; index -1 marks a null or unparsable value.
    """
    a = single_array(col)
    ident = _identity(a)
    for key, _, result in _KEY_MEMO:
        if key == ident:
            return result
    enc = pc.dictionary_encode(a if pa.types.is_string(a.type) else pc.cast(a, pa.string()))
    good, keys = _parse_keys(enc.dictionary)
    # indices address only the parsable entries; the trailing -1 is what nulls pick up
    remap = np.append(np.where(good, np.cumsum(good) - 1, -1), -1)
    idx = pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    result = (remap[idx], keys)
    _KEY_MEMO.append((ident, a, result))
    if len(_KEY_MEMO) > _KEY_MEMO_SIZE:
        del _KEY_MEMO[0]
    return result


def _keys_for(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """The 16-byte key column of an ip or ip[] column (null where not an address)."""
    col = single_array(col)
    if pa.types.is_list(col.type):
        flat = _keys_for(col.flatten())
        return pa.ListArray.from_arrays(col.offsets, flat, mask=col.is_null())
    rows, keys = distinct_ip_keys(col)
    ok = rows >= 0
    matrix = keys[np.where(ok, rows, 0)] if len(keys) else np.zeros((len(rows), 16), np.uint8)
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), len(rows), [pa.array(ok).buffers()[1], pa.py_buffer(matrix.tobytes())])
    return fixed.cast(pa.binary())


def add_ip_keys(table: pa.Table) -> pa.Table:
    for name in table.column_names:
        f = FIELDS.get(name)
        if f is not None and f.type == "ip" and f.key_column not in table.column_names:
            table = table.append_column(f.key_column, _keys_for(table.column(name)))
    return table


# ---------------------------------------------------------------- documents -> columns

def _coerce(f: Field, v: Any) -> Any:
    """Value as the column stores it, or raise ValueError (the value then stays in _extra)."""
    if f.is_list:
        if not isinstance(v, list):
            raise ValueError
        return [_coerce_scalar(f, x) for x in v]
    return _coerce_scalar(f, v)


_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


def _coerce_scalar(f: Field, v: Any) -> Any:
    t = f.type
    if v is None or isinstance(v, dict | list):
        raise ValueError
    if t == "keyword":
        if isinstance(v, bool):
            return "true" if v else "false"
        return v if isinstance(v, str) else str(v)
    if t == "long":
        if isinstance(v, bool):
            raise ValueError
        if isinstance(v, int):
            n = v
        elif isinstance(v, float) and v.is_integer():
            n = int(v)
        elif isinstance(v, str):
            n = int(v.strip())
        else:
            raise ValueError
        if not _LONG_MIN <= n <= _LONG_MAX:  # the column is 64-bit: kept in the JSON instead
            raise ValueError
        return n
    if t == "double":
        if isinstance(v, bool):
            raise ValueError
        return float(v)
    if t == "boolean":
        if isinstance(v, bool):
            return v
        if v in ("true", "false"):
            return v == "true"
        raise ValueError
    if t == "ip":
        if not isinstance(v, str) or ip_key(v) is None:
            raise ValueError
        return v
    if t == "date":
        return parse_date(v)
    raise ValueError


def parse_date(v: Any) -> dt.datetime:
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.UTC).replace(tzinfo=None) if v.tzinfo else v
    if isinstance(v, str):
        d = dt.datetime.fromisoformat(v)
        return d.astimezone(dt.UTC).replace(tzinfo=None) if d.tzinfo else d
    if isinstance(v, int | float) and not isinstance(v, bool):
        return dt.datetime(1970, 1, 1) + dt.timedelta(milliseconds=v)
    raise ValueError


def _split(doc: Mapping[str, Any], prefix: str, typed: dict[str, Any]) -> dict[str, Any]:
    """Move typed fields of ``doc`` into ``typed``; return what remains, nested."""
    rest: dict[str, Any] = {}
    for k, v in doc.items():
        name = prefix + k
        f = FIELDS.get(name)
        if f is not None:
            try:
                typed[name] = _coerce(f, v)
                continue
            except (ValueError, TypeError, OverflowError):
                pass
        if isinstance(v, dict):
            if name + "." not in _PARENTS:  # no typed field below: kept whole, not walked
                rest[k] = v
                continue
            sub = _split(v, name + ".", typed)
            if sub:
                rest[k] = sub
        else:
            rest[k] = v
    return rest


# "source.", "source.geo.", ...: the objects that hold typed fields somewhere below
_PARENTS = frozenset(".".join(name.split(".")[:i]) + "."
                     for name in FIELDS for i in range(1, name.count(".") + 1))


def split_document(doc: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """One ECS document as a row: its typed column values, and the JSON of the rest."""
    typed: dict[str, Any] = {}
    rest = _split(doc, "", typed)
    return typed, orjson.dumps(rest).decode() if rest else None


def from_rows(typed: list[dict[str, Any]], extras: list[str | None], input_name: str,
              ids: Iterable[str] | None = None) -> pa.Table:
    """A batch from rows as :func:`split_document` makes them (typed values already in
    their column's form)."""
    present = {k for r in typed for k in r}
    fields = [FIELDS[n] for n in FIELDS if n in present]
    # one struct conversion reads the dicts in C++: a third of the cost of a list per column
    struct = pa.array(typed, pa.struct([(f.name, f.arrow_type) for f in fields]))
    arrays = struct.flatten() if fields else []
    names = [f.name for f in fields]
    n = len(typed)
    ids_list = list(ids) if ids is not None else [None] * n
    arrays += [pa.array(ids_list, pa.string()), pa.array([input_name] * n, pa.string()),
               pa.array(extras, pa.string())]
    names += [META_ID, META_INPUT, META_EXTRA]
    return pa.Table.from_arrays(arrays, names=names)


def from_documents(
    docs: Iterable[Mapping[str, Any]], input_name: str, ids: Iterable[str] | None = None
) -> pa.Table:
    """Generic (per-record) path from ECS documents to a batch; fast paths build columns."""
    typed: list[dict[str, Any]] = []
    extras: list[str | None] = []
    for doc in docs:
        t, extra = split_document(doc)
        typed.append(t)
        extras.append(extra)
    return from_rows(typed, extras, input_name, ids)


# ---------------------------------------------------------------- columns -> documents

def format_date(d: dt.datetime) -> str:
    """Elastic's rendering: milliseconds always, microseconds only when present."""
    if d.microsecond % 1000:
        return d.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + f"{d.microsecond // 1000:03d}Z"


def _set(doc: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = doc
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = cur[p] = {}
        cur = nxt
    cur[parts[-1]] = value


def _merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for k, v in other.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict):
            _merge(into[k], v)
        else:
            into[k] = v


def flatten(doc: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted leaf paths of a nested document (lists are leaves)."""
    out: dict[str, Any] = {}
    for k, v in doc.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def row_to_document(row: Mapping[str, Any]) -> dict[str, Any]:
    """The nested ECS document of one stored or in-flight row (as from ``to_pylist``)."""
    doc: dict[str, Any] = {}
    for name, v in row.items():
        if v is None or name.startswith("_") or name.endswith(IP_KEY_SUFFIX):
            continue
        if isinstance(v, list) and not v:
            continue
        f = FIELDS.get(name)
        if f is not None and f.type == "date":
            v = [format_date(x) for x in v] if f.is_list else format_date(v)
        _set(doc, name, v)
    extra = row.get(META_EXTRA)
    if extra:
        _merge(doc, orjson.loads(extra))
    return dict(sorted(doc.items()))


def to_documents(table: pa.Table) -> list[dict[str, Any]]:
    return [row_to_document(r) for r in table.to_pylist()]


# ---------------------------------------------------------------- origins and failures

@dataclass(frozen=True, slots=True)
class Origin:
    """Where a chunk of input came from: the input, and for files Filebeat's filestream
    metadata (path, device, inode, offset of the chunk's first byte)."""

    input: str
    path: str | None = None
    device: int = 0
    inode: int = 0
    offset: int = 0


@dataclass(frozen=True, slots=True)
class Failure:
    """An input that could not become an event; stored in the failure store, never dropped."""

    input: str
    message: str  # error.message
    original: bytes | str  # event.original (bytes are shown with escapes where not UTF-8)
    path: str | None = None  # log.file.path
    offset: int | None = None  # log.offset
    at: dt.datetime | None = None  # when it failed (UTC); now when None


FAILURE_COLUMNS = [("@timestamp", "TIMESTAMP"), (META_INPUT, "VARCHAR"),
                   ("error.message", "VARCHAR"), ("event.original", "VARCHAR"),
                   ("log.file.path", "VARCHAR"), ("log.offset", "BIGINT")]


def failures_table(failures: Iterable[Failure]) -> pa.Table:
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = list(failures)

    def text(v: bytes | str) -> str:
        return v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v

    return pa.table({
        "@timestamp": pa.array([f.at or now for f in rows], pa.timestamp("us")),
        META_INPUT: pa.array([f.input for f in rows], pa.string()),
        "error.message": pa.array([f.message for f in rows], pa.string()),
        "event.original": pa.array([text(f.original) for f in rows], pa.string()),
        "log.file.path": pa.array([f.path for f in rows], pa.string()),
        "log.offset": pa.array([f.offset for f in rows], pa.int64()),
    })
