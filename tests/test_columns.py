"""Column helpers: JSON text of Arrow columns, including sliced and chunked ones."""

from __future__ import annotations

import orjson
import pyarrow as pa

from netmeta.columns import arr, json_values


def test_sliced_lists_and_chunked_columns() -> None:
    a = pa.array([[1, 2], [3], None, [4, 5, 6]])
    assert json_values(a.slice(1)).to_pylist() == ["[3]", None, "[4,5,6]"]
    assert json_values(pa.chunked_array([a.slice(2)])).to_pylist() == [None, "[4,5,6]"]
    two = pa.chunked_array([a.slice(0, 1), a.slice(3)])
    assert json_values(two).to_pylist() == ["[1,2]", "[4,5,6]"]
    one = pa.chunked_array([a])
    assert arr(one) is not None and arr(one).equals(a)


def test_strings_escape_only_when_needed() -> None:
    values = ["plain", 'quo"te', "back\\slash", "tab\there", "é", None, "\x01"]
    got = json_values(pa.array(values)).to_pylist()
    assert got == [None if v is None else orjson.dumps(v).decode() for v in values]
    assert json_values(pa.array(["a", "b"]).slice(1)).to_pylist() == ['"b"']
