"""Gigamon AMI over HTTP, end to end against `netmeta serve` on 127.0.0.1."""

from __future__ import annotations

import concurrent.futures as cf
import gzip
import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from .conftest import PEER, free_port
from .servers import Serve

CASES = [c["json"] for c in json.loads(
    (PEER / "gigamon" / "pipeline" / "test-ami.json").read_text())["events"]]


def post(port: int, body: bytes, headers: dict[str, str] | None = None,
         path: str = "/ami") -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                                 headers={"Content-Type": "application/json",
                                          **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def serve_with_ami(tmp_path: Path) -> tuple[Serve, int]:
    port = free_port()
    serve = Serve(tmp_path, [str(tmp_path / "none" / "*.log")], inputs={"ami": {
        "type": "gigamon_ami", "listen": "127.0.0.1", "port": port,
        "http": {"path": "/ami", "secret": {"header": "X-Gigamon-Secret", "value": "s3"},
                 "max_entries": 100}}})
    return serve, port


AUTH = {"X-Gigamon-Secret": "s3"}


def test_batches_are_stored_before_200_and_retries_are_not_stored_twice(tmp_path: Path
                                                                        ) -> None:
    serve, port = serve_with_ami(tmp_path)
    with serve:
        body = orjson.dumps(CASES[:40])
        status, answer = post(port, body, AUTH)
        assert (status, answer) == (200, {"stored": 40})
        # stored before the answer: searchable at once
        assert serve.total("_input:ami") == 40
        status, answer = post(port, body, AUTH)  # the sender retried
        assert status == 200 and answer["duplicate"] is True
        assert serve.total("_input:ami") == 40
        status, _ = post(port, gzip.compress(orjson.dumps(CASES[40:])),
                         {**AUTH, "Content-Encoding": "gzip"})
        assert status == 200
        assert serve.total("_input:ami") == len(CASES)
        hits = serve.get("/api/search", q="event.id:*", limit=1)["hits"]
        assert hits[0]["event"]["kind"] == "event"
        labelled = orjson.dumps([{**CASES[0], "id": "labelled", "labels": {"site": "par1",
                                                                          "env": "prod"}}])
        assert post(port, labelled, AUTH)[0] == 200
        hit = serve.get("/api/search", q="labels.site:par1", limit=1)["hits"][0]
        assert hit["labels"] == {"site": "par1", "env": "prod"}
        assert "labels" not in hit["gigamon"]["ami"]


def test_refusals_are_clear_and_counted(tmp_path: Path) -> None:
    serve, port = serve_with_ami(tmp_path)
    with serve:
        assert post(port, b"{}", {"X-Gigamon-Secret": "wrong"})[0] == 401
        assert post(port, b"{}")[0] == 401
        status, answer = post(port, b"{broken", AUTH)
        assert status == 400 and answer["error"] == "bad_json"
        status, answer = post(port, orjson.dumps([{"a": 1}] * 101), AUTH)
        assert status == 413 and answer["error"] == "too_many_entries"
        assert post(port, gzip.compress(b"[" + b" " * (1 << 20) + b"]"),
                    {**AUTH, "Content-Encoding": "gzip"})[0] == 200  # within limits
        metrics = serve.get("/metrics")
        assert 'netmeta_push_refused_total{input="ami",reason="unauthorized"} 2.0' in metrics
        assert 'netmeta_push_refused_total{input="ami",reason="bad_json"} 1.0' in metrics


def test_parallel_writers(tmp_path: Path) -> None:
    serve, port = serve_with_ami(tmp_path)
    with serve:
        batches = [orjson.dumps([{**c, "id": f"{k}-{i}"} for i, c in enumerate(CASES[:25])])
                   for k in range(8)]
        with cf.ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda b: post(port, b, AUTH)[0], batches))
        assert statuses == [200] * 8
        assert serve.total("_input:ami") == 8 * 25
        # the same batch from several writers at once (a retry racing the original)
        same = orjson.dumps([{**c, "id": f"same-{i}"} for i, c in enumerate(CASES[:10])])
        with cf.ThreadPoolExecutor(6) as pool:
            answers = list(pool.map(lambda _: post(port, same, AUTH), range(6)))
        assert [a[0] for a in answers] == [200] * 6
        assert sum(a[1]["stored"] for a in answers) == 10
        assert serve.total("_input:ami") == 8 * 25 + 10


def test_https(tmp_path: Path) -> None:
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    port = free_port()
    serve = Serve(tmp_path, [str(tmp_path / "none" / "*.log")], inputs={"ami": {
        "type": "gigamon_ami", "listen": "127.0.0.1", "port": port,
        "http": {"tls": {"cert": str(cert), "key": str(key)}}}})
    ctx = ssl.create_default_context(cafile=str(cert))
    with serve:
        req = urllib.request.Request(f"https://127.0.0.1:{port}/", method="POST",
                                     data=orjson.dumps(CASES[:3]))
        with urllib.request.urlopen(req, timeout=30, context=ctx) as r:
            assert r.status == 200 and json.loads(r.read()) == {"stored": 3}
        assert serve.total("_input:ami") == 3
