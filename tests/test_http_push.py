"""HTTP push input: bodies (JSON, NDJSON, gzip, deflate, zip), limits and auth."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
import zipfile
import zlib

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netmeta.config import Hmac, HttpInput, Secret
from netmeta.sources.http_push import PushError, check_auth, decode_body, parse_records

RECORDS = [{"ts": "Thu May 16 15:25:25 2023", "src_ip": "10.0.0.1", "app_name": "dns"},
           {"ts": "Thu May 16 15:25:26 2023", "src_ip": "10.0.0.2", "app_name": "ssl"}]


def records(body: bytes, encoding: str = "", limit: int = 1 << 20, entries: int = 5000
            ) -> list[dict]:
    return parse_records(decode_body(body, encoding, limit), entries)


def zipped(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_object_array_and_ndjson() -> None:
    assert records(orjson.dumps(RECORDS[0])) == RECORDS[:1]
    assert records(orjson.dumps(RECORDS)) == RECORDS
    ndjson = b"\n".join(orjson.dumps(r) for r in RECORDS) + b"\n\n"
    assert records(ndjson) == RECORDS


def test_duplicate_keys_keep_the_last_as_elasticsearch_does() -> None:
    assert records(b'{"dns_name":"a","dns_name":"b"}') == [{"dns_name": "b"}]


def test_gzip_deflate_and_zip() -> None:
    body = orjson.dumps(RECORDS)
    assert records(gzip.compress(body), "gzip") == RECORDS
    assert records(zlib.compress(body), "deflate") == RECORDS
    raw = zlib.compressobj(wbits=-15)
    assert records(raw.compress(body) + raw.flush(), "deflate") == RECORDS
    archive = zipped({"a.json": orjson.dumps(RECORDS[0]), "b.json": orjson.dumps(RECORDS[1:])})
    assert records(archive) == RECORDS
    assert records(gzip.compress(archive), "gzip") == RECORDS


@pytest.mark.parametrize(("body", "encoding", "status", "reason"), [
    (b"{not json", "", 400, "bad_json"),
    (b"[1, 2]", "", 400, "bad_json"),
    (b"\x1f\x8b garbage", "gzip", 400, "bad_encoding"),
    (b"{}", "br", 415, "unsupported_encoding"),
    (b"PK\x03\x04 not really", "", 400, "bad_zip"),
])
def test_bad_bodies_are_clear_errors(body: bytes, encoding: str, status: int, reason: str
                                     ) -> None:
    with pytest.raises(PushError) as e:
        records(body, encoding)
    assert (e.value.status, e.value.reason) == (status, reason)


def test_decompression_bombs_and_entry_limits() -> None:
    bomb = gzip.compress(b" " * (50 << 20))
    with pytest.raises(PushError) as e:
        records(bomb, "gzip", limit=1 << 20)
    assert e.value.status == 413
    zbomb = zipped({"x.json": b" " * (10 << 20)})
    with pytest.raises(PushError) as e:
        records(zbomb, limit=1 << 20)
    assert e.value.status == 413
    with pytest.raises(PushError) as e:
        records(orjson.dumps([{"a": i} for i in range(11)]), entries=10)
    assert (e.value.status, e.value.reason) == (413, "too_many_entries")


def test_secret_header_and_hmac() -> None:
    cfg = HttpInput(secret=Secret("X-Secret", "s3cret"),
                    hmac=Hmac("X-Signature", "key", "sha256", "sha256="))
    body = b'{"a":1}'
    sig = "sha256=" + hmac.new(b"key", body, hashlib.sha256).hexdigest()
    check_auth(cfg, {"x-secret": "s3cret", "x-signature": sig}, body)
    for headers in ({"x-signature": sig}, {"x-secret": "nope", "x-signature": sig},
                    {"x-secret": "s3cret"}, {"x-secret": "s3cret", "x-signature": sig[7:]},
                    {"x-secret": "s3cret", "x-signature": sig.replace("a", "b")}):
        with pytest.raises(PushError) as e:
            check_auth(cfg, headers, body)
        assert e.value.status == 401


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.sampled_from(["", "gzip", "deflate", "x"]))
def test_fuzz_bodies(body: bytes, encoding: str) -> None:
    try:
        out = records(body, encoding, limit=1 << 16, entries=50)
    except PushError as e:
        assert e.status in (400, 413, 415)
    else:
        assert all(isinstance(r, dict) for r in out)
