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
object (its neighbours are stored; the line is kept as a failure).

The index an event was sent to (the action's ``_index``, else the URL's) is kept on the
stored event as ``_index`` — searchable as in Kibana (``_index:packetbeat-*``) — and becomes
its ``data_stream.*`` fields when the name is a data stream's
(``logs-network_traffic.dns-default``) and the event has none of its own.

Document ids. Without ``_id`` (a Beat's default) an event's id is derived from the request's
digest and its position, so a retried request is recognized and not stored twice; the
answer names that id. With ``_id`` the stored event's ``_id`` is the one given, and ids are
remembered per input and index (store/explicit_ids.py, as long as batch digests are), across
restarts:

- ``create`` of an id already stored (or earlier in the same request) is answered as
  Elasticsearch does: 409 ``version_conflict_engine_exception`` "[id]: version conflict,
  document already exists (current version [n])", for that item only. Beats read this as
  "already indexed" and drop the event, which is what deduplication by ``@metadata._id``
  (the fingerprint processor) relies on.
- ``index`` of an id already stored: Elasticsearch would replace the document. netmeta
  stores events append-only and never shows two documents under one id, so: when the
  source is byte-for-byte the one stored (a resend — what Logstash-style deduplication by
  ``document_id`` sends), the answer is Elasticsearch's 200 ``updated`` with the next
  ``_version`` and nothing is stored again — the stored document is exactly what
  Elasticsearch would hold. When the content differs, the item is refused, 400
  ``illegal_argument_exception`` saying so, the stored document is kept, and the refused
  source is stored as a failure event (``event.original``), so nothing is lost unseen.
- Two requests with the same id at once: the second waits for the first to be stored (or
  to fail) before it is decided.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures as cf
import fnmatch
import hashlib
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
from netmeta.decode.beats_meta import with_prefix
from netmeta.decode.jsondocs import split_objects
from netmeta.sources.es_setup import EsError, setup_call
from netmeta.store.explicit_ids import ExplicitIds, Key, Known, content_digest

PRODUCT_HEADER = {"X-Elastic-Product": "Elasticsearch"}  # checked by Elastic's Go clients
DATA_STREAM_TYPES = ("logs", "metrics", "traces", "synthetics", "profiling")
OPS = ("create", "index", "update", "delete")


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
    later): ``_index`` (the name the client addressed, kept searchable, as Kibana shows
    it), and data_stream.* when the name is a data stream's (type-dataset-namespace)."""
    members: dict[str, object] = {"_index": index}
    parts = index.split("-", 2)
    if len(parts) == 3 and parts[0] in DATA_STREAM_TYPES and all(parts):
        members["data_stream"] = dict(zip(("type", "dataset", "namespace"), parts, strict=True))
    return orjson.dumps(members)[1:-1]


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

# submit(documents, rejects, digest, ids) -> future resolved once stored; ``digest`` is the
# request's (ids derive from it), ``ids`` one per document when the request named any
Submit = Callable[[list[bytes], list[tuple[str, bytes]], str, "list[str] | None"],
                  "cf.Future[None]"]


def create_app(name: str, cfg: EsInput, submit: Submit,
               ids: ExplicitIds | None = None) -> FastAPI:
    """``ids``: where explicit ``_id`` s are remembered (None: not remembered, e.g. in
    tests of the protocol alone; a repeated id is then stored again)."""
    app = FastAPI(title=f"netmeta input {name}", docs_url=None, redoc_url=None,
                  openapi_url=None)
    cluster_uuid = base64.urlsafe_b64encode(uuid.uuid5(uuid.NAMESPACE_DNS, name).bytes
                                            ).decode()[:22]
    objects: dict[str, Any] = {}  # what the Beat PUT: "/_ilm/policy/x" -> body
    claims = Claims()

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
            prep = await loop.run_in_executor(None, prepare, body, index)
        except EsError as e:
            return refuse(e)
        keys = prep.keys() if ids is not None else []
        held = await claims.acquire(keys) if keys else None
        try:
            known = await loop.run_in_executor(None, ids.lookup, keys) if keys and ids else {}
            d = decide(prep, known, name)
            if ids is not None and d.reserve:
                await loop.run_in_executor(None, ids.reserve, d.reserve, prep.digest)
            try:
                if d.docs or d.rejects:
                    stored = await loop.run_in_executor(None, submit, d.docs, d.rejects,
                                                        prep.digest, d.ids)
                    await asyncio.wrap_future(stored)
            except Exception as e:  # noqa: BLE001 - the Beat retries the whole request on 503
                if ids is not None and d.reserve:
                    await loop.run_in_executor(None, ids.release, prep.digest)
                return refuse(EsError(503, "unavailable_shards_exception",
                                      f"batch not stored: {e}", "not_stored"))
            if ids is not None and d.rewritten:
                await loop.run_in_executor(None, ids.rewritten, d.rewritten)
        finally:
            if held is not None:
                claims.release(keys, held)
        took = int((time.monotonic() - t0) * 1000)
        return Response(render(d.outcomes, took, request.query_params.get("filter_path")),
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


class Claims:
    """Ids held by requests being decided or stored (in the server's event loop): a request
    naming one of them waits until the holder is done, then sees what it stored."""

    def __init__(self) -> None:
        self._held: dict[Key, asyncio.Future[None]] = {}

    async def acquire(self, keys: list[Key]) -> asyncio.Future[None]:
        while True:
            busy = {self._held[k] for k in keys if k in self._held}
            if not busy:
                mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                for k in keys:
                    self._held[k] = mine
                return mine
            await asyncio.wait(busy)

    def release(self, keys: list[Key], mine: asyncio.Future[None]) -> None:
        for k in keys:
            if self._held.get(k) is mine:
                del self._held[k]
        mine.set_result(None)


@dataclass(slots=True)
class Prepared:
    """A parsed bulk request: its items, why a source is not a JSON object (by item), and
    the request's digest (a retried request has the same one)."""

    items: list[Item]
    bad: dict[int, str]
    digest: str

    def keys(self) -> list[Key]:
        """(index, id) of the items that name an id, once each."""
        return list(dict.fromkeys((it.index, it.id) for it in self.items
                                  if it.id is not None and it.op in ("create", "index")))


def prepare(body: bytes, index: str | None) -> Prepared:
    items = parse_bulk(body, index)
    writes = [k for k, it in enumerate(items) if it.op in ("create", "index")]
    _, bad = split_objects([items[k].source or b"" for k in writes])
    digest = hashlib.sha256((index or "").encode() + b"\n" + body).hexdigest()
    return Prepared(items, {writes[i]: why for i, why in bad}, digest)


@dataclass(slots=True)
class Outcome:
    """How one item is answered."""

    status: int  # 201 created, 200 updated, 409 conflict, 400 refused
    id: str
    version: int = 1
    error: str | None = None  # Elasticsearch's error type
    reason: str | None = None


@dataclass(slots=True)
class Decision:
    docs: list[bytes]
    ids: list[str] | None  # one per doc when the request named ids, else derived in the worker
    rejects: list[tuple[str, bytes]]
    outcomes: list[tuple[Item, Outcome]]
    reserve: list[tuple[Key, str]]  # new ids to remember: (key, content digest)
    rewritten: list[Key]  # ids an ``index`` of the same content wrote again


def derived_id(input_name: str, digest: str, k: int) -> str:
    """The id of the k-th document of a request without ``_id`` (as the worker makes it
    from the batch digest)."""
    return f"{input_name}:{digest[:32]}:{k}"


def decide(prep: Prepared, known: dict[Key, Known], input_name: str) -> Decision:
    """Each item's fate, in order, as Elasticsearch applies a bulk request's items one after
    the other: what to store (with which id), what to answer, which ids to remember."""
    d = Decision([], None, [], [], [], [])
    seen = dict(known)  # ids stored before, and those written earlier in this request
    named = any(it.id is not None for it in prep.items)
    ids: list[str] = []
    prefixes: dict[str, bytes] = {}
    for n, it in enumerate(prep.items):
        if it.op not in ("create", "index"):
            d.outcomes.append((it, Outcome(400, it.id or "", error="illegal_argument_exception",
                                           reason=f"netmeta stores events append-only: "
                                                  f"[{it.op}] is not supported")))
            continue
        src = it.source or b""
        why = prep.bad.get(n)
        if why is not None:
            d.outcomes.append((it, Outcome(400, it.id or derived_id(input_name, prep.digest, n),
                                           error="document_parsing_exception",
                                           reason=f"[1:1] failed to parse: {why}")))
            d.rejects.append((f"elasticsearch: _bulk line {it.line} ({it.index}): {why}", src))
            continue
        if it.id is not None:
            key = (it.index, it.id)
            have = seen.get(key)
            if have is not None:
                d.outcomes.append((it, _again(it, have, src)))
                if it.op == "index" and have.content == content_digest(src):
                    seen[key] = Known(have.content, have.version + 1)
                    d.rewritten.append(key)
                elif it.op == "index":
                    d.rejects.append((f"elasticsearch: _bulk line {it.line} ({it.index}): "
                                      f"[{it.id}] exists with other content; kept, this one "
                                      "refused", src))
                continue
            content = content_digest(src)
            seen[key] = Known(content, 1)
            d.reserve.append((key, content))
            doc_id = it.id
        else:
            doc_id = derived_id(input_name, prep.digest, len(d.docs) if not named else n)
        prefix = prefixes.get(it.index)
        if prefix is None:
            prefix = prefixes[it.index] = index_prefix(it.index)
        d.docs.append(with_prefix(src, prefix))
        ids.append(doc_id)
        d.outcomes.append((it, Outcome(201, doc_id)))
    d.ids = ids if named else None
    return d


def _again(it: Item, have: Known, src: bytes) -> Outcome:
    """An id already stored, written again."""
    assert it.id is not None
    if it.op == "create":
        return Outcome(409, it.id, have.version, "version_conflict_engine_exception",
                       f"[{it.id}]: version conflict, document already exists (current "
                       f"version [{have.version}])")
    if have.content == content_digest(src):
        return Outcome(200, it.id, have.version + 1)
    return Outcome(400, it.id, have.version, "illegal_argument_exception",
                   f"[{it.id}]: a document with this id exists in [{it.index}] with other "
                   "content; netmeta stores events append-only and does not replace it (the "
                   "stored one is kept, this one is stored as a failure)")


def render(outcomes: list[tuple[Item, Outcome]], took: int, spec: str | None = None) -> bytes:
    """The bulk answer as Elasticsearch gives it, ``filter_path`` applied, as JSON bytes.
    Items alike but for their ``_id`` are rendered once (with a marker where the id goes)
    and then joined: a Beat's 1600-item answer costs about a microsecond per item."""
    errors = any(o.status >= 300 for _, o in outcomes)
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
    rendered: dict[tuple[Any, ...], list[bytes] | None] = {}
    parts: list[bytes] = []
    for it, o in outcomes:
        key = (it.op, it.index, o.status, o.version, o.error,
               o.reason.replace(o.id, _ID_MARK) if o.reason and o.id else o.reason)
        tpl = rendered.get(key, [])
        if tpl == []:
            tpl = rendered[key] = _item_template(it, o, key[5], item_paths)
        if tpl is None:
            continue  # filtered out entirely
        parts.append(tpl[0] if len(tpl) == 1 else orjson.dumps(o.id)[1:-1].join(tpl))
    body = orjson.dumps(top)
    if not parts:
        return body
    items = b'"items":[' + b",".join(parts) + b"]"
    return body[:-1] + (b"," if len(body) > 2 else b"") + items + b"}"


_ID_MARK = "\x00netmeta-id\x00"
_INDEX_UUID = "bmV0bWV0YS1pbmRleC0w"  # one index, one shard: constant, as a Beat ignores them


def _item_template(it: Item, o: Outcome, reason: str | None, paths: list[list[str]] | None
                   ) -> list[bytes] | None:
    if o.error is None:
        body: dict[str, Any] = {"_index": it.index, "_id": _ID_MARK, "_version": o.version,
                                "result": "created" if o.status == 201 else "updated",
                                "_shards": {"total": 1, "successful": 1, "failed": 0},
                                "_seq_no": o.version - 1, "_primary_term": 1,
                                "status": o.status}
    else:
        error: dict[str, Any] = {"type": o.error, "reason": reason}
        if o.status == 409:
            error |= {"index_uuid": _INDEX_UUID, "shard": "0", "index": it.index}
        body = {"_index": it.index, "_id": _ID_MARK, "status": o.status, "error": error}
    item: Any = {it.op: body}
    if paths is not None:
        item = _filter(item, paths)
        if item is None:
            return None
    return orjson.dumps(item).split(orjson.dumps(_ID_MARK)[1:-1])
