"""HTTP push input: senders POST batches of JSON records (Gigamon AMX's cloud-tool export).

A body is a JSON object, a JSON array of objects or NDJSON; it may be compressed with
Content-Encoding gzip or deflate, or be a zip archive of such files (AMX's Zip option).
Every limit (body size, decompressed size, entries per request) is checked before the
next step grows memory; a refusal is a JSON error with the HTTP status a sender retries or
not on (401 auth, 400 bad JSON, 413 too large, 415 unknown encoding).

The answer is 200 only once the batch is committed to the store. A retried batch (same
bytes) is recognized by its digest: it is not stored twice, and is answered 200.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
import hashlib
import hmac
import io
import threading
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from netmeta import metrics
from netmeta.config import HttpInput

ZIP_MAGIC = b"PK\x03\x04"


class PushError(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


# ---------------------------------------------------------------- pure parts

def check_auth(cfg: HttpInput, headers: dict[str, str], body: bytes) -> None:
    """Secret header and HMAC signature, compared in constant time (401 when wrong)."""
    s = cfg.secret
    if s.header and not hmac.compare_digest(
            headers.get(s.header.lower(), "").encode(), s.value.encode()):
        raise PushError(401, "unauthorized", f"missing or wrong {s.header} header")
    h = cfg.hmac
    if h.header:
        given = headers.get(h.header.lower(), "")
        if h.prefix:
            given = given[len(h.prefix):] if given.startswith(h.prefix) else ""
        want = hmac.new(h.key.encode(), body, h.type).hexdigest()
        if not hmac.compare_digest(given.lower().encode(), want.encode()):
            raise PushError(401, "unauthorized", f"missing or wrong {h.header} signature")


def _inflate(data: bytes, wbits: int, limit: int) -> bytes:
    """Decompress without ever holding more than ``limit`` bytes (decompression bombs)."""
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(data, limit + 1)
    except zlib.error as e:
        raise PushError(400, "bad_encoding", f"body does not decompress: {e}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise PushError(413, "too_large", f"body decompresses to more than {limit} bytes")
    return out


def decode_body(body: bytes, encoding: str, limit: int) -> list[bytes]:
    """The JSON documents of a body (one, or one per zip member), decompressed."""
    enc = encoding.strip().lower()
    if enc in ("gzip", "x-gzip"):
        body = _inflate(body, 16 + zlib.MAX_WBITS, limit)
    elif enc == "deflate":  # zlib-wrapped per RFC 9110; raw deflate from some senders
        try:
            body = _inflate(body, zlib.MAX_WBITS, limit)
        except PushError as e:
            if e.status != 400:
                raise
            body = _inflate(body, -zlib.MAX_WBITS, limit)
    elif enc not in ("", "identity"):
        raise PushError(415, "unsupported_encoding", f"Content-Encoding {encoding!r} is not "
                        "supported (gzip, deflate)")
    if not body.startswith(ZIP_MAGIC):
        return [body]
    return _unzip(body, limit)


def _unzip(body: bytes, limit: int) -> list[bytes]:
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
        members = [m for m in archive.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, OSError) as e:
        raise PushError(400, "bad_zip", f"not a readable zip archive: {e}") from None
    out: list[bytes] = []
    total = 0
    for m in members:
        try:
            with archive.open(m) as f:  # the declared size may lie: read with the limit
                data = f.read(limit - total + 1)
        except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError) as e:
            raise PushError(400, "bad_zip", f"zip member {m.filename}: {e}") from None
        total += len(data)
        if total > limit:
            raise PushError(413, "too_large", f"zip archive expands to more than {limit} bytes")
        out.append(data)
    return out


def parse_records(docs: list[bytes], max_entries: int) -> list[dict[str, Any]]:
    """JSON object, array of objects, or NDJSON, from each document."""
    records: list[dict[str, Any]] = []
    for doc in docs:
        text = doc.strip()
        if not text:
            continue
        try:
            value = orjson.loads(text)
            items = value if isinstance(value, list) else [value]
        except orjson.JSONDecodeError:
            items = []
            for n, line in enumerate(text.splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    items.append(orjson.loads(line))
                except orjson.JSONDecodeError as e:
                    raise PushError(400, "bad_json", f"line {n}: not JSON: {e}") from None
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                raise PushError(400, "bad_json", f"entry {i + 1} is a JSON "
                                f"{type(item).__name__}, not an object")
        records += items
        if len(records) > max_entries:
            raise PushError(413, "too_many_entries", f"more than {max_entries} entries in "
                            "one request (inputs.<name>.http.max_entries)")
    return records


# ---------------------------------------------------------------- the endpoint

@dataclass(frozen=True, slots=True)
class Batch:
    records: list[dict[str, Any]]
    digest: str  # sha256 of the body as sent


# store(batch) -> future resolved once stored; seen(digest) -> already stored before
Store = Callable[[Batch], "cf.Future[None]"]


def create_app(name: str, cfg: HttpInput, store: Store, seen: Callable[[str], bool]) -> FastAPI:
    app = FastAPI(title=f"netmeta input {name}", docs_url=None, redoc_url=None,
                  openapi_url=None)
    inflight: dict[str, cf.Future[None]] = {}
    lock = threading.Lock()

    def refuse(e: PushError) -> JSONResponse:
        metrics.push_refused.labels(name, e.reason).inc()
        return JSONResponse({"error": e.reason, "message": e.message}, status_code=e.status)

    @app.post(cfg.path)
    async def push(request: Request) -> JSONResponse:
        headers = {k.lower(): v for k, v in request.headers.items()}
        try:
            declared = int(headers.get("content-length", "0") or 0)
        except ValueError:
            declared = 0
        if declared > cfg.max_body:
            return refuse(PushError(413, "too_large", f"body over {cfg.max_body} bytes"))
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cfg.max_body:
                return refuse(PushError(413, "too_large", f"body over {cfg.max_body} bytes"))
        raw = bytes(body)
        try:
            check_auth(cfg, headers, raw)
            loop = asyncio.get_running_loop()
            # decompressing and parsing are CPU work: off the event loop
            records = await loop.run_in_executor(None, lambda: parse_records(
                decode_body(raw, headers.get("content-encoding", ""), cfg.max_decompressed),
                cfg.max_entries))
        except PushError as e:
            return refuse(e)
        digest = hashlib.sha256(raw).hexdigest()
        # the same body sent again while the first is being stored waits for that one
        with lock:
            earlier = inflight.get(digest)
            if earlier is None:
                mine: cf.Future[None] = cf.Future()
                inflight[digest] = mine
        if earlier is not None:
            try:
                await asyncio.wrap_future(earlier)
            except Exception as e:  # noqa: BLE001 - the sender retries on 503
                return refuse(PushError(503, "not_stored", f"batch not stored: {e}"))
            metrics.push_duplicates.labels(name).inc()
            return JSONResponse({"stored": 0, "duplicate": True})
        try:
            if await loop.run_in_executor(None, seen, digest):
                mine.set_result(None)
                metrics.push_duplicates.labels(name).inc()
                return JSONResponse({"stored": 0, "duplicate": True})
            stored = await loop.run_in_executor(None, store, Batch(records, digest))
            await asyncio.wrap_future(stored)
            mine.set_result(None)
        except Exception as e:  # noqa: BLE001 - e.g. the pipeline stopped: retry later
            mine.set_exception(e)
            return refuse(PushError(503, "not_stored", f"batch not stored: {e}"))
        finally:
            with lock:
                inflight.pop(digest, None)
        return JSONResponse({"stored": len(records)})

    return app
