"""The HTTP port: /metrics now, the query API (used by the CLI while `serve` owns the store)
and, later, the UI."""

from __future__ import annotations

import threading
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Query
from fastapi.responses import JSONResponse, Response

from netmeta import metrics
from netmeta.query import search as q
from netmeta.query.kql import KQLError
from netmeta.store.duckdb import Store


def create_app(store: Store) -> FastAPI:
    app = FastAPI(title="netmeta", version="0.1.0")

    def _query(kql: str, start: str | None, end: str | None) -> q.Query:
        return q.Query(kql, q.parse_time(start), q.parse_time(end))

    @app.exception_handler(KQLError)
    async def _kql_error(_: Any, e: KQLError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=400)

    @app.exception_handler(ValueError)
    async def _value_error(_: Any, e: ValueError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=400)

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/search")
    def api_search(q_: str = Query("", alias="q"), start: str | None = Query(None, alias="from"),
                   end: str | None = Query(None, alias="to"), limit: int = 100,
                   fields: str = "") -> dict[str, Any]:
        query = _query(q_, start, end)
        wanted = [f for f in fields.split(",") if f]
        hits = q.search(store, query, limit, wanted)
        return {"total": q.count(store, query), "hits": hits}

    @app.get("/api/top")
    def api_top(field: str, by: str | None = None, q_: str = Query("", alias="q"),
                start: str | None = Query(None, alias="from"),
                end: str | None = Query(None, alias="to"), limit: int = 10) -> dict[str, Any]:
        rows = q.top(store, field, _query(q_, start, end), by, limit)
        return {"field": field, "by": by, "buckets": [{"key": k, "value": v} for k, v in rows]}

    @app.get("/api/failures")
    def api_failures(limit: int = 100) -> dict[str, Any]:
        rows = store.failures(limit).to_pylist()
        for r in rows:
            r["@timestamp"] = r["@timestamp"].isoformat() + "Z"
        return {"failures": rows}

    return app


class HttpServer:
    """uvicorn in a background thread of the serve process."""

    def __init__(self, app: FastAPI, host: str, port: int, *, certfile: str = "",
                 keyfile: str = "") -> None:
        self.server = uvicorn.Server(uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="off",
            ssl_certfile=certfile or None, ssl_keyfile=keyfile or None))
        self.thread = threading.Thread(target=self.server.run, name="http", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        """Start serving; raise OSError when the port cannot be listened on."""
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                cfg = self.server.config
                raise OSError(f"cannot listen on {cfg.host}:{cfg.port} (in use, or not an "
                              "address of this machine?)")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():  # not started, or failed to: nothing to wait for
            self.thread.join(timeout=10)
