"""DDL of the embedded store: event tables (one per index set and UTC day), the partition
catalogue, the failure store and the file positions of tailed inputs."""

from __future__ import annotations

import re
from collections.abc import Iterable

from netmeta.event import FAILURE_COLUMNS, storage_columns

NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# An empty table with every storage column: queries union it with the day partitions, so a
# field no partition has yet still resolves (to NULL) instead of failing.
SCHEMA_TABLE = "ev_schema"
# Columns every partition has, whatever its events carry.
BASE_COLUMNS = ("@timestamp", "_id", "_input", "_streams", "_extra")


def column_types() -> dict[str, str]:
    return dict(storage_columns())


def event_table_ddl(table: str, columns: Iterable[str] | None = None) -> str:
    """A partition holds only the columns its events use (a row of NULLs in a hundred unused
    columns costs more to write than the event itself); SCHEMA_TABLE holds them all."""
    types = column_types()
    names = list(types) if columns is None else [c for c in types if c in set(columns)]
    cols = ", ".join(f"{quote(c)} {types[c]}" for c in names)
    return f"CREATE TABLE IF NOT EXISTS {quote(table)} ({cols})"


META_DDL = [
    """CREATE TABLE IF NOT EXISTS index_sets (
         name VARCHAR PRIMARY KEY, title VARCHAR, retention_days INTEGER NOT NULL,
         created TIMESTAMP NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS partitions (
         table_name VARCHAR PRIMARY KEY, index_set VARCHAR NOT NULL, day DATE NOT NULL,
         min_ts TIMESTAMP, max_ts TIMESTAMP, rows BIGINT NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS file_positions (
         input VARCHAR NOT NULL, device UBIGINT NOT NULL, inode UBIGINT NOT NULL,
         path VARCHAR, "offset" BIGINT NOT NULL, updated TIMESTAMP NOT NULL,
         PRIMARY KEY (input, device, inode))""",
    "CREATE TABLE IF NOT EXISTS failures ("
    + ", ".join(f"{quote(c)} {t}" for c, t in FAILURE_COLUMNS) + ")",
]


def partition_table(index_set: str, day: str) -> str:
    """``ev_<index set>_<yyyymmdd>``: a day of one index set."""
    return f"ev_{index_set}_{day.replace('-', '')}"
