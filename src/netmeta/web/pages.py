"""The UI's pages and assets: one HTML shell per page (the page's JS draws it from the API),
the login page, and the JavaScript/CSS/SVG of installed packages — never a CDN.

- charts: plotly.min.js shipped inside the ``plotly`` package;
- world map: the country outlines shipped inside ``pygal_maps_world`` (SVG, one group per
  ISO 3166 alpha-2 code);
- API docs: Swagger UI from the ``swagger-ui-bundle`` package.
"""

from __future__ import annotations

import html
import urllib.parse
from importlib import resources
from pathlib import Path
from string import Template

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from netmeta.web.auth import COOKIE, Authenticator

PAGES = {"search": "Search", "exporters": "Exporters", "failures": "Failures"}
WEB = Path(str(resources.files("netmeta.web")))


def _vendor_files() -> dict[str, Path]:
    import plotly
    import pygal_maps_world
    import swagger_ui_bundle

    swagger = Path(swagger_ui_bundle.swagger_ui_path)
    return {"plotly.min.js": Path(plotly.__file__).parent / "package_data" / "plotly.min.js",
            "worldmap.svg": Path(pygal_maps_world.__file__).parent / "worldmap.svg",
            "swagger-ui-bundle.js": swagger / "swagger-ui-bundle.js",
            "swagger-ui.css": swagger / "swagger-ui.css"}


def _template(name: str) -> Template:
    return Template((WEB / "templates" / name).read_text())


def _safe_next(target: str | None) -> str:
    """Only local paths: a login link must not send the user elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def mount(app: FastAPI, auth: Authenticator) -> None:
    vendor = _vendor_files()
    shell = _template("page.html")
    login_page = _template("login.html")
    app.mount("/static", StaticFiles(directory=WEB / "static"), name="static")

    @app.get("/vendor/{name}", include_in_schema=False)
    def vendor_file(name: str) -> Response:
        path = vendor.get(name)
        if path is None:
            return Response(status_code=404)
        return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return FileResponse(WEB / "static" / "favicon.svg", media_type="image/svg+xml")

    def page(name: str, title: str, dashboard: str = "") -> HTMLResponse:
        return HTMLResponse(shell.substitute(
            page=name, title=html.escape(title), dashboard=html.escape(dashboard),
            auth="on" if auth.enabled else "off"))

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/dashboards/overview")

    @app.get("/dashboards/{name}", include_in_schema=False)
    def dashboard(name: str) -> Response:
        from netmeta.web import dashboards

        d = dashboards.load().get(name)
        if d is None:
            return Response("no such dashboard", status_code=404)
        return page("dashboard", d["title"], name)

    for name, title in PAGES.items():
        app.add_api_route(f"/{name}", lambda n=name, t=title: page(n, t),
                          include_in_schema=False, methods=["GET"])

    @app.get("/openapi-docs.json", include_in_schema=False)
    def openapi_for_docs() -> dict[str, object]:
        # the Swagger UI that PyPI ships (swagger-ui-bundle, Swagger UI 4) reads OpenAPI 3.0
        # documents only; FastAPI's 3.1 document, labelled 3.0.3, renders the same there
        return {**app.openapi(), "openapi": "3.0.3"}

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi-docs.json", title="netmeta API",
                                   swagger_js_url="/vendor/swagger-ui-bundle.js",
                                   swagger_css_url="/vendor/swagger-ui.css",
                                   swagger_favicon_url="/favicon.ico")

    @app.get("/login", include_in_schema=False)
    def login_form(next: str = "/", error: str = "") -> HTMLResponse:
        return HTMLResponse(login_page.substitute(
            next=html.escape(_safe_next(next)),
            error=html.escape(error) if error else ""))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        # a plain form post, parsed here (no multipart dependency for one field)
        form = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
        token = (form.get("token") or [""])[0].strip()
        target = _safe_next((form.get("next") or ["/"])[0])
        if not auth.check(token):
            qs = urllib.parse.urlencode({"next": target, "error": "That token is not valid."})
            return RedirectResponse(f"/login?{qs}", status_code=303)
        resp = RedirectResponse(target, status_code=303)
        resp.set_cookie(COOKIE, token, httponly=True, samesite="strict",
                        secure=request.url.scheme == "https", max_age=30 * 86400)
        return resp

    @app.get("/logout", include_in_schema=False)
    def logout() -> Response:
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp
