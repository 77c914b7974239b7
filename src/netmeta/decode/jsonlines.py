"""JSON lines → columns.

The fast path hands a whole chunk to Arrow's C++ JSON reader and gets columns back in one
call. A chunk the reader rejects (one odd line is enough: a wrong type, two objects on a
line, invalid UTF-8) is bisected until the odd lines stand alone; those take the exact
per-line path, where the caller's ``loose`` handling decides what a record means and where
non-objects become failures. No line is lost either way.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.json as pj


@dataclass(slots=True)
class Segment:
    """Consecutive good lines decoded together."""

    records: pa.Table
    starts: np.ndarray  # int64 offset of each line in the chunk
    ends: np.ndarray  # int64 offset just after each line's last byte (newline excluded)


@dataclass(slots=True)
class Decoded:
    segments: list[Segment] = field(default_factory=list)
    # (offset, line, object) of lines that need the per-line path
    loose: list[tuple[int, bytes, dict[str, Any]]] = field(default_factory=list)
    failures: list[tuple[int, bytes, str]] = field(default_factory=list)  # (offset, line, error)


def line_bounds(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Start and end offsets of the non-empty lines of ``data`` (a final line may lack \\n)."""
    buf = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(buf == 10)
    if not len(data) or data[-1] != 10:
        nl = np.append(nl, len(data))
    starts = np.empty(len(nl), np.int64)
    starts[0:1] = 0
    starts[1:] = nl[:-1] + 1
    ends = nl.astype(np.int64)
    # CRLF files: the \r is not part of the record
    if len(ends):
        cr = ends > starts
        cr[cr] = buf[ends[cr] - 1] == 13
        ends = ends - cr
    keep = ends > starts
    return starts[keep], ends[keep]


def decode_lines(data: bytes, schema: pa.Schema) -> Decoded:
    """``schema`` types the known fields; other fields are inferred and kept."""
    starts, ends = line_bounds(data)
    out = Decoded()
    _Reader(data, schema, _declared(data, starts, ends, schema), out).decode(starts, ends)
    return out


def _declared(data: bytes, starts: np.ndarray, ends: np.ndarray, schema: pa.Schema
              ) -> pa.Schema:
    """The part of ``schema`` the chunk's first record uses.

    Arrow fills every declared field on every row, so declaring all fifty fields a format
    may have, when a record carries sixteen, doubles the parse time. Fields that only later
    lines carry are inferred, then checked against ``schema``.
    """
    if not len(starts):
        return schema
    try:
        first = orjson.loads(data[int(starts[0]):int(ends[0])])
    except orjson.JSONDecodeError:
        return schema
    if not isinstance(first, dict):
        return schema
    return _subschema(schema, frozenset(first))


_SUBSCHEMAS: dict[tuple[int, frozenset[str]], pa.Schema] = {}


def _subschema(schema: pa.Schema, keys: frozenset[str]) -> pa.Schema:
    key = (id(schema), keys)
    sub = _SUBSCHEMAS.get(key)
    if sub is None:
        if len(_SUBSCHEMAS) > 256:
            _SUBSCHEMAS.clear()
        sub = _SUBSCHEMAS[key] = pa.schema([f for f in schema if f.name in keys])
    return sub


@dataclass(slots=True)
class _Reader:
    data: bytes
    full: pa.Schema  # every known field and its type
    declared: pa.Schema  # what Arrow is told up front
    out: Decoded

    def decode(self, starts: np.ndarray, ends: np.ndarray) -> None:
        n = len(starts)
        if n == 0:
            return
        lo, hi = int(starts[0]), int(ends[-1])
        blob = self.data[lo:hi]
        table = self._read(blob)
        if table is not None and table.num_rows == n:
            self.out.segments.append(Segment(table, starts, ends))
            return
        if n == 1:
            _one_line(lo, blob, self.out)
            return
        mid = n // 2
        self.decode(starts[:mid], ends[:mid])
        self.decode(starts[mid:], ends[mid:])

    def _read(self, blob: bytes) -> pa.Table | None:
        try:
            table = self._arrow(blob)
            # Arrow infers ISO-looking strings as timestamps, which would lose the text as
            # sent: such fields are read again declared as strings
            stamps = [f.name for f in table.schema if pa.types.is_timestamp(f.type)]
            if stamps:
                self.declared = pa.schema(list(self.declared) + [
                    pa.field(name, pa.string()) for name in stamps
                    if self.declared.get_field_index(name) < 0])
                table = self._arrow(blob)
        except (pa.ArrowInvalid, UnicodeDecodeError, ValueError):
            return None
        # known fields that were inferred must have their type (all-null is fine)
        for i, f in enumerate(table.schema):
            j = self.full.get_field_index(f.name)
            if j < 0 or f.type == self.full.field(j).type:
                continue
            if not pa.types.is_null(f.type):
                return None
            table = table.set_column(i, self.full.field(j), pa.nulls(table.num_rows,
                                                                      self.full.field(j).type))
        return table


    def _arrow(self, blob: bytes) -> pa.Table:
        return pj.read_json(
            io.BytesIO(blob),
            read_options=pj.ReadOptions(use_threads=False, block_size=max(1 << 20, len(blob) + 1)),
            parse_options=pj.ParseOptions(explicit_schema=self.declared,
                                          unexpected_field_behavior="infer"))


def _one_line(offset: int, line: bytes, out: Decoded) -> None:
    if not line.strip():
        return  # a blank line carries no record
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        out.failures.append((offset, line, f"invalid JSON: {e}"))
        return
    if not isinstance(obj, dict):
        out.failures.append((offset, line, f"expected a JSON object, got {type(obj).__name__}"))
        return
    out.loose.append((offset, line, obj))
