"""JSON lines → columns.

The fast path hands a whole chunk to Arrow's C++ JSON reader with an explicit schema and
gets columns back in one call. A chunk the reader rejects (one odd line is enough: a wrong
type, two objects on a line, invalid UTF-8) is bisected until the odd lines stand alone;
those take the exact per-line path, where the caller's ``loose`` handling decides what a
record means and where non-objects become failures. No line is lost either way.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.json as pj

_MIN_BISECT = 1


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
    starts, ends = line_bounds(data)
    out = Decoded()
    _decode_range(data, starts, ends, schema, out)
    return out


def _read(data: bytes, schema: pa.Schema) -> pa.Table:
    return pj.read_json(
        io.BytesIO(data),
        read_options=pj.ReadOptions(use_threads=False, block_size=max(1 << 20, len(data) + 1)),
        parse_options=pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer"),
    )


def _decode_range(
    data: bytes, starts: np.ndarray, ends: np.ndarray, schema: pa.Schema, out: Decoded
) -> None:
    n = len(starts)
    if n == 0:
        return
    lo, hi = int(starts[0]), int(ends[-1])
    blob = data[lo:hi]
    try:
        table = _read(blob, schema)
        if table.num_rows == n:
            out.segments.append(Segment(table, starts, ends))
            return
    except (pa.ArrowInvalid, UnicodeDecodeError, ValueError):
        pass
    if n <= _MIN_BISECT:
        _one_line(lo, blob, out)
        return
    mid = n // 2
    _decode_range(data, starts[:mid], ends[:mid], schema, out)
    _decode_range(data, starts[mid:], ends[mid:], schema, out)


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
