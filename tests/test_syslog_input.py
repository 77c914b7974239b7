"""Syslog inputs end to end (UDP, TCP, TCP with TLS) against `netmeta serve` on 127.0.0.1:
Gigamon CEF becomes gigamon.ami events, other CEF Filebeat's decode_cef events, anything
else plain syslog events."""

from __future__ import annotations

import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import free_port
from .servers import Serve

GIGAMON = ("Fri Feb 23 02:25:37 2018 9/3/e1 CEF:23|Gigamon|metadata|5.3.00|4|"
           "metadatageneration|6| src=68.94.156.1 dst=10.0.0.2 spt=1234 dpt=53 proto=17 "
           "GigamonMdataDnsAdditionalType=41 GigamonMdataDnsAdditionalTypeText=OPT")
PLAIN = "<165>1 2023-08-24T05:14:15.000003Z web01 nginx 8710 ID47 - upstream timed out"
OTHER_CEF = ("<134>Aug 24 05:14:15 fw01 CEF:0|Acme|Firewall|1.0|100|blocked|5| "
             "src=192.0.2.1 dst=198.51.100.7 act=blocked msg=a message with spaces")


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def long_gigamon(n: int) -> str:
    """A Gigamon CEF line over 1500 bytes (an SSL record's hex-encoded issuer, say)."""
    return GIGAMON + " GigamonMdataSslIssuer=" + "43" * n


def test_udp_cef_and_plain_syslog(tmp_path: Path) -> None:
    port = free_udp_port()
    serve = Serve(tmp_path, [str(tmp_path / "none" / "*.log")], inputs={"sys": {
        "type": "syslog", "listen": "127.0.0.1", "port": port}})
    big = long_gigamon(1200)
    assert len(big) > 1500
    with serve, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for line in (GIGAMON, PLAIN, OTHER_CEF, big, ""):
            tx.sendto(line.encode(), ("127.0.0.1", port))
        serve.wait_for(lambda: serve.total("_input:sys") == 4, "4 syslog events")
        ami = serve.get("/api/search", q='observer.vendor:"Gigamon"', limit=5)["hits"]
        assert len(ami) == 2
        one = next(h for h in ami if "GigamonMdataSslIssuer" not in h["gigamon"]["ami"])
        assert one["source"]["ip"] == "68.94.156.1" and one["destination"]["port"] == 53
        assert one["gigamon"]["ami"]["GigamonMdataDnsAdditionalTypeText"] == "OPT"
        assert one["event"]["original"] == GIGAMON and one["input"]["type"] == "udp"
        assert one["log"]["source"]["address"].startswith("127.0.0.1:")
        long_one = next(h for h in ami if "GigamonMdataSslIssuer" in h["gigamon"]["ami"])
        assert long_one["gigamon"]["ami"]["GigamonMdataSslIssuer"] == "43" * 1200
        plain = serve.get("/api/search", q="log.syslog.appname:nginx", limit=5)["hits"]
        assert len(plain) == 1 and plain[0]["message"] == "upstream timed out"
        assert plain[0]["log"]["syslog"]["hostname"] == "web01"
        other = serve.get("/api/search", q='observer.vendor:"Acme"', limit=5)["hits"]
        assert other[0]["cef"]["extensions"]["message"] == "a message with spaces"
        assert other[0]["event"]["action"] == "blocked"
        failures = serve.get("/api/failures")["failures"]
        assert [f["error.message"] for f in failures] == [
            f"syslog: empty message from {one['log']['source']['address']}"]


def test_tcp_framings_split_writes_and_an_oversized_frame(tmp_path: Path) -> None:
    port = free_port()
    serve = Serve(tmp_path, [str(tmp_path / "none" / "*.log")], inputs={"sys": {
        "type": "syslog", "protocol": "tcp", "listen": "127.0.0.1", "port": port,
        "max_message": 4096}})
    octet = PLAIN.encode()
    stream = (GIGAMON.encode() + b"\n" + f"{len(octet)} ".encode() + octet
              + OTHER_CEF.encode() + b"\n" + b"x" * 10000 + b"\n" + PLAIN.encode() + b"\n")
    with serve:
        with socket.create_connection(("127.0.0.1", port)) as c:
            for i in range(0, len(stream), 7):  # frames cut at every odd place
                c.sendall(stream[i:i + 7])
        serve.wait_for(lambda: serve.total("_input:sys") == 4, "4 syslog events")
        assert serve.total("log.syslog.appname:nginx") == 2
        assert serve.total("input.type:tcp") == 4
        failures = serve.get("/api/failures")["failures"]
        assert len(failures) == 1 and "syslog:" in failures[0]["error.message"]


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return str(cert), str(key)


def test_tcp_with_tls(tmp_path: Path, certificate: tuple[str, str]) -> None:
    cert, key = certificate
    port = free_port()
    serve = Serve(tmp_path, [str(tmp_path / "none" / "*.log")], inputs={"sys": {
        "type": "syslog", "protocol": "tcp", "listen": "127.0.0.1", "port": port,
        "tls": {"cert": cert, "key": key}}})
    ctx = ssl.create_default_context(cafile=cert)
    ctx.check_hostname = False
    with serve:
        with socket.create_connection(("127.0.0.1", port)) as raw, \
                ctx.wrap_socket(raw, server_hostname="127.0.0.1") as c:
            c.sendall((GIGAMON + "\n" + PLAIN + "\n").encode())
            time.sleep(0.1)
        serve.wait_for(lambda: serve.total("_input:sys") == 2, "2 events over TLS")
        assert serve.total('observer.vendor:"Gigamon"') == 1
