"""Who may use the UI and the query API: API tokens (``netmeta token create``), unless the
configuration says ``http.auth: none``.

A token comes as ``Authorization: Bearer <token>`` or, for the UI, in the cookie the login
page sets. ``serve`` also writes a local key to ``<data dir>/http.key`` (mode 0600) at
start: the CLI, run by whoever can read the data dir, authenticates with it (``search``,
``top`` and ``token`` while serve owns the store). /metrics, /healthz, the login page and
static assets stay open (Prometheus scrapes; assets hold no data).
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from pathlib import Path

from netmeta.store import catalog
from netmeta.store.duckdb import Store

COOKIE = "netmeta_token"
KEY_FILE = "http.key"
OPEN_PREFIXES = ("/static/", "/vendor/", "/login", "/logout", "/healthz", "/metrics",
                 "/favicon.ico")
CACHE_SECONDS = 10.0  # a revoked token stops working within this (revoking here: at once)


def write_local_key(data_dir: str | Path) -> str:
    key = secrets.token_urlsafe(32)
    path = Path(data_dir) / KEY_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    os.replace(tmp, path)
    return key


def read_local_key(data_dir: str | Path) -> str | None:
    try:
        return (Path(data_dir) / KEY_FILE).read_text().strip() or None
    except OSError:
        return None


class Authenticator:
    def __init__(self, store: Store, mode: str) -> None:
        self.store = store
        self.enabled = mode != "none"
        self.local_key = write_local_key(store.root) if self.enabled and not store.read_only \
            else None
        self._ok: dict[str, float] = {}
        self._lock = threading.Lock()

    def is_open(self, path: str) -> bool:
        return not self.enabled or path.startswith(OPEN_PREFIXES)

    def check(self, token: str | None) -> bool:
        if not self.enabled:
            return True
        if not token:
            return False
        if self.local_key and hmac.compare_digest(token, self.local_key):
            return True
        now = time.monotonic()
        with self._lock:
            if self._ok.get(token, 0) > now:
                return True
        if catalog.check_token(self.store, token) is None:
            return False
        with self._lock:
            self._ok[token] = now + CACHE_SECONDS
        return True

    def forget(self) -> None:
        """After a revocation: every token is checked against the catalog again."""
        with self._lock:
            self._ok.clear()
