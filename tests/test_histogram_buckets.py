"""The date histogram's bucket width for ranges from a fraction of a second to weeks, over
the real API: about 120 buckets at most, whole "nice" steps, every event in the bucket that
starts at or before it, and the range asked returned for the chart's axis."""

from __future__ import annotations

import datetime as dt
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pytest

from netmeta.store.duckdb import Store
from netmeta.web.app import HttpServer, create_app

from .conftest import free_port

T0 = dt.datetime(2024, 7, 31, 12, 0, 0)
# events a few ms apart, then seconds, minutes, hours and days apart
OFFSETS_US = ([i * 3_000 for i in range(50)] + [i * 1_300_000 for i in range(1, 40)]
              + [i * 61_000_000 for i in range(1, 100)] + [i * 3_601_000_000 for i in
                                                             range(1, 200)])
EVENTS = sorted(T0 + dt.timedelta(microseconds=u) for u in OFFSETS_US)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = Store(tmp_path_factory.mktemp("hist") / "data")
    store.append(pa.table({"@timestamp": pa.array(EVENTS, pa.timestamp("us")),
                           "_id": [f"e{i}" for i in range(len(EVENTS))],
                           "_input": ["x"] * len(EVENTS)}))
    port = free_port()
    server = HttpServer(create_app(store, "none"), "127.0.0.1", port)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        store.close()


def _histogram(base: str, start: dt.datetime, end: dt.datetime, **spec: Any) -> Any:
    body = {"q": "", "from": start.isoformat() + "Z", "to": end.isoformat() + "Z",
            "aggs": {"type": "date_histogram", "interval": "auto", **spec}}
    req = urllib.request.Request(base + "/api/aggregate", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def _parse(key: str) -> dt.datetime:
    return dt.datetime.fromisoformat(key.replace("Z", "+00:00")).replace(tzinfo=None)


@pytest.mark.parametrize(("span", "interval_ms"), [
    (dt.timedelta(milliseconds=150), 2),
    (dt.timedelta(seconds=1), 10),
    (dt.timedelta(seconds=5), 50),
    (dt.timedelta(seconds=30), 500),
    (dt.timedelta(minutes=2), 1_000),
    (dt.timedelta(minutes=15), 10_000),
    (dt.timedelta(hours=1), 30_000),
    (dt.timedelta(hours=24), 900_000),
    (dt.timedelta(days=7), 10_800_000),
    (dt.timedelta(days=90), 86_400_000),
])
def test_auto_interval_fits_the_range_and_counts_every_event(base: str, span: dt.timedelta,
                                                             interval_ms: int):
    start, end = T0, T0 + span
    r = _histogram(base, start, end)
    assert r["interval_ms"] == interval_ms
    assert r["interval"] == (interval_ms // 1000 if interval_ms % 1000 == 0
                             else interval_ms / 1000)
    assert span / dt.timedelta(milliseconds=interval_ms) <= 120
    assert (_parse(r["from"]), _parse(r["to"])) == (start, end)
    width = dt.timedelta(milliseconds=interval_ms)
    inside = [e for e in EVENTS if start <= e <= end]
    assert sum(b["value"] for b in r["buckets"]) == len(inside) > 0
    keys = [_parse(b["key"]) for b in r["buckets"]]
    assert keys == sorted(keys)
    for k, b in zip(keys, r["buckets"], strict=True):
        assert (k - dt.datetime(2000, 1, 3)) % width == dt.timedelta(0)  # aligned steps
        assert b["value"] == sum(1 for e in inside if k <= e < k + width)


def test_fixed_intervals_take_milliseconds_and_refuse_too_many_buckets(base: str):
    r = _histogram(base, T0, T0 + dt.timedelta(seconds=1), interval="100ms")
    assert r["interval"] == 0.1
    assert [b["value"] for b in r["buckets"]] == [34, 16]  # events 3 ms apart from T0
    body = {"from": T0.isoformat() + "Z", "to": (T0 + dt.timedelta(hours=1)).isoformat() + "Z",
            "aggs": {"type": "date_histogram", "interval": "1ms"}}
    req = urllib.request.Request(base + "/api/aggregate", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 400
