"""Administrative rows of the store's catalog: API tokens, index sets, streams added through
the API. Kept in the same DuckDB file as the rest of the catalog, written under the store's
writer lock.

Tokens are stored as SHA-256 digests only: a token is 32 random bytes, so a fast digest is
as good as a slow password hash, and the plain token is shown once, when created.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from netmeta.store.duckdb import Store
from netmeta.store.schema import NAME

TOKEN_PREFIX = "nmt_"
DDL = [
    """CREATE TABLE IF NOT EXISTS api_tokens (
         id VARCHAR PRIMARY KEY, name VARCHAR NOT NULL, digest VARCHAR NOT NULL UNIQUE,
         created TIMESTAMP NOT NULL, revoked TIMESTAMP)""",
    # streams created through the API: routing from their creation on (Store.add_stream),
    # and added to the configured ones at each start of serve
    """CREATE TABLE IF NOT EXISTS api_streams (
         name VARCHAR PRIMARY KEY, index_set VARCHAR NOT NULL, inputs VARCHAR[],
         rule VARCHAR NOT NULL, created TIMESTAMP NOT NULL)""",
]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def ensure(store: Store) -> None:
    """Create the tables (a writable store; a read-only one has them or has no rows)."""
    if store.read_only:
        return
    with store._lock:
        for ddl in DDL:
            store.con.execute(ddl)


def _has(store: Store, table: str) -> bool:
    return bool(store.cursor().execute(
        "SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [table]).fetchone()[0])


# ---------------------------------------------------------------- tokens

def create_token(store: Store, name: str) -> dict[str, Any]:
    ensure(store)
    token_id = secrets.token_hex(4)
    token = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    created = _now()
    with store._lock:
        store.con.execute("INSERT INTO api_tokens VALUES (?, ?, ?, ?, NULL)",
                          [token_id, name or "unnamed", digest(token), created])
    return {"id": token_id, "name": name or "unnamed", "token": token,
            "created": created.isoformat() + "Z"}


def list_tokens(store: Store) -> list[dict[str, Any]]:
    if not _has(store, "api_tokens"):
        return []
    rows = store.cursor().execute(
        "SELECT id, name, created, revoked FROM api_tokens ORDER BY created").fetchall()
    return [{"id": i, "name": n, "created": c.isoformat() + "Z",
             "revoked": r.isoformat() + "Z" if r else None} for i, n, c, r in rows]


def revoke_token(store: Store, token_id: str) -> bool:
    ensure(store)
    with store._lock:
        row = store.con.execute(
            "UPDATE api_tokens SET revoked = ? WHERE id = ? AND revoked IS NULL RETURNING id",
            [_now(), token_id]).fetchone()
    return row is not None


def check_token(store: Store, token: str) -> str | None:
    """The id of a valid (not revoked) token, else None."""
    if not token.startswith(TOKEN_PREFIX) or not _has(store, "api_tokens"):
        return None
    row = store.cursor().execute(
        "SELECT id FROM api_tokens WHERE digest = ? AND revoked IS NULL",
        [digest(token)]).fetchone()
    return row[0] if row else None


# ---------------------------------------------------------------- index sets

def create_index_set(store: Store, name: str, title: str, retention_days: int) -> None:
    if not NAME.match(name or ""):
        raise ValueError(f"index set name {name!r}: lowercase letters, digits and _, "
                         "starting with a letter")
    _check_retention(retention_days)
    with store._lock:
        row = store.con.execute(
            "INSERT INTO index_sets VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING name",
            [name, title or name, retention_days, _now()]).fetchone()
    if row is None:
        raise KeyError(f"index set {name!r} exists already")


def set_retention(store: Store, name: str, retention_days: int,
                  title: str | None = None) -> None:
    _check_retention(retention_days)
    with store._lock:
        row = store.con.execute(
            "UPDATE index_sets SET retention_days = ?, title = COALESCE(?, title) "
            "WHERE name = ? RETURNING name", [retention_days, title, name]).fetchone()
    if row is None:
        raise LookupError(f"no index set {name!r}")


def _check_retention(days: Any) -> None:
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 36500:
        raise ValueError("retention_days must be a whole number of days, 1 to 36500")


def index_set_usage(store: Store) -> list[dict[str, Any]]:
    rows = store.cursor().execute(
        "SELECT s.name, s.title, s.retention_days, count(f.path), COALESCE(sum(f.rows), 0), "
        "min(f.day), max(f.day) FROM index_sets s LEFT JOIN event_files f "
        "ON f.index_set = s.name GROUP BY ALL ORDER BY s.name").fetchall()
    return [{"name": n, "title": t, "retention_days": r, "files": int(f), "events": int(e),
             "oldest_day": lo.isoformat() if lo else None,
             "newest_day": hi.isoformat() if hi else None}
            for n, t, r, f, e, lo, hi in rows]


# ---------------------------------------------------------------- streams

def create_stream(store: Store, name: str, index_set: str, inputs: list[str],
                  rule: str) -> None:
    """Record the stream and route with it at once: the store's own appends, and the
    pipeline's workers from their next job (they get the store's streams with it)."""
    from netmeta.query.sql import compile_where
    from netmeta.route.streams import Stream

    if not NAME.match(name or ""):
        raise ValueError(f"stream name {name!r}: lowercase letters, digits and _")
    compile_where(rule)  # a KQLError (a ValueError) names the position
    ensure(store)
    with store._lock:
        if store.con.execute("SELECT 1 FROM index_sets WHERE name = ?",
                             [index_set]).fetchone() is None:
            raise LookupError(f"no index set {index_set!r}")
        if any(s.name == name for s in store.router.streams):
            raise KeyError(f"stream {name!r} exists already")
        row = store.con.execute(
            "INSERT INTO api_streams VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING "
            "RETURNING name", [name, index_set, inputs, rule, _now()]).fetchone()
    if row is None:
        raise KeyError(f"stream {name!r} exists already")
    store.add_stream(Stream(name, index_set, tuple(inputs), rule))


def api_streams(store: Store) -> list[dict[str, Any]]:
    if not _has(store, "api_streams"):
        return []
    rows = store.cursor().execute(
        "SELECT name, index_set, inputs, rule FROM api_streams ORDER BY created").fetchall()
    return [{"name": n, "index_set": s, "inputs": list(i or []), "rule": r}
            for n, s, i, r in rows]


def apply_api_streams(store: Store, cfg: Any) -> int:
    """Add the streams created through the API to ``cfg`` and to the store's router (at
    serve's start, before the pipeline's workers take their copy of the streams)."""
    from netmeta.config import StreamConfig
    from netmeta.route.streams import Router
    from netmeta.worker import streams_of

    have = {s.name for s in cfg.streams} | set(cfg.inputs)
    added = 0
    for s in api_streams(store):
        if s["name"] not in have:
            cfg.streams.append(StreamConfig(name=s["name"], index_set=s["index_set"],
                                            inputs=s["inputs"], rule=s["rule"]))
            added += 1
    if added:
        store.router = Router(streams_of(cfg))
        store._routes = store.router.routes()
    return added
