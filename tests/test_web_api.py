"""The query API over real HTTP: aggregations, paging, fields, exporters, admin, auth and
OpenAPI; and the CLI's tokens and local key against a real `netmeta serve`."""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from netmeta import config
from netmeta.demo import run as run_demo
from netmeta.pipeline import build_store
from netmeta.store.duckdb import Store
from netmeta.web.app import HttpServer, create_app

from .conftest import free_port
from .servers import NETMETA


class Client:
    def __init__(self, base: str, token: str | None = None) -> None:
        self.base, self.token = base, token

    def call(self, path: str, body: Any = None, method: str | None = None,
             token: str | None = None) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json"}
        tok = token if token is not None else self.token
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, headers=headers,
                                     method=method or ("POST" if data else "GET"))
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                ctype = r.headers.get("content-type", "")
                return r.status, json.loads(raw) if "json" in ctype else raw.decode()
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def ok(self, path: str, body: Any = None, method: str | None = None) -> Any:
        status, data = self.call(path, body, method)
        assert status in (200, 201), (status, data)
        return data

    def agg(self, aggs: dict[str, Any], q: str = "", **kw: Any) -> Any:
        return self.ok("/api/aggregate", {"q": q, "aggs": aggs, **kw})


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Client, Store]]:
    from netmeta import metrics
    from netmeta.store import catalog

    data = tmp_path_factory.mktemp("api") / "data"
    cfg = config.load(None, str(data))
    cfg.pipeline.workers = 0
    # live exporter counters are this process's: drop what earlier tests' pipelines fed
    metrics.LIVE.clear()
    run_demo(cfg, 1500)
    store = build_store(cfg)  # the demo's inputs and their streams
    port = free_port()
    server = HttpServer(create_app(store, "token"), "127.0.0.1", port)
    server.start()
    token = catalog.create_token(store, "tests")["token"]
    try:
        yield Client(f"http://127.0.0.1:{port}", token), store
    finally:
        server.stop()
        store.close()


def test_tokens_are_required_and_checked(api: tuple[Client, Store]):
    client, _ = api
    assert client.call("/api/search", token="")[0] == 401
    assert client.call("/api/search", token="nmt_x_y")[0] == 401
    assert client.call("/openapi.json", token="")[0] == 401
    assert client.call("/healthz", token="")[0] == 200  # probes and Prometheus stay open
    assert client.call("/metrics", token="")[0] == 200
    made = client.ok("/api/tokens", {"name": "second"})
    assert made["token"].startswith("nmt_")
    assert client.call("/api/search?limit=1", token=made["token"])[0] == 200
    listed = client.ok("/api/tokens")["tokens"]
    assert {"tests", "second"} <= {t["name"] for t in listed}
    assert all("token" not in t and "digest" not in t for t in listed)  # hashes stay inside
    client.ok(f"/api/tokens/{made['id']}", method="DELETE")
    assert client.call("/api/search?limit=1", token=made["token"])[0] == 401


def test_terms_nested_composite_and_metrics_are_one_query_each(api: tuple[Client, Store]):
    client, store = api
    top = client.agg({"type": "terms", "field": "destination.port", "size": 3,
                      "sub": {"type": "terms", "field": "_input", "size": 2}})["buckets"]
    assert [b["key"] for b in top][:1] == ["443"]
    assert all(1 <= len(b["sub"]) <= 2 and sum(s["value"] for s in b["sub"]) <= b["value"]
               for b in top)
    # the same counts as a plain SQL over the store's files
    rel = store.events_relation(None, None)
    n443, = store.cursor().execute(
        f'SELECT count(*) FROM ({rel}) WHERE "destination.port" = 443').fetchone()
    assert top[0]["value"] == n443
    by_bytes = client.agg({"type": "terms", "field": ["source.ip", "destination.ip"],
                           "size": 5, "metric": {"type": "sum", "field": "network.bytes"}})
    keys = [b["key"] for b in by_bytes["buckets"]]
    assert len(keys) == 5 and all(len(k) == 2 for k in keys)
    values = [b["value"] for b in by_bytes["buckets"]]
    assert values == sorted(values, reverse=True)
    card = client.agg({"type": "metric", "metric": {"type": "cardinality",
                                                    "field": "source.ip"}})["value"]
    exact, = store.cursor().execute(
        f'SELECT count(DISTINCT "source.ip") FROM ({rel})').fetchone()
    assert abs(card - exact) <= max(2, exact * 0.1)  # HyperLogLog, as Elasticsearch
    rate = client.agg({"type": "metric", "metric": {"type": "ratio",
                                                    "q": "dns.response_code:NXDOMAIN"}},
                      q="_input:packetbeat and dns.question.name:*")["value"]
    assert 0 < rate < 1
    avg = client.agg({"type": "metric", "metric": {"type": "avg", "field": "network.bytes"}})
    assert avg["value"] > 0
    # fields kept in the JSON column aggregate the same way
    apps = client.agg({"type": "terms", "field": "gigamon.ami.app_name", "size": 20})
    assert {"https", "dns", "http"} <= {b["key"] for b in apps["buckets"]}
    expiring = client.agg({"type": "terms", "field": "tls.server.subject", "order": "asc",
                           "metric": {"type": "min", "field": "tls.server.not_after"}},
                          q='tls.server.not_after < "now+30d"')["buckets"]
    assert expiring and expiring[0]["value"] <= expiring[-1]["value"]


def test_date_histogram_with_series_covers_the_range(api: tuple[Client, Store]):
    client, _ = api
    r = client.agg({"type": "date_histogram", "interval": "auto",
                    "sub": {"type": "terms", "field": "_input", "size": 3}},
                   **{"from": "now-24h", "to": "now"})
    assert r["interval"] == 900  # 24 h in at most 120 buckets
    assert len(r["buckets"]) > 48
    series = {s["key"] for b in r["buckets"] for s in b["sub"]}
    assert len(series) == 3
    total = sum(b["value"] for b in r["buckets"])
    top3 = client.agg({"type": "terms", "field": "_input", "size": 3},
                      **{"from": "now-24h", "to": "now"})["buckets"]
    assert total == sum(b["value"] for b in top3)
    hourly = client.agg({"type": "date_histogram", "interval": "1h",
                         "metric": {"type": "sum", "field": "network.bytes"}},
                        **{"from": "now-24h", "to": "now"})
    assert hourly["interval"] == 3600 and len(hourly["buckets"]) <= 25


def test_bad_specs_and_queries_are_400_with_a_reason(api: tuple[Client, Store]):
    client, _ = api
    for spec, words in (({"type": "nope"}, "aggregation type"),
                        ({"type": "terms"}, "needs a field"),
                        ({"type": "terms", "field": "x", "size": 0}, "size"),
                        ({"type": "terms", "field": "a", "sub": {"type": "terms", "field": "b",
                          "sub": {"type": "terms", "field": "c"}}}, "does not nest"),
                        ({"type": "metric", "metric": {"type": "sum", "field": "source.ip"}},
                         "numeric"),
                        ({"type": "date_histogram", "interval": "1s"}, "buckets")):
        status, body = client.call("/api/aggregate", {"aggs": spec,
                                                      "from": "now-24h", "to": "now"})
        assert status == 400 and words in body["error"], (spec, body)
    status, body = client.call("/api/search?q=destination.port%3Aabc")
    assert status == 400 and "expects a number" in body["error"]


def test_search_pages_with_a_cursor_in_any_sort_order(api: tuple[Client, Store]):
    client, _ = api
    q = "event.action:netflow_flow"  # (v9 options records share ids with flows: reported)
    total = client.ok(f"/api/search?q={q}&limit=1")["total"]
    for sort in ("@timestamp:desc", "network.bytes:asc"):
        seen: list[str] = []
        cursor = ""
        values = []
        while True:
            page = client.ok(f"/api/search?q={q}&limit=400&sort={sort}&total=false"
                             f"&fields=network.bytes,@timestamp" + (f"&cursor={cursor}"
                                                                    if cursor else ""))
            seen += [h["_id"] for h in page["hits"]]
            values += [h[sort.split(":")[0]] for h in page["hits"]]
            cursor = page["next"]
            if not cursor:
                break
        assert len(seen) == len(set(seen)) == total
        if sort.endswith("asc"):
            assert values == sorted(values)
        else:
            assert values == sorted(values, reverse=True)
    assert client.call("/api/search?cursor=garbage")[0] == 400
    assert client.call("/api/search?sort=related.ip")[0] == 400  # a list: not sortable


def test_fields_lists_typed_and_json_fields_with_types(api: tuple[Client, Store]):
    client, _ = api
    fields = {f["name"]: f for f in client.ok("/api/fields")["fields"]}
    assert fields["destination.port"]["type"] == "long" and fields["destination.port"]["typed"]
    assert fields["source.ip"]["type"] == "ip"
    assert fields["gigamon.ami.app_name"]["typed"]  # a column: the Gigamon dashboard's
    assert "netflow.exporter.version" in fields and not fields["netflow.exporter.version"][
        "typed"]  # kept in the event's JSON
    assert "http.request.method" in fields and "tls.client.ja3" in fields


def test_exporters_show_health_templates_sampling_and_loss(api: tuple[Client, Store]):
    client, _ = api
    rows = {r["exporter"]: r for r in client.ok("/api/exporters")["exporters"]}
    demo = {"192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.20", "192.0.2.21"}
    assert demo <= set(rows)  # (other tests of this process may have fed live counters)
    assert rows["192.0.2.20"]["sampling_rate"] == 512
    assert rows["192.0.2.20"]["counter_samples"] > 0
    assert [t["id"] for t in rows["192.0.2.12"]["templates"]] == [256]
    assert {t["id"] for t in rows["192.0.2.11"]["templates"]} == {256, 257}
    assert all(rows[e]["events"] > 0 and rows[e]["last_event"] for e in demo)
    # live counters come from the pipeline of this process: the demo's v5 exporter skipped
    # 60 flows of sequence numbers
    assert rows["192.0.2.10"]["live"]["lost"] == 60
    assert rows["192.0.2.10"]["live"]["datagrams"] > 0


def test_index_sets_and_streams_are_listed_created_and_changed(api: tuple[Client, Store]):
    client, _ = api
    sets = {s["name"]: s for s in client.ok("/api/index-sets")["index_sets"]}
    assert sets["default"]["events"] > 0 and sets["default"]["retention_days"] == 90
    client.ok("/api/index-sets", {"name": "short", "title": "Short", "retention_days": 3})
    assert client.call("/api/index-sets", {"name": "short"})[0] == 409
    assert client.call("/api/index-sets", {"name": "Bad Name"})[0] == 400
    client.ok("/api/index-sets/short", {"retention_days": 7}, method="PATCH")
    sets = {s["name"]: s for s in client.ok("/api/index-sets")["index_sets"]}
    assert sets["short"]["retention_days"] == 7
    assert client.call("/api/index-sets/none", {"retention_days": 7}, "PATCH")[0] == 404
    assert client.call("/api/index-sets/short", {"retention_days": 0}, "PATCH")[0] == 400
    streams = {s["name"]: s for s in client.ok("/api/streams")["streams"]}
    assert streams["netflow"]["active"] and streams["netflow"]["events"] > 0
    made = client.ok("/api/streams", {"name": "dns_only", "index_set": "short",
                                      "rule": "destination.port:53"})
    assert made["active"] is True
    status, body = client.call("/api/streams", {"name": "bad", "rule": "a:("})
    assert status == 400 and "position" in body["error"]
    assert client.call("/api/streams", {"name": "x", "index_set": "nope"})[0] == 404
    streams = {s["name"]: s for s in client.ok("/api/streams")["streams"]}
    assert streams["dns_only"]["active"] is True


def test_openapi_and_docs_are_served_without_the_internet(api: tuple[Client, Store]):
    client, _ = api
    spec = client.ok("/openapi.json")
    for path in ("/api/search", "/api/aggregate", "/api/fields", "/api/failures",
                 "/api/exporters", "/api/streams", "/api/index-sets"):
        assert path in spec["paths"], path
    page = client.ok("/docs")
    assert "/vendor/swagger-ui-bundle.js" in page
    urls = [u for u in page.replace("'", '"').split('"') if u.startswith(("http:", "https:"))]
    assert urls == [], urls
    for asset in ("/vendor/swagger-ui-bundle.js", "/vendor/plotly.min.js",
                  "/vendor/worldmap.svg", "/static/app.js"):
        status, _ = client.call(asset, token="")
        assert status == 200, asset


def test_cli_tokens_and_queries_against_a_serve_that_requires_tokens(tmp_path: Path):
    import time

    port = free_port()
    cfg = tmp_path / "netmeta.yml"
    cfg.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"),
                                   "http": {"port": port}, "pipeline": {"workers": 0}}))

    def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([NETMETA, *args, "--config", str(cfg)], capture_output=True,
                              text=True, timeout=120, check=check)

    cli("demo", "--sessions", "300")
    assert "holds a store already" in cli("demo", check=False).stderr
    offline = cli("token", "create", "offline").stdout.strip()  # no serve: into the store
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen([NETMETA, "serve", "--config", str(cfg)], stdout=log,
                                stderr=log)
    try:
        client = Client(f"http://127.0.0.1:{port}")
        deadline = time.monotonic() + 30
        while True:
            try:
                if client.call("/healthz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
            time.sleep(0.1)
        assert client.call("/api/search")[0] == 401
        assert client.call("/api/search", token=offline)[0] == 200
        # the CLI authenticates with the local key serve wrote (mode 0600) in the data dir
        key = tmp_path / "data" / "http.key"
        assert key.stat().st_mode & 0o777 == 0o600
        out = cli("search", "--json", "--limit", "3", "destination.port:53").stdout
        assert len(out.splitlines()) == 3
        assert "53" in cli("top", "destination.port").stdout
        online = cli("token", "create", "online").stdout.strip()  # through serve's API
        listed = cli("token", "list").stdout
        assert "offline" in listed and "online" in listed
        token_id = online.split("_")[1]
        cli("token", "revoke", token_id)
        assert client.call("/api/search", token=online)[0] == 401
        assert "revoked" in cli("token", "list").stdout
    finally:
        proc.terminate()
        proc.wait(timeout=30)
