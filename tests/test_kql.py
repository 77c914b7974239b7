"""KQL → DuckDB SQL, checked by running the compiled queries against a real stored table."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netmeta import event
from netmeta.query.kql import And, KQLError, Match, Not, Or, Value, parse
from netmeta.query.sql import compile_where

DOCS: dict[str, dict[str, Any]] = {
    "a": {
        "@timestamp": "2024-07-31T10:00:00Z",
        "message": "DNS query for example.com",
        "source": {"ip": "10.1.2.3", "address": ["1.2.3.4"]},
        "destination": {"ip": "8.8.8.8", "port": 53},
        "network": {"transport": "udp"},
        "tags": ["dns", "internal"],
        "host": {"ip": ["10.0.0.1", "fe80::1"]},
        "tls": {"established": False},
        "sflow": {"bytes": 70},
    },
    "b": {
        "@timestamp": "2024-07-30T23:59:59Z",
        "message": "100% done_ok",
        # Stored as written; its key equals the key of 192.168.1.5.
        "source": {"ip": "::ffff:192.168.1.5", "geo": {"location": {"lat": 52.5}}},
        "destination": {"ip": "2001:db8::10", "port": 443},
        "network": {"transport": "tcp"},
        "tags": ["web"],
        "tls": {"established": True},
        "url": {"path": "/a_b%c"},
        "sflow": {"bytes": 1500},
        "gigamon": {"ami": {"app": "ssl"}},
    },
    "c": {
        "@timestamp": "2024-08-01T00:00:00Z",
        "message": "weird:chars (a) *star*",
        "event": {"original": "GET /Index.html HTTP/1.1"},
        "source": {"ip": "172.16.0.1"},
        "destination": {"port": 80},
        "network": {"transport": "tcp"},
        "tags": [],
        "url": {"path": "/aXbZ"},
        "netflow": {"bytes-in": 5, "@weird": "x"},
        "list": [1, "two", 3.5],
    },
    "d": {"event": {"kind": "event"}, "note": "'; DROP TABLE t; --"},
    "e": {
        "@timestamp": "2024-07-31T23:00:00+02:00",
        "source": {"ip": "2001:db8:0:1::5"},
        "destination": {"port": 8080},
        "sflow": {"bytes": "70"},
        "dns": {"answers": [{"data": "1.1.1.1"}]},
    },
}
ALL = set(DOCS)


@pytest.fixture(scope="module")
def db() -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    cols = ", ".join(f'"{name}" {sql_type}' for name, sql_type in event.storage_columns())
    con.execute(f"CREATE TABLE t ({cols})")
    batch = event.add_ip_keys(event.from_documents(DOCS.values(), "test", ids=DOCS.keys()))
    con.register("batch", batch)
    con.execute("INSERT INTO t BY NAME SELECT * FROM batch")
    con.unregister("batch")
    yield con
    con.close()


def ids(db: duckdb.DuckDBPyConnection, query: str) -> set[str]:
    where, params = compile_where(query)
    return {r[0] for r in db.execute(f"SELECT _id FROM t WHERE {where}", params).fetchall()}


CASES: list[tuple[str, set[str]]] = [
    # empty and match-all
    ("", ALL),
    ("   ", ALL),
    ("*", ALL),
    # exact match, value lists, not, precedence
    ("destination.port:53", {"a"}),
    ("destination.port:(53 or 80)", {"a", "c"}),
    ("destination.port:(53 OR 80 or 8080) and not network.transport:tcp", {"a", "e"}),
    ("not destination.port:53", ALL - {"a"}),  # also events without the field, as Kibana
    ("NOT destination.port:53 AND NOT destination.port:80", {"b", "d", "e"}),
    ("network.transport:udp or network.transport:tcp and destination.port:80", {"a", "c"}),
    ("(network.transport:udp or network.transport:tcp) and destination.port:80", {"c"}),
    ("not not network.transport:udp", {"a"}),
    ("network.transport:UDP", set()),  # keyword match is case-sensitive, as in Elasticsearch
    ("network.transport:(udp and tcp)", set()),
    ("network.transport:(not udp)", ALL - {"a"}),
    ("network.transport:\"tcp\"", {"b", "c"}),
    # numeric ranges
    ("destination.port >= 443", {"b", "e"}),
    ("destination.port > 53 and destination.port < 8080", {"b", "c"}),
    ("destination.port<=53", {"a"}),
    ("source.geo.location.lat > 50", {"b"}),
    ("source.geo.location.lat:52.5", {"b"}),
    # exists
    ("source.ip:*", {"a", "b", "c", "e"}),
    ("not source.ip:*", {"d"}),
    ("tags:*", {"a", "b"}),  # an empty list does not exist
    ("sflow.bytes:*", {"a", "b", "e"}),
    ("url.path : *", {"b", "c"}),
    # IP fields: address, v4-mapped equivalence, CIDR, IPv6, wildcard, range
    ("source.ip:10.1.2.3", {"a"}),
    ("source.ip:192.168.1.5", {"b"}),
    ('source.ip:"::ffff:10.1.2.3"', {"a"}),
    ("source.ip:10.0.0.0/8", {"a"}),
    ("source.ip:(10.0.0.0/8 or 172.16.0.0/12)", {"a", "c"}),
    ('source.ip:"::ffff:0:0/96"', {"a", "b", "c"}),  # every IPv4 address
    ('source.ip:"2001:db8::/32"', {"e"}),
    (r"destination.ip:2001\:db8\:\:/32", {"b"}),
    ('destination.ip:"2001:db8::10"', {"b"}),
    ("source.ip:10.1.*", {"a"}),
    ("source.ip >= 172.16.0.1 and source.ip < 192.168.0.0", {"c"}),
    ("source.ip < 11.0.0.0", {"a"}),
    # ip[] lists: any element
    ("host.ip:10.0.0.0/24", {"a"}),
    ('host.ip:"fe80::1"', {"a"}),
    ("host.ip:10.9.9.9", set()),
    ("host.ip:10.0.*", {"a"}),
    # keyword[] lists: any element
    ("tags:dns", {"a"}),
    ("tags:(dns and internal)", {"a"}),
    ("tags:int*", {"a"}),
    ("tags:(web or dns)", {"a", "b"}),
    ("not tags:dns", ALL - {"a"}),
    ("tags > v", {"b"}),
    # wildcards: % and _ in the value are literals
    ("url.path:/a_b*", {"b"}),
    ("url.path:/a*", {"b", "c"}),
    ("url.path:*%c", {"b"}),
    ('url.path:"/a*"', set()),  # no wildcards inside quotes
    # backslash escapes
    (r"message:weird\:chars*", {"c"}),
    (r"message:*\(a\)*", {"c"}),
    (r"message:*\*star\*", {"c"}),
    (r"message:*\*st", set()),
    ("message:DNS query for example.com", {"a"}),  # multi-word unquoted value
    ('message:"DNS query for example.com"', {"a"}),
    # booleans
    ("tls.established:true", {"b"}),
    ("tls.established:FALSE", {"a"}),
    # dates (stored as UTC; a date value covers its whole precision, as in Elasticsearch)
    ('@timestamp >= "2024-07-31T00:00:00Z"', {"a", "c", "e"}),
    ("@timestamp:2024-07-31", {"a", "e"}),
    ('@timestamp <= "2024-07-31"', {"a", "b", "e"}),
    ('@timestamp > "2024-07-31"', {"c"}),
    ('@timestamp < "2024-07-31T12:00:00+02:00"', {"b"}),
    ('@timestamp:"2024-07-31T21:00:00Z"', {"e"}),
    ("@timestamp >= 1722384000000", {"a", "c", "e"}),
    ("@timestamp:2024-08", {"c"}),
    ("@timestamp:2024", ALL - {"d"}),
    ("@timestamp > now", set()),
    ("@timestamp < now-1d", ALL - {"d"}),
    # fields not in the schema: _extra JSON, arrays match any element
    ("sflow.bytes:70", {"a", "e"}),  # a number and a string
    ('sflow.bytes:"1500"', {"b"}),
    ("sflow.bytes >= 100", {"b"}),
    ("sflow.bytes < 100", {"a", "e"}),
    ("source.address:1.2.3.4", {"a"}),
    ("gigamon.ami.app:ssl", {"b"}),
    ("gigamon.ami.app:s*", {"b"}),
    ("not gigamon.ami.app:ssl", ALL - {"b"}),
    ("list:two", {"c"}),
    ("list:3.5", {"c"}),
    ("list > 2", {"c"}),
    ("list:4", set()),
    ("netflow.bytes-in:5", {"c"}),
    ("netflow.@weird:x", {"c"}),
    ("no.such.field:*", set()),
    # meta columns
    ("_input:test", ALL),
    ("_id:(a or c)", {"a", "c"}),
    # bare terms: case-insensitive substring in event.original, message and _extra
    ("example", {"a"}),
    ("EXAMPLE.COM", {"a"}),
    ('"100% done"', {"b"}),
    ("100%", {"b"}),
    ("done_ok", {"b"}),
    ("done?ok", set()),
    ("index.html", {"c"}),
    ("DNS*example", {"a"}),
    ("ssl", {"b"}),  # only in _extra
    ("example or ssl", {"a", "b"}),
    ("not example and sflow.bytes:*", {"b", "e"}),
    # keywords are case-insensitive; escaped keywords are values
    ("tags:dns AnD network.transport:udp", {"a"}),
    (r"\and", set()),
]


@pytest.mark.parametrize(("query", "expected"), CASES)
def test_query_matches(db: duckdb.DuckDBPyConnection, query: str, expected: set[str]) -> None:
    assert ids(db, query) == expected


ERRORS: list[tuple[str, str, int]] = [
    ("destination.port:abc", "destination.port expects a number, got 'abc'", 17),
    ("destination.port > x1", "destination.port expects a number, got 'x1'", 19),
    ("destination.port:8*", "destination.port expects a number", 17),
    ("source.ip:10.0.0.0/33", "source.ip expects an IP address or CIDR, got '10.0.0.0/33'", 10),
    ("source.ip:foo", "source.ip expects an IP address or CIDR, got 'foo'", 10),
    ("host.ip:(1.2.3.4 or nope)", "host.ip expects an IP address or CIDR, got 'nope'", 20),
    ("source.ip > 10.0.0.0/8", "source.ip expects an IP address", 12),
    ("tls.established:maybe", "tls.established expects true or false", 16),
    ("tls.established > true", "range comparison is not supported on boolean", 18),
    ('@timestamp > "yesterday"', "@timestamp expects a date", 13),
    ('@timestamp:"2024-13-01"', "@timestamp expects a date", 11),
    ("a:(b", "expected ')' closing the value list, got end of query", 4),
    ("(a", "expected ')'", 2),
    ("a)", "expected 'and', 'or' or end of query, got ')'", 1),
    ('"unterminated', "unterminated quoted string", 0),
    ("a and", "expected a field, a value or '(', got end of query", 5),
    ("or", "expected a field, a value or '('", 0),
    ("a:", "expected a value for a", 2),
    ("a: and", "expected a value for a", 3),
    ("bad!field:x", "invalid field name 'bad!field'", 0),
    ('"a\\"b":x', "invalid field name", 0),
    ("a..b:x", "invalid field name", 0),
    ("sour*:x", "wildcards in field names are not supported", 0),
    ("a > b*", "wildcards are not allowed in range values", 4),
    ("a:{b:c}", "nested field queries", 2),
    ("a b c:d", "invalid field name 'a b c'", 0),
    ("x:1 y:2", "expected 'and', 'or' or end of query, got ':'", 5),
    ("trailing\\", "backslash at end of query", 8),
    ("a:\\u12", "invalid \\u escape", 2),
    ("a:\\ud800", "surrogate", 2),
    ("(" * 100 + "a" + ")" * 100, "nested more than", 64),
]


@pytest.mark.parametrize(("query", "message", "position"), ERRORS)
def test_errors(query: str, message: str, position: int) -> None:
    with pytest.raises(KQLError) as err:
        compile_where(query)
    assert message in err.value.message
    assert err.value.position == position
    assert f"position {position}" in str(err.value)


def test_parse_tree_precedence() -> None:
    tree = parse("not a:1 and b:2 or c:3")
    one, two, three = (Value((v,), False, p) for v, p in (("1", 6), ("2", 14), ("3", 21)))
    assert tree == Or((And((Not(Match("a", one)), Match("b", two))), Match("c", three)))


def test_value_list_is_rewritten_per_field() -> None:
    tree = parse('f:(x or "y z")')
    assert tree == Or((Match("f", Value(("x",), False, 3)), Match("f", Value(("y z",), True, 8))))


def test_quoted_escapes() -> None:
    tree = parse(r'm:"a\"b\\c\*\n\u0041"')
    assert isinstance(tree, Match)
    assert tree.value.pieces == ('a"b\\c\\*\nA',)


def test_escaped_keyword_is_a_value() -> None:
    assert parse(r"\and") == Match(None, Value(("and",), False, 0))
    # As in Kibana's grammar, "\n" is an escaped newline before it is an escaped keyword.
    assert parse(r"\not") == Match(None, Value(("\not",), False, 0))
    assert parse("a:\\or") == Match("a", Value(("or",), False, 2))


def test_compile_accepts_a_parsed_node(db: duckdb.DuckDBPyConnection) -> None:
    node = parse("destination.port:53")
    assert node is not None
    assert compile_where(node) == compile_where("destination.port:53")
    assert compile_where(None) == ("TRUE", [])


# ---------------------------------------------------------------- injection


INJECTIONS = [
    "'; DROP TABLE t; --",
    "\"; DROP TABLE t; --",
    "') OR 1=1 --",
    "$.x') OR TRUE --",
    "\\'); DROP TABLE t; --",  # a backslash to test the quote escaping of SQL strings
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_injected_values_stay_parameters(db: duckdb.DuckDBPyConnection, payload: str) -> None:
    quoted = '"' + payload.replace("\\", "\\\\").replace('"', '\\"') + '"'
    for query in (f"message:{quoted}", f"note:{quoted}", quoted, f"tags > {quoted}",
                  f"note:({quoted} or x)"):
        where, params = compile_where(query)
        assert payload not in where
        assert "DROP" not in where
        texts = [p for p in params if isinstance(p, str)]
        assert any(payload in p or payload.replace("\\", "\\\\") in p for p in texts)
        db.execute(f"SELECT count(*) FROM t WHERE {where}", params).fetchall()
    assert db.execute("SELECT count(*) FROM t").fetchone() == (len(DOCS),)


def test_injected_value_matches_literally(db: duckdb.DuckDBPyConnection) -> None:
    assert ids(db, 'note:"\'; DROP TABLE t; --"') == {"d"}
    assert ids(db, r"note:\'\;*") == {"d"}
    assert ids(db, '"drop table t"') == {"d"}


def test_json_path_is_a_parameter() -> None:
    where, params = compile_where("sflow.bytes:70")
    assert "sflow" not in where
    assert '$."sflow"."bytes"' in params


# ---------------------------------------------------------------- fuzz

FIELD_NAMES = ["destination.port", "source.ip", "host.ip", "tags", "@timestamp",
               "tls.established", "message", "sflow.bytes", "source.geo.location.lat",
               "list", "x-y.@z", "_id"]
PIECES = FIELD_NAMES + [
    ":", ":", " ", " ", "(", ")", " and ", " or ", " not ", "not ", "<", ">=", ">", "<=",
    "*", '"', "\\", "\\:", "\\*", "'", "%", "_", "{", "}", ",", ";", "--",
    "53", "-1", "1e999", "9" * 30, "3.5", "true", "FALSE", "10.0.0.0/8", "10.1.*",
    "::1", '"fe80::/10"', '"::ffff:1.2.3.4"', "2024-07-31", '"2024-07-31T00:00:00Z"',
    '"2024-07-31T12:00:00.123456789+05:30"', "now-15m", "0001", "9999", "abc", "é",
    '"a b"', '"\\"x"', "\\u0041", "\x00",
]


def run(db: duckdb.DuckDBPyConnection, query: str) -> None:
    """A query either fails with KQLError or compiles to SQL that DuckDB executes."""
    try:
        where, params = compile_where(query)
    except KQLError as e:
        assert isinstance(e.position, int) and 0 <= e.position <= len(query)
        return
    db.execute(f"SELECT count(*) FROM t WHERE {where}", params).fetchall()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=12).map("".join))
def test_fuzz_kql_like_text(db: duckdb.DuckDBPyConnection, query: str) -> None:
    run(db, query)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_fuzz_arbitrary_text(db: duckdb.DuckDBPyConnection, query: str) -> None:
    run(db, query)


VALUES = ["53", "3.5", "-1", "true", "10.0.0.0/8", "10.1.*", '"::1"', "2024-07-31",
          '"2024-07-31T00:00:00Z"', "now-1h", "abc", "a*b", '"q uoted"', "*", "%_\\\\"]
CLAUSES = st.one_of(
    st.tuples(st.sampled_from(FIELD_NAMES), st.sampled_from([":", " < ", " >= "]),
              st.sampled_from(VALUES)).map("".join),
    st.sampled_from(VALUES),
)


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    CLAUSES,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from([" and ", " or ", " AND "]), inner).map("".join),
        inner.map(lambda q: f"not {q}"),
        inner.map(lambda q: f"({q})"),
    ),
    max_leaves=8,
))
def test_fuzz_well_formed_queries(db: duckdb.DuckDBPyConnection, query: str) -> None:
    run(db, query)
