"""GELF inputs over real sockets on 127.0.0.1: the listeners alone (UDP chunks, TCP frames,
HTTP), then end to end through `netmeta serve`, checking the stored documents, the
failures and the Packetbeat stream and index set via the HTTP API."""

from __future__ import annotations

import concurrent.futures as cf
import gzip
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from netmeta.config import GelfInput
from netmeta.decode.gelf import chunk
from netmeta.sources.gelf import Batcher, GelfTcp, GelfUdp, create_app
from netmeta.web.app import HttpServer

from .conftest import free_port
from .servers import Serve
from .test_gelf import seed_message

GELF = GelfInput(chunk_timeout=0.5)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Collected:
    """What the listeners hand over (the pipeline's place)."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, str]] = []
        self.rejects: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()

    def submit(self, messages: list[tuple[bytes, str]], times: list[float],
               rejects: list[tuple[str, bytes]]) -> None:
        assert len(times) == len(messages)
        with self.lock:
            self.messages += messages
            self.rejects += rejects

    def wait(self, cond: Callable[[], bool], what: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if cond():
                    return
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}: {self.messages} {self.rejects}")


def msg(i: int, size: int = 0) -> bytes:
    return json.dumps({"version": "1.1", "host": "h", "short_message": f"m{i}",
                       "_pad": "x" * size}).encode()


@pytest.fixture
def udp() -> Iterator[tuple[GelfUdp, Collected, tuple[str, int]]]:
    got = Collected()
    src = GelfUdp("127.0.0.1", free_udp_port(), GELF, Batcher(got.submit, age=0.05))
    stop = threading.Event()
    t = threading.Thread(target=src.run, args=(stop,), daemon=True)
    t.start()
    try:
        yield src, got, src.address
    finally:
        stop.set()
        t.join(timeout=5)
        src.close()


def test_udp_chunks_out_of_order_duplicated_and_compressed(udp: Any) -> None:
    src, got, addr = udp
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    plain, zl, gz = msg(1, 6000), zlib.compress(msg(2, 6000)), gzip.compress(msg(3, 20))
    whole = msg(4)
    parts = chunk(plain, b"AAAAAAAA", 1000)
    s.sendto(whole, addr)
    for p in [*reversed(parts), parts[2], parts[0]]:
        s.sendto(p, addr)
    for p in chunk(zl + b"", b"BBBBBBBB", 30)[::-1]:
        s.sendto(p, addr)
    for p in chunk(gz, b"CCCCCCCC", 50):
        s.sendto(p, addr)
    got.wait(lambda: len(got.messages) == 4, "four messages")
    assert sorted(m for m, _ in got.messages) == sorted([whole, plain, zl, gz])
    assert got.rejects == []
    assert src.chunks.stats.duplicates == 2 and src.chunks.pending == 0
    assert all(peer.startswith("127.0.0.1:") for _, peer in got.messages)


def test_udp_missing_chunk_fails_after_the_timeout(udp: Any) -> None:
    src, got, addr = udp
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    parts = chunk(msg(5, 3000), b"DDDDDDDD", 1000)
    for p in parts[1:]:
        s.sendto(p, addr)
    started = time.monotonic()
    got.wait(lambda: len(got.rejects) == 1, "the timeout failure")
    assert time.monotonic() - started >= 0.4
    why, head = got.rejects[0]
    assert "incomplete after 0.5 s" in why and f"{len(parts) - 1} of {len(parts)}" in why
    assert got.messages == [] and src.chunks.pending == 0 and src.chunks.total == 0


def test_udp_hostile_datagrams_are_counted_rejects(udp: Any) -> None:
    src, got, addr = udp
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for d in (b"\x1e\x0f", b"\x1e\x0f12345678\x00\x00", b"\x1e\x0f12345678\x09\x02x",
              b"\x1e\x0f12345678\x00\xffx"):
        s.sendto(d, addr)
    s.sendto(msg(6), addr)  # still listening
    got.wait(lambda: len(got.rejects) == 4 and len(got.messages) == 1, "rejects")
    assert [m for m, _ in got.messages] == [msg(6)]


def test_tcp_null_delimited_frames_split_across_writes() -> None:
    got = Collected()
    src = GelfTcp("127.0.0.1", free_port(), GelfInput(max_message=4096),
                  Batcher(got.submit, age=0.05))
    stop = threading.Event()
    t = threading.Thread(target=src.run, args=(stop,), daemon=True)
    t.start()
    try:
        with socket.create_connection(src.address) as c:
            stream = msg(1) + b"\x00" + msg(2) + b"\x00" + b"y" * 5000 + b"\x00" + msg(3)
            for i in range(0, len(stream), 7):  # tiny writes: frames cross every read
                c.sendall(stream[i:i + 7])
                if i % 700 == 0:
                    time.sleep(0.001)
        got.wait(lambda: len(got.messages) == 3 and got.rejects, "three frames, one refused")
        assert [m for m, _ in got.messages] == [msg(1), msg(2), msg(3)]  # last: at close
        assert "frame longer than 4096 bytes" in got.rejects[0][0]
    finally:
        stop.set()
        t.join(timeout=5)
        src.close()


def test_http_post_answers_once_stored() -> None:
    stored: list[tuple[list[tuple[bytes, str]], list[tuple[str, bytes]]]] = []

    def store(messages: list[tuple[bytes, str]], rejects: list[tuple[str, bytes]]
              ) -> cf.Future[None]:
        stored.append((messages, rejects))
        fut: cf.Future[None] = cf.Future()
        threading.Timer(0.2, fut.set_result, (None,)).start()  # "committed" later
        return fut

    port = free_port()
    server = HttpServer(create_app("gh", GelfInput(max_message=10_000), store), "127.0.0.1",
                        port)
    server.start()
    url = f"http://127.0.0.1:{port}/gelf"

    def post(body: bytes, **headers: str) -> tuple[int, Any]:
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())
    try:
        t0 = time.monotonic()
        assert post(msg(1)) == (202, {})
        assert time.monotonic() - t0 >= 0.15
        assert post(gzip.compress(msg(2)), **{"Content-Encoding": "gzip"})[0] == 202
        assert post(zlib.compress(msg(3)))[0] == 202  # compressed, undeclared
        status, body = post(b"{not json")
        assert status == 400 and body["error"] == "bad_message"
        assert post(b"x" * 20_000)[0] == 413
        assert post(msg(4), **{"Content-Encoding": "br"})[0] == 400
        assert [m for ms, _ in stored for m, _ in ms] == [msg(1), msg(2), zlib.compress(msg(3))]
        assert sum(len(r) for _, r in stored) == 2  # bad JSON and the unknown encoding
    finally:
        server.stop()


# ---------------------------------------------------------------- end to end

def _serve(tmp: Path, **inputs: dict[str, Any]) -> Serve:
    return Serve(tmp, [str(tmp / "none" / "*.log")], inputs=inputs)


def _failures(serve: Serve) -> list[dict[str, Any]]:
    return (serve.get("/api/failures") or {"failures": []})["failures"]


def test_serve_gelf_udp_and_tcp_store_packetbeat_events(tmp_path: Path) -> None:
    uport, tport, hport = free_udp_port(), free_port(), free_port()
    serve = _serve(tmp_path,
                   gu={"type": "gelf", "listen": "127.0.0.1", "port": uport,
                       "gelf": {"chunk_timeout": 0.5}},
                   gt={"type": "gelf", "protocol": "tcp", "listen": "127.0.0.1",
                       "port": tport},
                   gh={"type": "gelf", "protocol": "http", "listen": "127.0.0.1",
                       "port": hport})
    seed = seed_message()
    other = json.dumps({"version": "1.1", "host": "app1", "short_message": "hello gelf",
                        "level": 4, "_user": "bob"}).encode()
    with serve:
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for p in reversed(chunk(zlib.compress(seed), b"E2E00001", 300)):
            u.sendto(p, ("127.0.0.1", uport))
        u.sendto(other, ("127.0.0.1", uport))
        u.sendto(b"\x1e\x0fjunk", ("127.0.0.1", uport))
        for p in chunk(seed, b"E2E00002", 500)[1:]:  # never completed
            u.sendto(p, ("127.0.0.1", uport))
        with socket.create_connection(("127.0.0.1", tport)) as t:
            t.sendall(seed + b"\x00" + b"[1, 2]\x00" + other + b"\x00")
        req = urllib.request.Request(f"http://127.0.0.1:{hport}/gelf",
                                     data=gzip.compress(seed),
                                     headers={"Content-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 202
        serve.wait_for(lambda: serve.total() == 5, "five events")
        serve.wait_for(lambda: len(_failures(serve)) == 3, "three failures")

        hits = serve.get("/api/search", q="query_request:dynamodb.us-east-1.amazonaws.com",
                         limit=10)["hits"]
        assert len(hits) == 3
        for name in ("gu", "gt", "gh"):  # one from each transport
            assert serve.total(f"_input:{name} and dns.question.type:A") == 1
        for h in hits:
            assert h["dns"]["question"]["name"] == "dynamodb.us-east-1.amazonaws.com"
            assert h["dns"]["answers"][0]["ttl"] == 4
            assert h["dns"]["flags"]["recursion_desired"] is True
            assert h["related"]["ip"] == ["172.31.71.138", "172.31.0.2", "3.218.180.17"]
            assert h["event"]["dataset"] == "network_traffic.dns"
            assert h["gim_event_type_code"] == "140200"
            assert h["network"]["community_id"] == "1:n2oEH592UySL71Gm21GwZS2Jiwo="
        assert serve.total("gim_event_category:\"name resolution\"") == 3
        assert serve.total('_streams:"Packetbeat Messages"') == 3
        # not Packetbeat: the input's own stream, in the default index set
        assert serve.total("_streams:gu and message:\"hello gelf\"") == 1
        assert serve.total("_streams:gt and message:\"hello gelf\"") == 1
        assert serve.total('_streams:gu and agent.type:packetbeat') == 0
        plain = serve.get("/api/search", q="message:\"hello gelf\"", limit=10)["hits"]
        assert len(plain) == 2
        for h in plain:
            assert h["host"]["name"] == "app1" and h["gelf"] == {"user": "bob"}
            assert h["log"]["syslog"]["severity"] == {"code": 4, "name": "warning"}
        whys = sorted(f["error.message"] for f in _failures(serve))
        assert any("shorter than its 12-byte header" in w for w in whys)
        assert any("incomplete after 0.5 s" in w for w in whys)
        assert any("a GELF message is a JSON object" in w for w in whys)
        metrics = serve.get("/metrics")
        assert 'netmeta_stream_events_stored_total{stream="Packetbeat Messages"} 3.0' in metrics
        assert 'netmeta_input_failures_total{input="gu"} 2.0' in metrics
        assert 'netmeta_input_failures_total{input="gt"} 1.0' in metrics
        assert 'netmeta_udp_kernel_drops{input="gu"} 0.0' in metrics  # loss would show here
    # the index set was created at first start; a second start leaves it alone
    import duckdb
    con = duckdb.connect(str(serve.data / "netmeta.duckdb"), read_only=True)
    try:
        sets = dict(con.execute("SELECT name, retention_days FROM index_sets").fetchall())
        title = con.execute("SELECT title FROM index_sets WHERE name = 'packetbeat_logs'"
                            ).fetchone()
    finally:
        con.close()
    assert sets["packetbeat_logs"] == 90 and title == ("Packetbeat Logs",)


# ---------------------------------------------------------------- configuration

def _load(tmp: Path, body: dict[str, Any]) -> Any:
    import yaml

    from netmeta.config import load
    p = tmp / "c.yml"
    p.write_text(yaml.safe_dump(body))
    return load(p)


def test_config_defaults_and_the_packetbeat_stream(tmp_path: Path) -> None:
    from netmeta.worker import streams_of
    cfg = _load(tmp_path, {"inputs": {"g": {"type": "gelf"}, "sys": {"type": "syslog"}}})
    assert cfg.inputs["g"].listen_port == 12201 and cfg.inputs["g"].protocol == "udp"
    assert cfg.index_sets["packetbeat_logs"].title == "Packetbeat Logs"
    assert cfg.index_sets["packetbeat_logs"].retention_days == 90
    streams = {s.name: s for s in streams_of(cfg)}
    assert streams["Packetbeat Messages"].inputs == ("g",)
    assert streams["Packetbeat Messages"].rule == "agent.type:packetbeat"
    assert streams["Packetbeat Messages"].index_set == "packetbeat_logs"
    assert streams["g"].rule == "not (agent.type:packetbeat)" and streams["sys"].rule == ""


def test_configured_stream_and_index_set_are_left_alone(tmp_path: Path) -> None:
    cfg = _load(tmp_path, {
        "index_sets": {"packetbeat_logs": {"title": "mine", "retention_days": 7}},
        "streams": [{"name": "Packetbeat Messages", "index_set": "packetbeat_logs"}],
        "inputs": {"g": {"type": "gelf", "protocol": "tcp"}}})
    assert cfg.index_sets["packetbeat_logs"].retention_days == 7
    assert [s.rule for s in cfg.streams] == [""]
    from netmeta.worker import streams_of
    assert [s.name for s in streams_of(cfg)] == ["Packetbeat Messages"]  # takes all of g


@pytest.mark.parametrize(("inp", "key"), [
    ({"type": "syslog", "protocol": "http"}, "inputs.x.protocol"),
    ({"type": "gelf", "gelf": {"chunk_timeout": 0}}, "inputs.x.gelf.chunk_timeout"),
    ({"type": "gelf", "gelf": {"max_message": 10}}, "inputs.x.gelf.max_message"),
    ({"type": "gelf", "gelf": {"path": "gelf"}}, "inputs.x.gelf.path"),
    ({"type": "gelf", "port": 70000}, "inputs.x.port"),
])
def test_bad_gelf_settings_name_their_key(tmp_path: Path, inp: dict[str, Any],
                                          key: str) -> None:
    from netmeta.config import ConfigError
    with pytest.raises(ConfigError, match=f"key {key}"):
        _load(tmp_path, {"inputs": {"x": inp}})
