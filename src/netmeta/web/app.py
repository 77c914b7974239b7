"""The HTTP port: /metrics, /healthz, the query API (/api/..., also used by the CLI while
`serve` owns the store), its OpenAPI description (/openapi.json, /docs) and the web UI."""

from __future__ import annotations

import threading
import time
import urllib.parse
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import JSONResponse, RedirectResponse, Response

from netmeta import metrics
from netmeta.query.kql import KQLError
from netmeta.store import catalog
from netmeta.store.duckdb import Store
from netmeta.web import api, pages
from netmeta.web.auth import COOKIE, Authenticator


def create_app(store: Store, auth: str = "none") -> FastAPI:
    """``auth``: "token" (API tokens required) or "none" (as configured in http.auth)."""
    app = FastAPI(title="netmeta", version="0.1.0", docs_url=None, redoc_url=None,
                  description="Query API of netmeta: KQL search, aggregations, fields, "
                              "failures, exporters, streams and index sets. Authenticate "
                              "with `Authorization: Bearer <token>` (netmeta token create).")
    catalog.ensure(store)
    authn = Authenticator(store, auth)
    app.state.auth = authn

    @app.middleware("http")
    async def require_token(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if authn.is_open(path):
            return await call_next(request)
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else \
            request.cookies.get(COOKIE)
        if authn.check(token):
            return await call_next(request)
        if path.startswith("/api/") or path == "/openapi.json":
            return JSONResponse({"error": "authentication required: Authorization: Bearer "
                                 "<token> (netmeta token create)"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        target = path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urllib.parse.urlencode({'next': target})}",
                                status_code=303)

    @app.exception_handler(KQLError)
    async def _kql_error(_: Any, e: KQLError) -> JSONResponse:
        return JSONResponse({"error": str(e), "position": e.position}, status_code=400)

    @app.exception_handler(ValueError)
    async def _value_error(_: Any, e: ValueError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=400)

    @app.exception_handler(HTTPException)
    async def _http_error(_: Any, e: HTTPException) -> JSONResponse:
        return JSONResponse({"error": e.detail}, status_code=e.status_code,
                            headers=getattr(e, "headers", None))

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(api.router(store, authn))
    pages.mount(app, authn)
    return app


class HttpServer:
    """uvicorn in a background thread of the serve process."""

    def __init__(self, app: FastAPI, host: str, port: int, *, certfile: str = "",
                 keyfile: str = "", ca: str = "", client_auth: str = "none") -> None:
        import ssl

        # client certificates: none, optional (checked when given) or required, against ca
        reqs = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL,
                "required": ssl.CERT_REQUIRED}[client_auth]
        self.server = uvicorn.Server(uvicorn.Config(
            app, host=host, port=port, log_level="warning", lifespan="off",
            ssl_certfile=certfile or None, ssl_keyfile=keyfile or None,
            ssl_ca_certs=ca or None, ssl_cert_reqs=reqs))
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
