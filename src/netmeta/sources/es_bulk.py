"""Elasticsearch-compatible ingest: any Beat with ``output.elasticsearch`` (or anything
speaking the _bulk API) ships to netmeta.

A Beat, on connecting, asks ``GET /`` (it refuses an Elasticsearch older than itself, and
reads ``build_flavor`` for serverless), then ``GET /_license``; before publishing it sets up
its ILM policy, index template and ingest pipelines (``GET``/``HEAD`` to check, ``PUT``
when absent). Those are answered as Elasticsearch does and remembered in memory, so that
the Beat proceeds; netmeta's own routing and retention apply to the events.

``POST /_bulk`` and ``/{index}/_bulk``: NDJSON action/source pairs, ``create`` and
``index`` actions, gzip or deflate bodies. The answer is Elasticsearch's (``took``,
``errors``, one item per action with its status; ``filter_path`` honoured, as Beats ask for
``errors,items.*.status,items.*.error``) and is sent only once the batch is stored: 201 per
stored event, 400 ``document_parsing_exception`` for a source line that is not a JSON
object (its neighbours are stored; the line is kept as a failure). The index an event was
sent to becomes its ``data_stream.*`` fields when the name is a data stream's
(``logs-network_traffic.dns-default``) and the event has none of its own.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures as cf
import fnmatch
import hmac
import time
import uuid
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from netmeta import metrics
from netmeta.config import EsInput
from netmeta.decode.jsondocs import split_objects

PRODUCT_HEADER = {"X-Elastic-Product": "Elasticsearch"}  # checked by Elastic's Go clients
DATA_STREAM_TYPES = ("logs", "metrics", "traces", "synthetics", "profiling")
OPS = ("create", "index", "update", "delete")
# Beats ask the license (libbeat/licenser) and accept basic or above when active
LICENSE = {"status": "active", "uid": "00000000-0000-4000-8000-000000000000",
           "type": "basic", "issue_date": "2024-01-01T00:00:00.000Z",
           "issue_date_in_millis": 1704067200000, "max_nodes": 1000,
           "max_resource_units": None, "issued_to": "netmeta", "issuer": "elasticsearch",
           "start_date_in_millis": -1}


class EsError(Exception):
    """An error answered as Elasticsearch answers it: ``{"error": {...}, "status": n}``."""

    def __init__(self, status: int, type_: str, reason: str, refusal: str = "bad_request",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.type, self.reason = status, type_, reason
        self.refusal, self.headers = refusal, headers or {}

    def body(self) -> dict[str, Any]:
        cause = {"type": self.type, "reason": self.reason}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


# ---------------------------------------------------------------- pure parts

@dataclass(slots=True)
class Item:
    op: str  # create, index, update, delete
    index: str
    id: str | None
    source: bytes | None  # the source line (None for delete)
    line: int  # of the source line (of the action for delete), 1-based


def parse_bulk(body: bytes, default_index: str | None) -> list[Item]:
    """The action/source pairs of a bulk body; a malformed action line fails the whole
    request (as in Elasticsearch), a bad source line only its item (checked later)."""
    if not body.strip():
        raise EsError(400, "action_request_validation_exception",
                      "Validation Failed: 1: no requests added;")
    if not body.endswith(b"\n"):
        raise EsError(400, "illegal_argument_exception",
                      "The bulk request must be terminated by a newline [\\n]")
    lines = body.split(b"\n")
    lines.pop()  # after the final newline
    items: list[Item] = []
    actions: dict[bytes, tuple[str, str | None, str | None]] = {}  # Beats repeat them
    i, n = 0, len(lines)
    while i < n:
        raw = lines[i]
        i += 1
        if not raw.strip():
            continue
        parsed = actions.get(raw)
        if parsed is None:
            parsed = _action(raw, i)
            if len(actions) < 1024:
                actions[raw] = parsed
        op, index, doc_id = parsed
        index = index or default_index
        if not index:
            raise EsError(400, "action_request_validation_exception",
                          "Validation Failed: 1: index is missing;")
        source = None
        if op != "delete":
            if i >= n:
                raise EsError(400, "illegal_argument_exception",
                              f"The bulk request must be terminated by a newline [\\n] "
                              f"(action on line [{i}] has no source line)")
            source = lines[i]
            i += 1
        items.append(Item(op, index, doc_id, source, i))
    return items


def _action(raw: bytes, line: int) -> tuple[str, str | None, str | None]:
    try:
        action = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise EsError(400, "x_content_parse_exception",
                      f"[{line}:{e.pos + 1}] Malformed action/metadata line [{line}]: "
                      f"{e.msg}") from None
    if not isinstance(action, dict) or len(action) != 1:
        raise EsError(400, "illegal_argument_exception",
                      f"Malformed action/metadata line [{line}], expected START_OBJECT or "
                      "END_OBJECT but found [" + type(action).__name__ + "]")
    op, meta = next(iter(action.items()))
    if op not in OPS:
        raise EsError(400, "illegal_argument_exception",
                      f"Malformed action/metadata line [{line}], expected field [create], "
                      f"[delete], [index] or [update] but found [{op}]")
    if not isinstance(meta, dict):
        raise EsError(400, "illegal_argument_exception",
                      f"Malformed action/metadata line [{line}], expected START_OBJECT but "
                      "found [VALUE]")
    index, doc_id = meta.get("_index"), meta.get("_id")
    return (op, str(index) if index else None,
            None if doc_id is None else str(doc_id))


def index_prefix(index: str) -> bytes:
    """The members put first in every event sent to ``index`` (the event's own win, being
    later): data_stream.* when the name is a data stream's (type-dataset-namespace), else
    none — Elasticsearch keeps no field of the index name either (``_index`` is metadata)."""
    parts = index.split("-", 2)
    if len(parts) == 3 and parts[0] in DATA_STREAM_TYPES and all(parts):
        ds = dict(zip(("type", "dataset", "namespace"), parts, strict=True))
        return orjson.dumps({"data_stream": ds})[1:-1]
    return b""


def with_prefix(doc: bytes, prefix: bytes) -> bytes:
    """``doc`` (a JSON object) with ``prefix`` members first; later duplicates win."""
    if not prefix:
        return doc
    start = doc.index(b"{") + 1
    i = start
    while i < len(doc) and doc[i] in b" \t\r\n":
        i += 1
    if doc[i:i + 1] == b"}":
        return b"{" + prefix + b"}"
    return b"".join((b"{", prefix, b",", memoryview(doc)[start:]))


def filter_path(obj: Any, spec: str) -> Any:
    """Elasticsearch's ``filter_path``: comma-separated dotted paths, ``*`` in a name."""
    paths = [p.split(".") for p in spec.split(",") if p.strip()]
    out = _filter(obj, [[s.strip() for s in p] for p in paths])
    return {} if out is None else out


def _filter(obj: Any, paths: list[list[str]]) -> Any:
    if isinstance(obj, list):
        kept = [r for r in (_filter(v, paths) for v in obj) if r is not None]
        return kept or None
    if not isinstance(obj, dict):
        return None
    out = {}
    for key, value in obj.items():
        rest = [p[1:] for p in paths if fnmatch.fnmatchcase(key, p[0])]
        if not rest:
            continue
        if any(not r for r in rest):
            out[key] = value
            continue
        sub = _filter(value, rest)
        if sub is not None:
            out[key] = sub
    return out or None


def inflate(body: bytes, encoding: str, limit: int) -> bytes:
    enc = encoding.strip().lower()
    if enc in ("", "identity"):
        return body
    if enc not in ("gzip", "x-gzip", "deflate"):
        raise EsError(415, "illegal_argument_exception",
                      f"unsupported Content-Encoding {encoding!r} (gzip, deflate)",
                      "unsupported_encoding")
    wbits = 16 + zlib.MAX_WBITS if enc != "deflate" else zlib.MAX_WBITS
    parts: list[bytes] = []
    size = 0
    while body:  # a gzip body may be several members, one after the other
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(body, limit - size + 1)
        except zlib.error as e:
            raise EsError(400, "parse_exception", f"body does not decompress: {e}",
                          "bad_encoding") from None
        size += len(out)
        if size > limit or d.unconsumed_tail:
            raise EsError(413, "content_too_long_exception", f"body decompresses to more "
                          f"than {limit} bytes", "too_large")
        if not d.eof:
            raise EsError(400, "parse_exception", "compressed body is truncated",
                          "bad_encoding")
        parts.append(out)
        body = d.unused_data if wbits != zlib.MAX_WBITS else b""
    return b"".join(parts)


def check_auth(cfg: EsInput, authorization: str, path: str) -> None:
    if not cfg.username and not cfg.api_keys:
        return
    scheme, _, cred = authorization.partition(" ")
    ok = False
    if scheme.lower() == "basic" and cfg.username:
        want = base64.b64encode(f"{cfg.username}:{cfg.password}".encode()).decode()
        ok = hmac.compare_digest(cred.strip().encode(), want.encode())
    elif scheme.lower() == "apikey":
        given = cred.strip().encode()
        for key in cfg.api_keys:
            want = base64.b64encode(key.encode())
            ok = ok or hmac.compare_digest(given, want)
    if not ok:
        reason = ("missing authentication credentials" if not authorization else
                  "unable to authenticate user") + f" for REST request [{path}]"
        raise EsError(401, "security_exception", reason, "unauthorized", {
            "WWW-Authenticate": 'Basic realm="security" charset="UTF-8", ApiKey'})


# ---------------------------------------------------------------- the endpoint

# submit(documents, rejects) -> (digest, future resolved once stored)
Submit = Callable[[list[bytes], list[tuple[str, bytes]]], tuple[str, "cf.Future[None]"]]

# setup calls a Beat makes, by the first path segment: how a stored object is answered
_KINDS = {"_index_template": "index_templates", "_component_template": "component_templates",
          "_template": None, "_ilm": None, "_ingest": None, "_data_stream": "data_streams"}


def create_app(name: str, cfg: EsInput, submit: Submit) -> FastAPI:
    app = FastAPI(title=f"netmeta input {name}", docs_url=None, redoc_url=None,
                  openapi_url=None)
    cluster_uuid = base64.urlsafe_b64encode(uuid.uuid5(uuid.NAMESPACE_DNS, name).bytes
                                            ).decode()[:22]
    objects: dict[str, Any] = {}  # what the Beat PUT: "/_ilm/policy/x" -> body

    def answer(obj: Any, status: int = 200, headers: dict[str, str] | None = None,
               request: Request | None = None) -> Response:
        spec = request.query_params.get("filter_path") if request is not None else None
        if spec:
            obj = filter_path(obj, spec)
        return Response(orjson.dumps(obj), status, {**PRODUCT_HEADER, **(headers or {})},
                        media_type="application/json")

    def refuse(e: EsError) -> Response:
        metrics.push_refused.labels(name, e.refusal).inc()
        return answer(e.body(), e.status, e.headers)

    async def body_of(request: Request) -> bytes:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cfg.max_body:
                raise EsError(413, "content_too_long_exception",
                              f"request body over {cfg.max_body} bytes", "too_large")
        return inflate(bytes(body), request.headers.get("content-encoding", ""),
                       cfg.max_decompressed)

    def info() -> dict[str, Any]:
        return {"name": f"netmeta-{name}", "cluster_name": cfg.cluster_name,
                "cluster_uuid": cluster_uuid,
                "version": {"number": cfg.version, "build_flavor": "default",
                            "build_type": "netmeta", "build_hash": "netmeta",
                            "build_date": "2024-01-01T00:00:00.000Z", "build_snapshot": False,
                            "lucene_version": "9.12.0",
                            "minimum_wire_compatibility_version": "7.17.0",
                            "minimum_index_compatibility_version": "7.0.0"},
                "tagline": "You Know, for Search"}

    @app.api_route("/", methods=["GET", "HEAD"])
    async def root(request: Request) -> Response:
        try:
            check_auth(cfg, request.headers.get("authorization", ""), "/")
        except EsError as e:
            return refuse(e)
        if request.method == "HEAD":
            return Response(b"", 200, PRODUCT_HEADER, media_type="application/json")
        return answer(info(), request=request)

    @app.post("/_bulk")
    @app.put("/_bulk")
    async def bulk(request: Request) -> Response:
        return await _bulk(request, None)

    @app.post("/{index}/_bulk")
    @app.put("/{index}/_bulk")
    async def index_bulk(request: Request, index: str) -> Response:
        return await _bulk(request, index)

    async def _bulk(request: Request, index: str | None) -> Response:
        t0 = time.monotonic()
        loop = asyncio.get_running_loop()
        try:
            check_auth(cfg, request.headers.get("authorization", ""), request.url.path)
            body = await body_of(request)
            docs, rejects, results = await loop.run_in_executor(
                None, _prepare, body, index)
        except EsError as e:
            return refuse(e)
        try:
            digest, stored = await loop.run_in_executor(None, submit, docs, rejects)
            await asyncio.wrap_future(stored)
        except Exception as e:  # noqa: BLE001 - the Beat retries the whole request on 503
            return refuse(EsError(503, "unavailable_shards_exception",
                                  f"batch not stored: {e}", "not_stored"))
        took = int((time.monotonic() - t0) * 1000)
        return Response(render(results, digest, took, request.query_params.get("filter_path")),
                        200, PRODUCT_HEADER, media_type="application/json")

    @app.api_route("/{path:path}", methods=["GET", "HEAD", "PUT", "POST", "DELETE"])
    async def setup(request: Request, path: str) -> Response:
        try:
            check_auth(cfg, request.headers.get("authorization", ""), request.url.path)
            body = await body_of(request) if request.method in ("PUT", "POST") else b""
            status, obj = setup_call(request.method, "/" + path.strip("/"), body, objects,
                                     info)
        except EsError as e:
            return refuse(e)
        if request.method == "HEAD":
            return Response(b"", status, PRODUCT_HEADER, media_type="application/json")
        return answer(obj, status, request=request)

    return app


def _prepare(body: bytes, index: str | None
             ) -> tuple[list[bytes], list[tuple[str, bytes]], list[tuple[Item, str | None]]]:
    """Documents to store, sources refused (as failures), and each item's outcome (None:
    stored; else why it was refused)."""
    items = parse_bulk(body, index)
    sources = [it.source or b"" for it in items if it.op in ("create", "index")]
    _, bad = split_objects(sources)
    why_bad = dict(bad)
    docs: list[bytes] = []
    rejects: list[tuple[str, bytes]] = []
    results: list[tuple[Item, str | None]] = []
    prefixes: dict[str, bytes] = {}
    k = 0
    for it in items:
        if it.op not in ("create", "index"):
            results.append((it, f"netmeta stores events append-only: [{it.op}] is not "
                                "supported"))
            continue
        why = why_bad.get(k)
        src = sources[k]
        k += 1
        if why is not None:
            results.append((it, f"[1:1] failed to parse: {why}"))
            rejects.append((f"elasticsearch: _bulk line {it.line} ({it.index}): {why}", src))
            continue
        prefix = prefixes.get(it.index)
        if prefix is None:
            prefix = prefixes[it.index] = index_prefix(it.index)
        docs.append(with_prefix(src, prefix))
        results.append((it, None))
    return docs, rejects, results


def render(results: list[tuple[Item, str | None]], digest: str, took: int,
           spec: str | None = None) -> bytes:
    """The bulk answer as Elasticsearch gives it, ``filter_path`` applied, as JSON bytes.
    Items alike but for their ``_id`` are rendered once (with a marker where the id goes)
    and then joined: a Beat's 1600-item answer costs about a microsecond per item."""
    errors = any(why is not None for _, why in results)
    paths = [[s.strip() for s in p.split(".")] for p in spec.split(",") if p.strip()] \
        if spec else None
    top: dict[str, Any] = {"errors": errors, "took": took}
    if paths is not None:
        top = _filter(top, paths) or {}
        item_paths = [p[1:] for p in paths if fnmatch.fnmatchcase("items", p[0])]
        if not item_paths:
            return orjson.dumps(top)
        if any(not p for p in item_paths):
            item_paths = None
    else:
        item_paths = None
    rendered: dict[tuple[str, str, str | None], tuple[bytes, ...] | None] = {}
    parts: list[bytes] = []
    for n, (it, why) in enumerate(results):
        key = (it.op, it.index, why)
        tpl = rendered.get(key, b"")
        if tpl == b"":
            tpl = rendered[key] = _item_template(it, why, item_paths)
        if tpl is None:
            continue  # filtered out entirely
        doc_id = it.id if it.id is not None else f"{digest[:12]}{n:08x}"
        parts.append(tpl[0] if len(tpl) == 1 else
                     tpl[0] + orjson.dumps(doc_id) + tpl[1])
    body = orjson.dumps(top)
    if not parts:
        return body
    items = b'"items":[' + b",".join(parts) + b"]"
    return body[:-1] + (b"," if len(body) > 2 else b"") + items + b"}"


_ID_MARK = "\x00netmeta-id\x00"


def _item_template(it: Item, why: str | None, paths: list[list[str]] | None
                   ) -> tuple[bytes, ...] | None:
    if why is None:
        body: dict[str, Any] = {"_index": it.index, "_id": _ID_MARK, "_version": 1,
                                "result": "created",
                                "_shards": {"total": 1, "successful": 1, "failed": 0},
                                "_seq_no": 0, "_primary_term": 1, "status": 201}
    else:
        kind = ("document_parsing_exception" if it.op in ("create", "index")
                else "illegal_argument_exception")
        body = {"_index": it.index, "_id": _ID_MARK, "status": 400,
                "error": {"type": kind, "reason": why}}
    item: Any = {it.op: body}
    if paths is not None:
        item = _filter(item, paths)
        if item is None:
            return None
    text = orjson.dumps(item)
    mark = orjson.dumps(_ID_MARK)
    return tuple(text.split(mark, 1)) if mark in text else (text,)


_NODE_ID = "bmV0bWV0YS1ub2RlLTAwMQ"


def setup_call(method: str, path: str, body: bytes, objects: dict[str, Any],
               info: Callable[[], dict[str, Any]]) -> tuple[int, Any]:
    """The other calls a Beat makes: license, x-pack, nodes, health, and the templates,
    policies and pipelines it installs (kept in ``objects``)."""
    parts = [p for p in path.split("/") if p]
    head = parts[0] if parts else ""
    if head == "_license":
        return 200, {"license": LICENSE}
    if head == "_xpack":
        features = {f: {"available": True, "enabled": True} for f in
                    ("ilm", "monitoring", "security", "ml", "watcher")}
        return 200, {"build": {"hash": "netmeta", "date": "2024-01-01T00:00:00.000Z"},
                     "license": {k: LICENSE[k] for k in ("uid", "type", "status")} |
                     {"mode": "basic"}, "features": features}
    if head == "_nodes":
        v = info()["version"]["number"]
        return 200, {"_nodes": {"total": 1, "successful": 1, "failed": 0},
                     "cluster_name": info()["cluster_name"],
                     "nodes": {_NODE_ID: {"name": info()["name"], "version": v,
                                          "roles": ["data", "ingest", "master"],
                                          "ingest": {"processors": []}}}}
    if head == "_cluster" and parts[1:2] == ["health"]:
        return 200, {"cluster_name": info()["cluster_name"], "status": "green",
                     "timed_out": False, "number_of_nodes": 1, "number_of_data_nodes": 1,
                     "active_primary_shards": 0, "active_shards": 0,
                     "relocating_shards": 0, "initializing_shards": 0,
                     "unassigned_shards": 0, "active_shards_percent_as_number": 100.0}
    if head in _KINDS and (len(parts) >= 2 or head == "_data_stream"):
        return _stored_object(method, parts, body, objects)
    if method in ("PUT", "POST") and len(parts) == 1 and not head.startswith("_"):
        return 200, {"acknowledged": True, "shards_acknowledged": True, "index": head}
    if method in ("GET", "HEAD") and len(parts) == 1 and not head.startswith("_"):
        return 404, EsError(404, "index_not_found_exception",
                            f"no such index [{head}]").body()
    return 400, {"error": f"no handler found for uri [{path}] and method [{method}]",
                 "status": 400}


def _stored_object(method: str, parts: list[str], body: bytes, objects: dict[str, Any]
                   ) -> tuple[int, Any]:
    head = parts[0]
    # /_ilm/policy/x, /_ingest/pipeline/x: the name is the third segment
    kind_parts = 2 if head in ("_ilm", "_ingest") else 1
    if len(parts) < kind_parts + 1 and method in ("GET", "HEAD"):
        prefix = "/" + "/".join(parts) + "/"
        found = {k: v for k, v in objects.items() if k.startswith(prefix)}
        return 200, _listing(head, found)
    if len(parts) < kind_parts + 1:
        return 400, EsError(400, "illegal_argument_exception", "name is missing").body()
    name = parts[kind_parts]
    key = "/" + "/".join(parts[:kind_parts + 1])
    if method in ("PUT", "POST"):
        try:
            value = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as e:
            return 400, EsError(400, "parse_exception", f"request body is not JSON: {e}").body()
        objects[key] = value
        return 200, {"acknowledged": True}
    if method == "DELETE":
        return (200, {"acknowledged": True}) if objects.pop(key, None) is not None else \
            _missing(head, name)
    matches = {k: v for k, v in objects.items()
               if fnmatch.fnmatchcase(k, key) or k == key}
    if not matches:
        return _missing(head, name)
    return 200, _listing(head, matches)


def _listing(head: str, found: dict[str, Any]) -> Any:
    names = {k.rsplit("/", 1)[1]: v for k, v in found.items()}
    wrap = _KINDS.get(head)
    if head == "_index_template":
        return {wrap: [{"name": n, "index_template": v} for n, v in names.items()]}
    if head == "_component_template":
        return {wrap: [{"name": n, "component_template": v} for n, v in names.items()]}
    if head == "_data_stream":
        return {wrap: [{"name": n, "timestamp_field": {"name": "@timestamp"},
                        "indices": [], "generation": 1, "status": "GREEN",
                        "template": n} for n in names]}
    if head == "_ilm":
        return {n: {"version": 1, "modified_date": "2024-01-01T00:00:00.000Z",
                    "policy": v.get("policy", v) if isinstance(v, dict) else v}
                for n, v in names.items()}
    return names  # _template, _ingest/pipeline: {name: body}


def _missing(head: str, name: str) -> tuple[int, Any]:
    if head == "_ingest":
        return 404, {}  # Elasticsearch answers a missing pipeline with an empty object
    reasons = {"_index_template": f"index template matching [{name}] not found",
               "_component_template": f"component template matching [{name}] not found",
               "_ilm": f"Lifecycle policy not found: {name}",
               "_data_stream": f"no such index [{name}]"}
    kind = "index_not_found_exception" if head == "_data_stream" else \
        "resource_not_found_exception"
    if head == "_template":
        return 404, {}
    return 404, EsError(404, kind, reasons.get(head, f"[{name}] not found")).body()

