"""The web UI end to end: `netmeta demo` data, a real `netmeta serve` with tokens required,
Debian's chromium driven by Playwright. Every page renders with data, KQL narrows, clicks
filter, the community id pivot finds the connection in several sources, no console error,
no request leaves 127.0.0.1. Screenshots go to tests/artifacts/ui/."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import ROOT, free_port
from .servers import NETMETA

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "tests" / "artifacts" / "ui"
DASHBOARDS = ["overview", "flows", "http", "dns", "tls", "gigamon"]
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]



@pytest.fixture(autouse=True)
def _chromium() -> None:
    # a failure, not a skip: `make test` installs Debian's chromium
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} missing: run `make test` (it installs it)"


class Served:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.config = tmp / "netmeta.yml"
        self.config.write_text(yaml.safe_dump({
            "data_dir": str(tmp / "data"), "http": {"port": self.port},
            "pipeline": {"workers": 0}}))
        self.log = tmp / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def run(self, *args: str) -> str:
        return subprocess.run([NETMETA, *args, "--config", str(self.config)], check=True,
                              capture_output=True, text=True, timeout=120).stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import time
    import urllib.request

    s = Served(tmp_path_factory.mktemp("ui"))
    s.run("demo", "--sessions", "3000")
    out = s.log.open("ab")
    s.proc = subprocess.Popen([NETMETA, "serve", "--config", str(s.config)], stdout=out,
                              stderr=out)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(s.base + "/healthz", timeout=2).read()
            break
        except OSError:
            assert time.monotonic() < deadline, s.log.read_text()[-2000:]
            time.sleep(0.1)
    s.token = s.run("token", "create", "browser").strip()  # type: ignore[attr-defined]
    try:
        yield s
    finally:
        s.proc.terminate()
        s.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(served: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if ARTIFACTS.exists():
        shutil.rmtree(ARTIFACTS)
    ARTIFACTS.mkdir(parents=True)
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, args=ARGS, headless=True,
            viewport={"width": 1400, "height": 1000})
        ctx.requests = []  # type: ignore[attr-defined]
        ctx.errors = []  # type: ignore[attr-defined]
        ctx.on("request", lambda r: ctx.requests.append(r.url))  # type: ignore[attr-defined]

        def watch(page: Any) -> None:
            page.on("console", lambda m: m.type == "error" and ctx.errors.append(  # type: ignore[attr-defined]
                f"{page.url}: {m.text}"))
            page.on("pageerror", lambda e: ctx.errors.append(f"{page.url}: {e}"))  # type: ignore[attr-defined]

        ctx.on("page", watch)
        for page in ctx.pages:
            watch(page)
        yield ctx
        ctx.close()


def _loaded(page: Any, before: str | None = None) -> None:
    """Wait until the page's JS says it drew everything (data-loaded changes)."""
    page.wait_for_function(
        "b => document.body.dataset.loaded && document.body.dataset.loaded !== b",
        arg=before or "", timeout=20_000)


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _page(browser: Any) -> Any:
    return browser.pages[0] if browser.pages else browser.new_page()


def test_login_required_then_every_page_renders_with_data(served: Served, browser: Any):
    page = _page(browser)
    page.goto(served.base + "/dashboards/overview")
    assert "/login" in page.url  # tokens required: the UI sends the user to log in
    _shot(page, "login")
    page.fill("#token", "nmt_wrong")
    page.click("#login")
    assert "not valid" in page.inner_text(".error")
    page.fill("#token", served.token)  # type: ignore[attr-defined]
    page.click("#login")
    page.wait_for_url(re.compile(r"/dashboards/overview"))
    _loaded(page)
    for name in DASHBOARDS:
        if name != "overview":
            page.goto(f"{served.base}/dashboards/{name}")
            _loaded(page)
        panels = page.locator(".panel")
        n = panels.count()
        assert n >= 4, name
        assert page.locator('.panel[data-state="error"]').count() == 0, \
            page.locator('.panel[data-state="error"]').all_inner_texts()
        empty = page.locator(".panel .empty").all_inner_texts()
        # every panel has data (the demo has every source), at most one without (source
        # countries: the demo's clients are private addresses)
        assert len(empty) <= (1 if name == "overview" else 0), (name, empty)
        assert page.locator(".panel .js-plotly-plot").count() >= 1, name
        _shot(page, f"dashboard-{name}")
    # the map colours countries the demo's servers are in
    page.goto(served.base + "/dashboards/overview")
    _loaded(page)
    filled = page.evaluate("[...document.querySelectorAll('.map g.country path')]"
                           ".filter(p => p.style.fill).length")
    assert filled > 0
    for name, selector in (("exporters", "#exporters tr"), ("failures", "#failures tr"),
                           ("search", "#hits tr.hit")):
        page.goto(f"{served.base}/{name}")
        _loaded(page)
        assert page.locator(selector).count() > 1, name
        _shot(page, name)
    text = page.goto(served.base + "/exporters") and (_loaded(page) or
                                                       page.inner_text("#exporters"))
    for exporter in ("192.0.2.10", "192.0.2.11", "192.0.2.12", "192.0.2.20"):
        assert exporter in text
    assert "256 (domain" in text  # v9 / IPFIX templates shown
    assert "1:512" in text  # the sFlow agent's sampling rate
    page.goto(served.base + "/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
    assert page.locator(".opblock").count() > 10
    _shot(page, "api-docs")


def _total(page: Any) -> int:
    text = page.inner_text("#summary")
    return int(text.split(" events match")[0].replace(",", ""))


def test_kql_narrows_click_filters_and_pivot_finds_the_connection(served: Served,
                                                                    browser: Any):
    page = _page(browser)
    page.goto(served.base + "/search")
    _loaded(page)
    everything = _total(page)
    # autocompletion offers field names as one types
    page.fill("#kql", "")
    page.type("#kql", "destination.po")
    page.wait_for_selector("#suggest li", timeout=5000)
    assert "destination.port" in page.inner_text("#suggest")
    before = page.evaluate("document.body.dataset.loaded")
    page.fill("#kql", "destination.port:53")
    page.press("#kql", "Enter")
    _loaded(page, before)
    dns = _total(page)
    assert 0 < dns < everything
    assert "q=destination.port" in page.url
    # expand the first event, exclude its network.transport: the query gets it
    page.locator("#hits tr.hit").first.click()
    row = page.locator(".doc tr", has=page.locator("td.k", has_text=re.compile(
        r"^network\.transport$")))
    before = page.evaluate("document.body.dataset.loaded")
    row.locator("button.filter-out").click()
    _loaded(page, before)
    assert 'not network.transport:"udp"' in page.input_value("#kql")
    assert _total(page) < dns
    # pivot: from a Packetbeat DNS event to the same connection in the other sources
    before = page.evaluate("document.body.dataset.loaded")
    page.fill("#kql", "_input:packetbeat and destination.port:53")
    page.press("#kql", "Enter")
    _loaded(page, before)
    page.locator("#hits tr.hit").first.click()
    cid = page.locator(".doc tr", has=page.locator("td.k", has_text=re.compile(
        r"^network\.community_id$"))).locator("span").inner_text()
    before = page.evaluate("document.body.dataset.loaded")
    page.locator(".doc button.pivot").first.click()
    _loaded(page, before)
    assert cid in page.input_value("#kql")
    inputs = set(page.locator("#hits tr.hit td:nth-child(2)").all_inner_texts())
    assert "packetbeat" in inputs and len(inputs) >= 2, inputs  # flows and/or Gigamon too
    _shot(page, "search-pivot")
    # a dashboard bar click filters the whole dashboard
    page.goto(served.base + "/dashboards/flows")
    _loaded(page)
    before = page.evaluate("document.body.dataset.loaded")
    page.locator(".panel", has_text="Top destination ports").locator("tr.clickable").first \
        .click()
    _loaded(page, before)
    assert "destination.port" in urllib.parse.unquote_plus(page.url)
    _shot(page, "dashboard-flows-filtered")


def test_no_console_errors_and_nothing_left_127_0_0_1(browser: Any):
    assert browser.errors == []  # type: ignore[attr-defined]
    hosts = {urllib.parse.urlsplit(u).hostname for u in browser.requests  # type: ignore[attr-defined]
             if not u.startswith(("data:", "blob:", "about:"))}
    assert hosts == {"127.0.0.1"}, hosts
    assert len(browser.requests) > 50  # type: ignore[attr-defined]
    print(f"\nscreenshots: {ARTIFACTS} ({len(os.listdir(ARTIFACTS))} files)")
