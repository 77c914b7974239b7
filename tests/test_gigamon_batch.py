"""The batch AMI normalizer gives the reference pipeline's rows, record for record.

netmeta.normalize.gigamon_batch runs records of one shape through a plan made once and reads a
batch's dates together; netmeta.normalize.gigamon.normalize_record is the reference (it is
the one checked against Elastic's expected documents). Here both make rows from the peer
cases and from generated records, and the rows must be equal: typed column values as the
store takes them, and the JSON of the rest.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

import orjson
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netmeta.event import from_rows
from netmeta.normalize import gigamon as ref
from netmeta.normalize import gigamon_batch, java_dates

from .conftest import PEER

CASES = [e["json"] for e in json.loads(
    (PEER / "gigamon" / "pipeline" / "test-ami.json").read_text())["events"]]


def _canonical(typed: list[dict[str, Any]], extras: list[str | None]) -> list[bytes]:
    """Rows as the store would hold them (Arrow converts the typed values), comparable."""
    table = from_rows(typed, extras, "t")
    out = []
    for row in table.to_pylist():
        extra = row.pop("_extra")
        cells = {k: v for k, v in row.items() if v is not None}
        out.append(orjson.dumps({"typed": cells, "extra": orjson.loads(extra) if extra else None},
                                option=orjson.OPT_SORT_KEYS, default=str))
    return out


def _reference(records: list[Any]) -> tuple[list[bytes], list[int]]:
    typed, extras, index = [], [], []
    for i, r in enumerate(records):
        try:
            t, e = gigamon_batch.reference_row(r) if isinstance(r, dict) else (None, None)
        except Exception:  # noqa: BLE001 - the batch reports these as errors
            continue
        if t is None:
            continue
        typed.append(t)
        extras.append(e)
        index.append(i)
    return _canonical(typed, extras), index


def _check(records: list[Any]) -> gigamon_batch.Rows:
    rows = gigamon_batch.normalize_batch(copy.deepcopy(records))
    want, index = _reference(copy.deepcopy(records))
    assert rows.index == index
    got = _canonical(rows.typed, rows.extras)
    for i, g, w in zip(index, got, want, strict=True):
        assert g == w, f"record {i}: {records[i]}"
    return rows


def test_peer_cases_take_the_fast_path_and_match_the_reference() -> None:
    rows = _check(CASES * 3)
    assert rows.slow == 0  # the plans take every peer record as it is
    assert len(rows.typed) == 210 and not rows.errors


def test_records_the_plan_does_not_take_go_to_the_reference() -> None:
    base = CASES[0]
    odd = [
        {**base, "src_port": "80a"},  # convert fails: error.message, attribute removed
        {**base, "ts": "2023-12-13T15:25:25Z"},  # ISO8601: zones
        {**base, "ts": "Wed Dec 14 15:25:25 2023"},  # day of week contradicts the date
        {**base, "start_time": "2023:02:30 15:25:11.181"},  # no such day
        {**base, "src_ip": "not-an-ip"},  # the geoip processor fails
        {**base, "src_port": 80},  # not a string
        {**base, "TcpRttMin": "1", "tcp_rtt_min": "2"},  # rename onto an existing attribute
        {**base, "ssl_cipher_suite_id": ""},  # the lookup script fails
        {**base, "labels": {"site": "hq"}},  # AMX labels: labels.*
        {**base, "ts": "Wed Dec 13 15:25:25 0999"},  # a year below 1000
        {},
        ["not", "an", "object"],
        {**base, "src_port": "-5"},
        {**base, "dns_query": "", "http_host": ""},
        {**base, "dns_response_time": "99999999999999999999"},  # a duration past 64 bits
    ]
    rows = _check(odd)
    assert rows.slow >= 12
    assert [i for i, _ in rows.errors] == [11]


# Values that come near the plan's edges: digits in other scripts, empty text, odd dates.
_TEXT = st.one_of(
    st.sampled_from(["", "0", "17", "-3", "+4", "0x1F", "١٢", "1.5", "3.412379", "NaN",
                     "10.0.0.1", "::1", "fe80::1%eth0", "00:50:56:8d:89:41", "A",
                     "Wed Dec 13 15:25:25 2023", "Sun Dec  3 01:02:03 2023",
                     "Sun Dec 3 01:02:03 2023", "2023:12:13 15:25:11.181",
                     "2023:12:13 15:25:11.181123", "2023:12:13 15:25:11", "170106000000Z",
                     "2017-01-06 00:00:00", "99999999999999999999"]),
    st.text(max_size=12))


@st.composite
def _records(draw: st.DrawFn) -> dict[str, Any]:
    record = dict(draw(st.sampled_from(CASES)))
    keys = sorted({k for c in CASES for k in c} | set(ref._fields()["dates"])
                  | set(ref._fields()["converts"]) | {"TcpRttMin", "http_rtt", "labels"})
    for _ in range(draw(st.integers(0, 4))):
        record[draw(st.sampled_from(keys))] = draw(_TEXT)
    if draw(st.booleans()):
        record.pop(draw(st.sampled_from(sorted(record))), None)
    return record


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_records(), min_size=1, max_size=8))
def test_generated_records_match_the_reference(records: list[dict[str, Any]]) -> None:
    _check(records)


_FORMATS = [tuple(f) for f in ref._fields()["dates"].values()]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(
    st.datetimes(dt.datetime(900, 1, 1), dt.datetime(2200, 1, 1)).flatmap(
        lambda d: st.sampled_from([
            d.strftime("%a %b %d %H:%M:%S ") + f"{d.year:04d}",
            d.strftime("%a %b ") + f"{d.day:2d}" + d.strftime(" %H:%M:%S ") + f"{d.year:04d}",
            d.strftime("%a %b ") + f"{d.day}" + d.strftime(" %H:%M:%S ") + f"{d.year:04d}",
            f"{d.year:04d}" + d.strftime(":%m:%d %H:%M:%S.%f"),
            f"{d.year:04d}" + d.strftime(":%m:%d %H:%M:%S.%f")[:-3],
            f"{d.year:04d}" + d.strftime(":%m:%d %H:%M:%S"),
            f"{d.year:04d}" + d.strftime("-%m-%d %H:%M:%S"),
            f"{d.year:04d}" + d.strftime("%m%d%H%M%SZ")])),
    st.text(alphabet="0123456789:. -TZMonTueDecJan١", max_size=27)), max_size=20),
    st.sampled_from(_FORMATS))
def test_column_dates_are_the_reference_dates_or_unsure(texts: list[str],
                                                        formats: tuple[str, ...]) -> None:
    parsed = java_dates.parse(texts, formats)
    patterns = [ref._pattern(f) for f in formats]
    epoch = dt.datetime(1970, 1, 1)
    for i, text in enumerate(texts):
        if not parsed.ok[i]:
            continue
        want = ref._parse_date(text, patterns)  # raises when the reference cannot read it
        assert parsed.iso[i] == want, text
        moment = dt.datetime.fromisoformat(want).replace(tzinfo=None)
        assert epoch + dt.timedelta(microseconds=int(parsed.micros[i])) == moment


def test_the_usual_layouts_are_read_in_the_column() -> None:
    texts = ["Wed Dec 13 15:25:25 2023", "Sun Dec  3 01:02:03 2023", "Sun Dec 3 01:02:03 2023",
             "Thu Feb 29 00:00:00 2024"]
    parsed = java_dates.parse(texts, _FORMATS[0])
    assert parsed.ok.tolist() == [True, True, True, True]
    assert parsed.iso == ["2023-12-13T15:25:25.000Z", "2023-12-03T01:02:03.000Z",
                          "2023-12-03T01:02:03.000Z", "2024-02-29T00:00:00.000Z"]
    start = java_dates.parse(["2023:12:13 15:25:11.181", "2023:12:13 15:25:11.181999"],
                             tuple(ref._fields()["dates"]["start_time"]))
    assert start.iso == ["2023-12-13T15:25:11.181Z", "2023-12-13T15:25:11.181Z"]
    assert pa.array(start.micros, pa.timestamp("us"))[0].as_py() == dt.datetime(
        2023, 12, 13, 15, 25, 11, 181000)
