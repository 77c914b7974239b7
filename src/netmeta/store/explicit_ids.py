"""Document ids a client chose (an ``_id`` in a ``_bulk`` action), remembered durably so
that a ``create`` of an id already stored is answered 409, across restarts of serve.

One row per (input, index, id): the digest of the document's source as sent (an ``index``
of the same content is then a harmless repeat), how many times it was written
(Elasticsearch's ``_version``), and the digest of the request that stored it.

Durability without touching the writer's transaction: a row is inserted *before* its
request is handed to the pipeline, and the request's digest is what the pipeline commits,
in the same transaction as the events, into the store's ``batches`` table. A row whose
request digest is not there was never stored: it is deleted when its request fails, and at
start for a request a crash interrupted. Rows are kept as long as batch digests are
(``BATCH_MEMORY_DAYS``): an id older than that may be stored again.

Lookups are for requests that carry ids only; they first go through an in-memory set of
64-bit key hashes (about 60 bytes per id), so only keys that may be known reach DuckDB.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from dataclasses import dataclass

import pyarrow as pa

from netmeta.store.duckdb import BATCH_MEMORY_DAYS, Store

ID_MEMORY_DAYS = BATCH_MEMORY_DAYS
TABLE = "explicit_ids"
DDL = f"""CREATE TABLE IF NOT EXISTS {TABLE} (
    input VARCHAR NOT NULL, "index" VARCHAR NOT NULL, id VARCHAR NOT NULL,
    content VARCHAR NOT NULL, version INTEGER NOT NULL, request VARCHAR NOT NULL,
    stored TIMESTAMP NOT NULL, PRIMARY KEY (input, "index", id))"""

Key = tuple[str, str]  # (index, id)


@dataclass(frozen=True, slots=True)
class Known:
    content: str  # digest of the stored source
    version: int


def content_digest(source: bytes) -> str:
    return hashlib.blake2b(source, digest_size=16).hexdigest()


def _hash(key: Key) -> int:
    return int.from_bytes(hashlib.blake2b(
        key[0].encode() + b"\x00" + key[1].encode(), digest_size=8).digest(), "big")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class ExplicitIds:
    """The remembered ids of one input, in the store's catalog."""

    def __init__(self, store: Store, input_name: str) -> None:
        self.store, self.input = store, input_name
        self._hashes: set[int] = set()
        self._lock = threading.Lock()  # guards _hashes
        with store._lock:  # the catalog's writer lock: one transaction at a time
            con = store.con
            con.execute(DDL)
            # rows of requests a crash interrupted before they were stored, and old ones
            con.execute(f"DELETE FROM {TABLE} e WHERE input = ? AND NOT EXISTS (SELECT 1 "
                        "FROM batches b WHERE b.input = e.input AND b.digest = e.request)",
                        [input_name])
            self._purge(con)
            rows = con.execute(f'SELECT "index", id FROM {TABLE} WHERE input = ?',
                               [input_name]).fetchall()
        self._hashes = {_hash((i, d)) for i, d in rows}
        self._purged = _now()

    def _purge(self, con: object) -> None:
        con.execute(  # type: ignore[attr-defined]
            f"DELETE FROM {TABLE} WHERE input = ? AND stored < ?::TIMESTAMP - ? * INTERVAL 1 DAY",
            [self.input, _now(), ID_MEMORY_DAYS])

    def lookup(self, keys: list[Key]) -> dict[Key, Known]:
        """The ids among ``keys`` that are stored (or being stored)."""
        with self._lock:
            maybe = [k for k in dict.fromkeys(keys) if _hash(k) in self._hashes]
        if not maybe:
            return {}
        probe = pa.table({"index": [k[0] for k in maybe], "id": [k[1] for k in maybe]})
        cur = self.store.cursor()
        try:
            cur.register("probe_ids", probe)
            rows = cur.execute(
                f'SELECT e."index", e.id, e.content, e.version FROM {TABLE} e JOIN probe_ids p '
                'ON e."index" = p."index" AND e.id = p.id WHERE e.input = ?',
                [self.input]).fetchall()
        finally:
            cur.close()
        return {(i, d): Known(c, v) for i, d, c, v in rows}

    def reserve(self, rows: list[tuple[Key, str]], request: str) -> None:
        """Remember new ids (key, content digest) before ``request`` is handed over."""
        if not rows:
            return
        now = _now()
        with self._lock:
            self._hashes.update(_hash(k) for k, _ in rows)
        with self.store._lock:
            self.store.con.executemany(
                f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?, ?, ?, 1, ?, ?)",
                [[self.input, k[0], k[1], c, request, now] for k, c in rows])
            if now - self._purged > dt.timedelta(hours=1):
                self._purged = now
                self._purge(self.store.con)

    def release(self, request: str) -> None:
        """``request`` was not stored: forget the ids it reserved."""
        with self.store._lock:
            self.store.con.execute(f"DELETE FROM {TABLE} WHERE input = ? AND request = ?",
                                   [self.input, request])

    def rewritten(self, keys: list[Key]) -> None:
        """An ``index`` of the same content again: Elasticsearch's version goes up."""
        if not keys:
            return
        with self.store._lock:
            self.store.con.executemany(
                f'UPDATE {TABLE} SET version = version + 1 WHERE input = ? AND "index" = ? '
                "AND id = ?", [[self.input, i, d] for i, d in keys])
