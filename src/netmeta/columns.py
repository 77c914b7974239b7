"""Vectorized column helpers shared by the normalizers.

Normalizers build ECS columns with Arrow compute kernels instead of per-record Python
objects; the helpers here cover what Arrow has no single kernel for: JSON text of nested
objects built from columns, small lists built from scalar columns, "" treated as absent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Union

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc


class Raw:
    """A column that already holds JSON text (``"k":v,...`` members or a whole value)."""

    __slots__ = ("array",)

    def __init__(self, array: pa.Array) -> None:
        self.array = array


Tree = Mapping[str, Union[pa.Array, pa.ChunkedArray, Raw, "Tree"]]


def arr(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One Array; a one-chunk column without a copy (combine_chunks always copies, and a
    copy also loses the IP keys remembered for the column)."""
    if isinstance(a, pa.ChunkedArray):
        if a.num_chunks == 1:
            return a.chunk(0)
        return a.combine_chunks() if a.num_chunks else pa.array([], a.type)
    return a


def blank_to_null(a: pa.Array) -> pa.Array:
    """Elastic's pipelines treat "" like a missing value."""
    if pa.types.is_string(a.type) or pa.types.is_large_string(a.type):
        return pc.if_else(pc.equal(a, ""), pa.scalar(None, a.type), a)
    return a


_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'  # what a JSON string cannot hold as it is


def json_values(a: pa.Array) -> pa.Array:
    """JSON text of each value; nulls stay null."""
    a = arr(a)
    t = a.type
    if pa.types.is_integer(t):
        return pc.cast(a, pa.string())
    if pa.types.is_boolean(t):
        return pc.if_else(a, "true", "false")
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if not pc.any(pc.match_substring_regex(a, _NEEDS_ESCAPE)).as_py():
            return pc.binary_join_element_wise('"', a, '"', "")  # nothing to escape
        enc = pc.dictionary_encode(a)
        uniq = pa.array([orjson.dumps(v).decode() for v in enc.dictionary.to_pylist()], pa.string())
        return uniq.take(enc.indices)
    if pa.types.is_null(t):
        return pa.nulls(len(a), pa.string())
    if pa.types.is_list(t) and not pa.types.is_floating(t.value_type):
        items = json_values(a.flatten())
        # a sliced list's offsets do not start at 0, its flattened values do
        offsets = pc.subtract(a.offsets, a.offsets[0]) if a.offset else a.offsets
        lists = pa.ListArray.from_arrays(offsets, items, mask=a.is_null())
        return pc.binary_join_element_wise("[", pc.binary_join(lists, ","), "]", "")
    # floats (JSON has no inf/nan), lists, structs: exact per-value path
    out = [None if v is None else orjson.dumps(v, option=orjson.OPT_NON_STR_KEYS).decode()
           for v in a.to_pylist()]
    return pa.array(out, pa.string())


def json_object(tree: Tree, n: int) -> pa.Array:
    """JSON object text per row from a nested tree of columns; null where every value is null.

    A ``Raw`` node holds JSON text already: a whole value, or (under the key ``""``) members
    ``"k":v,...`` to splice into this object.
    """
    keys: list[str] = []
    values: list[pa.Array] = []
    for key, node in tree.items():
        if isinstance(node, Raw):
            inner = node.array
        elif isinstance(node, Mapping):
            inner = json_object(node, n)
        else:
            inner = json_values(node)
        if inner.null_count == len(inner):
            continue
        keys.append("" if key == "" else orjson.dumps(key).decode() + ":")
        values.append(inner)
    if not values:
        return pa.nulls(n, pa.string())
    if all(v.null_count == 0 for v in values):
        # the common case, every member present: one pass builds the whole object
        pieces: list[Any] = ["{"]
        for i, (k, v) in enumerate(zip(keys, values, strict=True)):
            pieces += [("," if i else "") + k, v]
        return pc.binary_join_element_wise(*pieces, "}", "")
    # some members absent on some rows: each present member carries its own leading comma,
    # the first comma is cut off, and a row with no member at all becomes null
    # (null_handling="skip" would drop such rows altogether in pyarrow 26)
    frags = [pc.binary_join_element_wise("," + k, v, "") for k, v in zip(keys, values,
                                                                          strict=True)]
    joined = pc.binary_join_element_wise(*frags, "", null_handling="replace",
                                         null_replacement="")
    body = pc.utf8_slice_codeunits(joined, 1)
    return pc.if_else(pc.equal(joined, ""), pa.scalar(None, pa.string()),
                      pc.binary_join_element_wise("{", body, "}", ""))


def list_of(*cols: pa.Array, value_type: pa.DataType | None = None) -> pa.Array:
    """Per-row list of the non-null values of ``cols`` (null where none), in column order."""
    value_type = value_type or pa.string()
    n = len(cols[0])
    valid = np.stack([np.asarray(arr(c).is_valid()) for c in cols], axis=1)  # (n, k)
    counts = valid.sum(axis=1)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(counts, out=offsets[1:])
    inter = pa.chunked_array([arr(c).cast(value_type) for c in cols]).combine_chunks()
    # row-major order of (row, column) pairs that hold a value
    order = (np.arange(len(cols))[None, :] * n + np.arange(n)[:, None])[valid]
    values = inter.take(pa.array(order))
    return pa.ListArray.from_arrays(pa.array(offsets), values, mask=pa.array(counts == 0))




def lines_to_strings(data: bytes, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """The lines [start, end) of ``data`` as strings, for lines separated only by line breaks
    and blank lines (a decoded segment).

    The strings are views of ``data`` running from one line start to the next; one C++ pass
    then trims the line break (and any blank lines) off the end of each.
    The caller guarantees the lines are valid UTF-8 (the JSON reader checked them).
    """
    offsets = np.empty(len(starts) + 1, np.int64)
    offsets[:-1] = starts
    offsets[-1] = ends[-1] if len(ends) else 0
    base = int(offsets[0]) if len(offsets) else 0
    offsets -= base
    view = memoryview(data)[base:base + int(offsets[-1])]
    if offsets[-1] < 2**31:
        a = pa.StringArray.from_buffers(len(starts), pa.py_buffer(offsets.astype(np.int32)),
                                        pa.py_buffer(view))
    else:
        a = pa.LargeStringArray.from_buffers(len(starts), pa.py_buffer(offsets),
                                             pa.py_buffer(view))
    return pc.utf8_rtrim_whitespace(a).cast(pa.string())


def constant_list(value: str, n: int) -> pa.Array:
    """A one-element list [value] on every row."""
    return pa.ListArray.from_arrays(pa.array(np.arange(n + 1, dtype=np.int32)),
                                    pa.repeat(pa.scalar(value), n))
