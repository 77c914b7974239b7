"""The Beats (Lumberjack v2) server over real sockets on 127.0.0.1: windows acknowledged
once stored, keep-alives while waiting, both sequence styles, concurrency, disconnects,
hostile streams, TLS with client certificates, and a client netmeta did not write."""

from __future__ import annotations

import concurrent.futures as cf
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pylogbeat
import pytest

from netmeta.decode.lumberjack import LumberjackError, encode_json, encode_window
from netmeta.sources.beats import Batch, BeatsServer, Settings, server_context

from .conftest import wait_until
from .lumberjack_client import Client


class Recorder:
    """Stands in for the pipeline: a batch counts as stored ``delay`` seconds after it was
    handed over (the real pipeline is used in test_beats_pipeline below)."""

    def __init__(self, delay: float = 0.0, fail: bool = False, block: float = 0.0) -> None:
        self.delay, self.fail, self.block = delay, fail, block
        self.batches: list[Batch] = []
        self.lock = threading.Lock()
        self.errors: list[tuple[str, LumberjackError]] = []

    def __call__(self, batch: Batch) -> cf.Future[None]:
        time.sleep(self.block)  # as submitting to a full pipeline blocks
        fut: cf.Future[None] = cf.Future()

        def done() -> None:
            if self.fail:
                fut.set_exception(RuntimeError("store is down"))
                return
            with self.lock:
                self.batches.append(batch)
            fut.set_result(None)

        if self.delay:
            threading.Timer(self.delay, done).start()
        else:
            done()
        return fut

    def events(self) -> list[dict[str, object]]:
        with self.lock:
            return [orjson.loads(p) for b in self.batches for p in b.payloads]

    def on_error(self, peer: str, e: LumberjackError) -> None:
        self.errors.append((peer, e))


def serve(rec: Recorder, tls: ssl.SSLContext | None = None, **kw: object) -> BeatsServer:
    s = BeatsServer("127.0.0.1", 0, rec, settings=Settings(**kw), tls=tls,  # type: ignore[arg-type]
                    on_error=rec.on_error)
    s.start()
    return s


@pytest.fixture
def rec() -> Recorder:
    return Recorder()


@pytest.fixture
def server(rec: Recorder) -> Iterator[BeatsServer]:
    s = serve(rec)
    yield s
    s.stop()


def ev(i: int) -> dict[str, object]:
    return {"@timestamp": "2024-01-01T00:00:00Z", "type": "flow", "n": i}


def test_windows_restarting_at_one(server: BeatsServer, rec: Recorder) -> None:
    c = Client(server.address[1], restart_seq=True)
    assert c.send([ev(i) for i in range(3)]) == 3
    assert c.send([ev(i) for i in range(3, 8)]) == 5
    c.close()
    assert [e["n"] for e in rec.events()] == list(range(8))


def test_sequence_counting_across_windows(server: BeatsServer, rec: Recorder) -> None:
    c = Client(server.address[1], restart_seq=False, compress=False)
    assert c.send([ev(i) for i in range(3)]) == 3
    assert c.send([ev(i) for i in range(3, 8)]) == 8
    assert c.send([ev(8)]) == 9
    c.close()
    assert [e["n"] for e in rec.events()] == list(range(9))


def test_pylogbeat_client(server: BeatsServer, rec: Recorder) -> None:
    """pylogbeat (PyPI) keeps counting across windows and compresses every window."""
    with pylogbeat.PyLogBeatClient("127.0.0.1", server.address[1], timeout=10) as client:
        client.send([ev(0), ev(1)])
        client.send([ev(2)])
        client.send([{"message": "plain", "n": 3}, ev(4)])
    assert [e["n"] for e in rec.events()] == [0, 1, 2, 3, 4]


def test_frames_split_at_every_byte_over_the_socket(server: BeatsServer, rec: Recorder
                                                    ) -> None:
    for compress in (True, False):
        c = Client(server.address[1], compress=compress)
        data, last = c.window_bytes([ev(i) for i in range(3)])
        for i in range(len(data)):  # TCP_NODELAY: one segment per byte
            c.sock.sendall(data[i:i + 1])
            if i % 16 == 0:
                time.sleep(0.001)
        assert c.await_ack(last) == 3
        c.close()
    assert [e["n"] for e in rec.events()] == [0, 1, 2] * 2


def test_pipelined_windows_acked_in_order(server: BeatsServer, rec: Recorder) -> None:
    """Beats send up to ``pipelining`` windows before reading ACKs."""
    c = Client(server.address[1], restart_seq=False)
    lasts = []
    for w in range(5):
        data, last = c.window_bytes([ev(w * 10 + i) for i in range(10)])
        c.sock.sendall(data)
        lasts.append(last)
    assert [c.await_ack(last) for last in lasts] == [10, 20, 30, 40, 50]
    c.close()
    assert len(rec.events()) == 50


def test_ack_only_once_stored_with_keepalives() -> None:
    rec = Recorder(delay=1.2)
    server = serve(rec, keepalive=0.2)
    try:
        c = Client(server.address[1])
        data, last = c.window_bytes([ev(i) for i in range(4)])
        t0 = time.monotonic()
        c.sock.sendall(data)
        assert c.read_ack() == 0  # a keep-alive: nothing acknowledged yet
        assert rec.events() == []
        assert c.await_ack(last) == 4
        assert time.monotonic() - t0 >= 1.2
        assert len(rec.events()) == 4  # stored before the ACK was sent
        assert c.keepalives >= 3
        c.close()
    finally:
        server.stop()


def test_keepalives_while_the_pipeline_is_full() -> None:
    rec = Recorder(block=1.0)
    server = serve(rec, keepalive=0.2)
    try:
        c = Client(server.address[1])
        assert c.send([ev(1), ev(2)]) == 2
        assert c.keepalives >= 3 and len(rec.events()) == 2
        c.close()
    finally:
        server.stop()


def test_big_window_acked_in_parts() -> None:
    rec = Recorder()
    server = serve(rec, max_batch=30)
    try:
        c = Client(server.address[1])
        data, _ = c.window_bytes([ev(i) for i in range(100)])
        c.sock.sendall(data)
        assert [c.read_ack() for _ in range(4)] == [30, 60, 90, 100]
        c.close()
        assert sorted(len(b.payloads) for b in rec.batches) == [10, 30, 30, 30]
    finally:
        server.stop()


def test_concurrent_connections(server: BeatsServer, rec: Recorder) -> None:
    def one(k: int) -> list[int]:
        c = Client(server.address[1], restart_seq=k % 2 == 0, compress=k % 3 != 0)
        acks = [c.send([ev(k * 1000 + w * 50 + i) for i in range(50)]) for w in range(6)]
        c.close()
        return acks

    with cf.ThreadPoolExecutor(24) as pool:
        results = list(pool.map(one, range(24)))
    for k, acks in enumerate(results):
        assert acks == ([50] * 6 if k % 2 == 0 else [50 * (w + 1) for w in range(6)])
    got = sorted(int(e["n"]) for e in rec.events())  # type: ignore[call-overload]
    assert got == sorted(k * 1000 + j for k in range(24) for j in range(300))


def test_disconnect_mid_window_hands_nothing_over(server: BeatsServer, rec: Recorder) -> None:
    c = Client(server.address[1], compress=False)
    frames = encode_window(10) + b"".join(
        encode_json(i + 1, orjson.dumps(ev(i))) for i in range(5))
    c.sock.sendall(frames + encode_json(6, b'{"n": 5, "cut')[:-3])  # and half a frame
    time.sleep(0.3)
    c.close()
    c = Client(server.address[1])  # the writer sends the window again
    assert c.send([ev(i) for i in range(10)]) == 10
    c.close()
    assert [e["n"] for e in rec.events()] == list(range(10))


def test_not_stored_is_not_acked() -> None:
    rec = Recorder(fail=True)
    server = serve(rec)
    try:
        c = Client(server.address[1], timeout=5)
        t0 = time.monotonic()
        with pytest.raises((ConnectionError, OSError)):
            c.send([ev(1)])
        assert time.monotonic() - t0 < 3  # closed at once, not left to time out
        c.close()
    finally:
        server.stop()


@pytest.mark.parametrize("stream, reason", [
    (encode_window(1) + b"2J\x00\x00\x00\x01\xff\xff\xff\xf0", "too_large"),
    (b"2C\x7f\xff\xff\xff", "too_large"),
    (b"GET / HTTP/1.1\r\n\r\n", "bad_version"),
    (encode_window(1) + b"2Z\x00\x00", "bad_type"),
    (encode_json(1, b"{}"), "bad_frame"),
])
def test_hostile_streams_close_the_connection(stream: bytes, reason: str) -> None:
    rec = Recorder()
    server = serve(rec, max_payload=1 << 20)
    try:
        s = socket.create_connection(("127.0.0.1", server.address[1]), timeout=5)
        s.sendall(stream)
        assert s.recv(16) == b""  # closed, nothing acknowledged
        s.close()
        wait_until(lambda: rec.errors)
        assert rec.errors[0][1].reason == reason
        assert server.stats.errors == {reason: 1}
        c = Client(server.address[1])  # the listener goes on
        assert c.send([ev(1)]) == 1
        c.close()
    finally:
        server.stop()


def test_zlib_bomb_refused() -> None:
    import struct
    import zlib
    rec = Recorder()
    server = serve(rec, max_decompressed=1 << 20)
    try:
        bomb = zlib.compress(encode_json(1, b'{"a":"' + b"a" * (32 << 20) + b'"}'), 9)
        s = socket.create_connection(("127.0.0.1", server.address[1]), timeout=5)
        s.sendall(encode_window(1) + b"2C" + struct.pack(">I", len(bomb)) + bomb)
        assert s.recv(16) == b""
        s.close()
        wait_until(lambda: rec.errors)
        assert "max_decompressed" in str(rec.errors[0][1])
    finally:
        server.stop()


def test_empty_window_answers_the_last_ack(server: BeatsServer) -> None:
    c = Client(server.address[1], restart_seq=False)
    assert c.send([ev(1), ev(2)]) == 2
    c.sock.sendall(encode_window(0))
    assert c.read_ack() == 2
    c.close()


def test_connection_limit() -> None:
    rec = Recorder()
    server = serve(rec, max_connections=2)
    try:
        a, b = Client(server.address[1]), Client(server.address[1])
        assert a.send([ev(1)]) == 1 and b.send([ev(2)]) == 1
        c = socket.create_connection(("127.0.0.1", server.address[1]), timeout=5)
        assert c.recv(16) == b""
        assert server.stats.refused == 1
        for s in (a, b):
            s.close()
        c.close()
    finally:
        server.stop()


# ---------------------------------------------------------------- TLS

def _certs(tmp: Path) -> dict[str, Path]:
    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=tmp)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *ec, "-days", "2", "-subj", "/CN=test ca", "-keyout", "ca.key",
        "-out", "ca.pem")
    for name in ("server", "client"):
        run("req", *ec, "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.csr")
        (tmp / f"{name}.ext").write_text("subjectAltName=IP:127.0.0.1\n")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem")
    return {n: tmp / n for n in ("ca.pem", "server.pem", "server.key", "client.pem",
                                 "client.key")}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _certs(tmp_path_factory.mktemp("certs"))


def _client_ctx(certs: dict[str, Path], with_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs["ca.pem"]))
    if with_cert:
        ctx.load_cert_chain(str(certs["client.pem"]), str(certs["client.key"]))
    return ctx


@pytest.mark.parametrize("client_auth", ["none", "optional", "required"])
def test_tls_and_client_certificates(certs: dict[str, Path], client_auth: str) -> None:
    rec = Recorder()
    tls = server_context(str(certs["server.pem"]), str(certs["server.key"]),
                         str(certs["ca.pem"]), client_auth)
    server = serve(rec, tls=tls)
    try:
        c = Client(server.address[1], tls=_client_ctx(certs, True))
        assert c.send([ev(1)]) == 1
        c.close()
        acked = 0
        try:
            c = Client(server.address[1], tls=_client_ctx(certs, False))
            try:
                acked = c.send([ev(2)])
            finally:
                c.close()
        except (ssl.SSLError, ConnectionError, OSError):
            pass
        assert acked == (0 if client_auth == "required" else 1)
        with pylogbeat.PyLogBeatClient(
                "127.0.0.1", server.address[1], timeout=10, ssl_enable=True,
                ca_certs=str(certs["ca.pem"]), certfile=str(certs["client.pem"]),
                keyfile=str(certs["client.key"])) as client:
            client.send([ev(3)])
        assert [e["n"] for e in rec.events()] == ([1, 3] if client_auth == "required"
                                                  else [1, 2, 3])
    finally:
        server.stop()


# ---------------------------------------------------------------- through netmeta serve

PEER = Path(__file__).resolve().parents[2] / "shared" / "peer" / "packetbeat"


def packetbeat_events() -> list[dict[str, object]]:
    out = []
    for name in ("dns", "flow", "http"):
        doc = orjson.loads((PEER / "network_traffic" / name / "sample_event.json").read_bytes())
        doc.pop("data_stream", None)
        doc["@metadata"] = {"beat": "packetbeat", "type": "_doc", "version": "8.17.0"}
        out.append(doc)
    return out


def test_stored_through_serve_before_the_ack(tmp_path: Path) -> None:
    from .conftest import free_port
    from .servers import Serve

    port = free_port()
    serve = Serve(tmp_path, [str(tmp_path / "none" / "*.log")], inputs={"pb": {
        "type": "beats", "listen": "127.0.0.1", "port": port}})
    events = packetbeat_events()
    with serve:
        c = Client(port)
        for w in range(3):
            batch = [{**e, "event": {**e["event"], "sequence": w}} for e in events]
            assert c.send(batch) == 3
            # acknowledged means stored: searchable the moment the ACK arrives
            assert serve.total("_input:pb") == 3 * (w + 1)
        c.close()
        c = Client(port)  # the first window again, on a new connection: a retry
        assert c.send([{**e, "event": {**e["event"], "sequence": 0}} for e in events]) == 3
        c.close()
        assert serve.total("_input:pb") == 9  # not stored twice
        assert 'netmeta_push_duplicates_total{input="pb"} 1.0' in serve.get("/metrics")
        with pylogbeat.PyLogBeatClient("127.0.0.1", port, timeout=10) as client:
            client.send(events)
            assert serve.total("_input:pb") == 12
        assert serve.total("_input:pb and dns.question.name:*") == 4
        assert serve.total("_input:pb and event.dataset:network_traffic.flow") == 4
        # the index the Beat addressed, as Logstash's beats input names it: searchable
        assert serve.total("_input:pb and _index:packetbeat-8.17.0") == 12
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"2Q garbage")  # a protocol error: closed, stored as a failure, counted
        assert s.recv(16) == b""
        s.close()
        serve.wait_for(lambda: any(f["error.message"].startswith("beats:") for f in
                                   (serve.get("/api/failures") or {}).get("failures", [])),
                       "the protocol error as a failure")
        assert 'netmeta_beats_protocol_errors_total{input="pb",reason="bad_type"} 1.0' in \
            serve.get("/metrics")
