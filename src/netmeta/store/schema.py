"""DDL of the embedded store's catalog (DuckDB) and the layout of its event files."""

from __future__ import annotations

import re

from netmeta.event import FAILURE_COLUMNS, storage_columns

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
EVENTS_DIR = "events"  # <data dir>/events/<index set>/<yyyy-mm-dd>/<id>.parquet
FILE_NAME = re.compile(r"^[a-z0-9_/.:-]+\.parquet$")

# An empty table with every storage column: queries union it with the partition files, so
# a field that no file holds yet still resolves (to NULL) instead of failing.
SCHEMA_TABLE = "ev_schema"


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def column_types() -> dict[str, str]:
    return dict(storage_columns())


def schema_table_ddl() -> str:
    cols = ", ".join(f"{quote(c)} {t}" for c, t in storage_columns())
    return f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} ({cols})"


META_DDL = [
    """CREATE TABLE IF NOT EXISTS index_sets (
         name VARCHAR PRIMARY KEY, title VARCHAR, retention_days INTEGER NOT NULL,
         created TIMESTAMP NOT NULL)""",
    # one row per event file; a (index set, day) partition is the set of its files
    """CREATE TABLE IF NOT EXISTS event_files (
         path VARCHAR PRIMARY KEY, index_set VARCHAR NOT NULL, day DATE NOT NULL,
         rows BIGINT NOT NULL, min_ts TIMESTAMP, max_ts TIMESTAMP, created TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS file_positions (
         input VARCHAR NOT NULL, device UBIGINT NOT NULL, inode UBIGINT NOT NULL,
         path VARCHAR, "offset" BIGINT NOT NULL, updated TIMESTAMP NOT NULL,
         PRIMARY KEY (input, device, inode))""",
    "CREATE TABLE IF NOT EXISTS failures ("
    + ", ".join(f"{quote(c)} {t}" for c, t in FAILURE_COLUMNS) + ")",
    # digests of request bodies stored by push inputs (HTTP): a retried batch is
    # recognized and not stored twice; committed with the batch's events
    """CREATE TABLE IF NOT EXISTS batches (
         input VARCHAR NOT NULL, digest VARCHAR NOT NULL, stored TIMESTAMP NOT NULL,
         PRIMARY KEY (input, digest))""",
]
