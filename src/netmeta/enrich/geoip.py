"""GeoIP City and ASN enrichment, field for field as Elastic's ingest ``geoip`` processor.

Elastic's goflow2 / netflow / gigamon pipelines run, per side (source, destination):

- ``geoip`` on the City DB with the default properties into ``<side>.geo``, guarded by
  ``if: ctx.<side>?.geo == null``: continent_name, country_iso_code, country_name,
  region_iso_code (``<country iso>-<most specific subdivision iso>``), region_name (most
  specific subdivision), city_name, location {lat, lon}. Names are the English (``en``)
  ones only. Only the ``country`` record is read: ``registered_country`` and
  ``represented_country`` are ignored (they are non-default properties), so a record with
  only a continent and a location gives just those, and one with a represented country
  gives the physical country. A key is absent when the record lacks it; location needs both
  lat and lon.
- ``geoip`` on the ASN DB with properties [asn, organization_name] into ``<side>.as`` (no
  ``if``), then renames asn → ``as.number`` and organization_name →
  ``as.organization.name``.

When a lookup yields nothing the processor leaves the document as it was; when it yields
something it replaces the whole target object. Here that means: geo columns are filled only
on rows whose ``<side>.geo`` is unset, and the two as.* columns are replaced on rows where the
ASN DB has a record (organization null when the record has none) and kept elsewhere.

A batch is looked up once per DISTINCT address (``dictionary_encode`` + ``take``). Answers
are cached across batches in Arrow columns (``ResultCache``), so a warm batch never goes
through Python per address: cached addresses are found with ``index_in`` and their answers
gathered with ``take``; only new addresses hit the databases.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import maxminddb
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from netmeta.event import FIELDS, META_EXTRA

# Column suffixes after "<side>.", in the order of a lookup result tuple.
GEO_KEYS: tuple[str, ...] = (
    "geo.continent_name",
    "geo.country_iso_code",
    "geo.country_name",
    "geo.region_iso_code",
    "geo.region_name",
    "geo.city_name",
    "geo.location.lat",
    "geo.location.lon",
)
AS_KEYS: tuple[str, ...] = ("as.number", "as.organization.name")
RESULT_KEYS: tuple[str, ...] = GEO_KEYS + AS_KEYS

GeoValues = tuple[Any, ...]  # len(GEO_KEYS) values, None where absent
AsValues = tuple[Any, ...]  # len(AS_KEYS) values
Result = tuple[Any, ...]  # GeoValues + AsValues

NO_GEO: GeoValues = (None,) * len(GEO_KEYS)
NO_AS: AsValues = (None,) * len(AS_KEYS)


class GeoIPDatabaseError(Exception):
    """A configured GeoIP database cannot be used (missing, unreadable, wrong kind)."""


class _Reader(Protocol):
    def get(self, ip: str) -> Any: ...
    def metadata(self) -> Any: ...
    def close(self) -> None: ...


# ---------------------------------------------------------------- record -> values

def _en(rec: Any) -> str | None:
    """English name of a MaxMind record; Elastic asks for locale ``en`` only, no fallback."""
    if not isinstance(rec, Mapping):
        return None
    names = rec.get("names")
    return names.get("en") if isinstance(names, Mapping) else None


def _sub(rec: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    v = rec.get(key)
    return v if isinstance(v, Mapping) else {}


def city_values(rec: Any) -> GeoValues:
    """The default City properties of Elastic's geoip processor, in GEO_KEYS order."""
    if not isinstance(rec, Mapping) or not rec:
        return NO_GEO
    country = _sub(rec, "country")  # never registered_country / represented_country
    subs = rec.get("subdivisions")
    # getMostSpecificSubdivision(): the last one (2.125.160.216 → ENG, WBK → GB-WBK).
    sub = subs[-1] if isinstance(subs, list) and subs and isinstance(subs[-1], Mapping) else {}
    cc = country.get("iso_code")
    si = sub.get("iso_code")
    loc = _sub(rec, "location")
    lat, lon = loc.get("latitude"), loc.get("longitude")
    if lat is None or lon is None:  # Elastic writes location only with both
        lat = lon = None
    return (
        _en(rec.get("continent")),
        cc,
        _en(country),
        f"{cc}-{si}" if cc is not None and si is not None else None,
        _en(sub),
        _en(rec.get("city")),
        None if lat is None else float(lat),
        None if lon is None else float(lon),
    )


def asn_values(rec: Any) -> AsValues:
    """properties [asn, organization_name], already under their renamed ECS keys."""
    if not isinstance(rec, Mapping):
        return NO_AS
    num = rec.get("autonomous_system_number")
    return (None if num is None else int(num), rec.get("autonomous_system_organization"))


def _get(reader: _Reader | None, ip: str) -> Any:
    """Raw record, or None for unknown / private / unparsable addresses."""
    if reader is None:
        return None
    try:
        return reader.get(ip)
    except (ValueError, TypeError):  # not an address, or IPv6 in an IPv4-only DB
        return None


# ---------------------------------------------------------------- opening

def _open(path: str, role: str, accept: Callable[[str], bool], want: str) -> _Reader:
    try:
        reader = maxminddb.open_database(path, maxminddb.MODE_MMAP_EXT)
    except FileNotFoundError:
        raise GeoIPDatabaseError(f"GeoIP {role} database {path!r}: file not found") from None
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as e:
        raise GeoIPDatabaseError(
            f"GeoIP {role} database {path!r}: not a readable MaxMind DB file ({e})"
        ) from e
    db_type = str(reader.metadata().database_type)
    if not accept(db_type):
        reader.close()
        raise GeoIPDatabaseError(
            f"GeoIP {role} database {path!r}: database_type is {db_type!r}, expected {want}"
        )
    return reader


def _is_asn_type(db_type: str) -> bool:
    # GeoLite2-ASN, GeoIP2-ISP and DB-IP's "... (compat=GeoLite2-ASN)" all carry the fields.
    return "ASN" in db_type.upper() or db_type.endswith("-ISP")


def _describe(reader: _Reader, path: str) -> str:
    m = reader.metadata()
    return f"{m.database_type} ({path}, build {m.build_epoch})"


# ---------------------------------------------------------------- columns

def _extra_mentions_geo(table: pa.Table) -> bool:
    """Whether any event's _extra may hold a geo object: one search over the column's
    character data (a C memmem), instead of a test per row."""
    if META_EXTRA not in table.column_names:
        return False
    for chunk in table.column(META_EXTRA).chunks:
        data = chunk.buffers()[2] if chunk.null_count < len(chunk) else None
        if data is not None and data.to_pybytes().find(b'"geo"') >= 0:
            return True
    return False


def _geo_set(table: pa.Table, side: str, extra_geo: bool = True) -> pa.Array | None:
    """Rows where ``ctx.<side>?.geo != null``; None when no row has it (the common case)."""
    present: pa.Array | None = None
    for name in table.column_names:
        if name.startswith(f"{side}.geo."):
            valid = pc.is_valid(table.column(name))
            present = valid if present is None else pc.or_(present, valid)
    extra = _geo_in_extra(table, side) if extra_geo else None
    if extra is not None:
        present = extra if present is None else pc.or_(present, extra)
    if present is None:
        return None
    present = _as_array(present)
    return present if pc.any(present).as_py() else None


def _geo_in_extra(table: pa.Table, side: str) -> pa.Array | None:
    """Untyped geo keys (geo.name, geo.timezone ...) live in _extra; parse only candidates."""
    if META_EXTRA not in table.column_names:
        return None
    extra = _as_array(table.column(META_EXTRA))
    maybe = pc.fill_null(pc.match_substring(extra, '"geo"'), False)
    if not pc.any(maybe).as_py():
        return None
    flags = [False] * len(extra)
    for i in pc.indices_nonzero(maybe).to_pylist():
        doc = orjson.loads(extra[i].as_py())
        part = doc.get(side) if isinstance(doc, dict) else None
        flags[i] = isinstance(part, dict) and part.get("geo") is not None
    return pa.array(flags, pa.bool_())


def _as_array(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _existing(table: pa.Table, name: str, typ: pa.DataType) -> pa.Array:
    if name in table.column_names:
        return _as_array(table.column(name)).cast(typ)
    return pa.nulls(table.num_rows, typ)


def _put(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """Replace a column, or add it only when it holds a value (no empty keys in documents)."""
    i = table.schema.get_field_index(name)
    if i >= 0:
        return table.set_column(i, name, values)
    if values.null_count == len(values):
        return table
    return table.append_column(name, values)


# ---------------------------------------------------------------- cache

class CacheInfo(NamedTuple):
    hits: int  # distinct addresses of a batch answered from the cache
    misses: int  # distinct addresses looked up in the databases
    size: int
    maxsize: int


class ResultCache:
    """Answers per address, kept as Arrow columns: slot i of every column is ``keys[i]``.

    Bounded by emptying it when a batch's new addresses would overflow ``maxsize`` (a
    generation cache: no per-hit bookkeeping, which is what keeps warm batches in C). A
    single batch with more distinct addresses than ``maxsize`` is held until the next batch.
    Not thread-safe: one instance per worker process.
    """

    def __init__(self, lookup: Callable[[str], Result], maxsize: int) -> None:
        self._lookup = lookup
        self.maxsize = max(0, maxsize)
        self.hits = self.misses = 0
        self.clear()

    def clear(self) -> None:
        self._keys = pa.array([], pa.string())
        self._cols = [pa.array([], _type(k)) for k in RESULT_KEYS]

    def info(self) -> CacheInfo:
        return CacheInfo(self.hits, self.misses, len(self._keys), self.maxsize)

    def slots(self, distinct: pa.Array) -> pa.Array:
        """Slot of each (non-null, distinct) address, looking up the ones not cached yet."""
        if distinct.type != pa.string():  # large_string / string_view inputs
            distinct = distinct.cast(pa.string())
        slots = pc.index_in(distinct, value_set=self._keys)
        new = slots.null_count
        self.hits += len(distinct) - new
        self.misses += new
        if new == 0:
            return slots
        if len(self._keys) + new > self.maxsize:
            self.clear()  # the old slots die with it: index everything of this batch afresh
            slots = pa.nulls(len(distinct), pa.int32())
        missing = pc.is_null(slots)
        ips = distinct.filter(missing)
        results = [self._lookup(ip) for ip in ips.to_pylist()]
        first = len(self._keys)
        self._keys = pa.concat_arrays([self._keys, ips])
        self._cols = [pa.concat_arrays([old, pa.array(vals, _type(k))])
                      for old, vals, k in zip(self._cols, zip(*results, strict=True),
                                              RESULT_KEYS, strict=True)]
        fresh = pa.array(range(first, first + len(ips)), pa.int32())
        return pc.replace_with_mask(slots, missing, fresh)

    def gather(self, slots: pa.Array) -> dict[str, pa.Array]:
        """Per-row answers for per-row slots (null slot → null in every column)."""
        return {k: col.take(slots) for k, col in zip(RESULT_KEYS, self._cols, strict=True)}


# ---------------------------------------------------------------- the enricher

class GeoIP:
    """City + ASN lookups for ``<side>.ip`` columns of event batches.

    Either database may be None (that half of the enrichment is off); with both None
    ``apply`` returns its input unchanged. Call ``disabled_reason`` once at start to log why.
    """

    def __init__(self, city_db: str | None, asn_db: str | None, cache_size: int = 65536) -> None:
        self.city_db = city_db or None
        self.asn_db = asn_db or None
        self._city = _open(self.city_db, "City", lambda t: not _is_asn_type(t),
                           "a City or Country database") if self.city_db else None
        try:
            self._asn = _open(self.asn_db, "ASN", _is_asn_type,
                              "an ASN database") if self.asn_db else None
        except GeoIPDatabaseError:
            if self._city is not None:
                self._city.close()
            raise
        # Per instance, so cached answers never outlive the readers they came from.
        self._cache = ResultCache(self.lookup, cache_size)

    # -- start-up information

    @staticmethod
    def disabled_reason(city_db: str | None, asn_db: str | None) -> str | None:
        """One log line saying what is off when a database is not configured, else None."""
        if city_db and asn_db:
            return None
        if not city_db and not asn_db:
            return ("GeoIP enrichment off: no City or ASN database configured; "
                    "source/destination .geo.* and .as.* will not be filled")
        if not city_db:
            return "GeoIP City lookups off (no City database configured); .geo.* not filled"
        return "GeoIP ASN lookups off (no ASN database configured); .as.* not filled"

    @property
    def enabled(self) -> bool:
        return self._city is not None or self._asn is not None

    def describe(self) -> str:
        """Which databases are loaded, for the start-up log."""
        parts = []
        if self._city is not None and self.city_db:
            parts.append("City " + _describe(self._city, self.city_db))
        if self._asn is not None and self.asn_db:
            parts.append("ASN " + _describe(self._asn, self.asn_db))
        return "GeoIP: " + ("; ".join(parts) if parts else "off")

    def cache_info(self) -> CacheInfo:
        return self._cache.info()

    def close(self) -> None:
        for reader in (self._city, self._asn):
            if reader is not None:
                reader.close()
        self._city = self._asn = None
        self._cache.clear()

    def __enter__(self) -> GeoIP:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- lookups

    def lookup(self, ip: str) -> Result:
        """One address, uncached: GEO_KEYS values + AS_KEYS values, None where absent."""
        return city_values(_get(self._city, ip)) + asn_values(_get(self._asn, ip))

    # -- batches

    def apply(self, table: pa.Table, sides: Sequence[str] = ("source", "destination")) -> pa.Table:
        """Fill ``<side>.geo.*`` / ``<side>.as.*`` from ``<side>.ip`` for the given sides."""
        if not self.enabled or table.num_rows == 0:
            return table
        # one scan of _extra for both sides: untyped geo keys are rare
        extra_geo = _extra_mentions_geo(table)
        for side in sides:
            if f"{side}.ip" in table.column_names:
                table = self._apply_side(table, side, extra_geo)
        return table

    def _apply_side(self, table: pa.Table, side: str, extra_geo: bool) -> pa.Table:
        ips = _as_array(table.column(f"{side}.ip"))
        if ips.null_count == len(ips):
            return table
        enc = pc.dictionary_encode(ips)  # null addresses stay null indices → null rows
        slots = self._cache.slots(enc.dictionary).take(enc.indices)
        per_row = self._cache.gather(slots)
        if self._city is not None:
            table = self._fill_geo(table, side, per_row, extra_geo)
        if self._asn is not None:
            table = self._fill_as(table, side, per_row)
        return table

    @staticmethod
    def _fill_geo(table: pa.Table, side: str, per_row: dict[str, pa.Array],
                  extra_geo: bool = True) -> pa.Table:
        # `if: ctx.<side>?.geo == null`: rows with any geo (typed or in _extra) are kept.
        already = _geo_set(table, side, extra_geo)
        for key in GEO_KEYS:
            name = f"{side}.{key}"
            new = per_row[key]
            if already is not None:
                new = pc.if_else(already, _existing(table, name, new.type), new)
            table = _put(table, name, new)
        return table

    @staticmethod
    def _fill_as(table: pa.Table, side: str, per_row: dict[str, pa.Array]) -> pa.Table:
        # The ASN processors carry no `if`; a found record replaces the whole `as` object.
        new = [per_row[k] for k in AS_KEYS]
        found = pc.or_(pc.is_valid(new[0]), pc.is_valid(new[1]))
        for key, values in zip(AS_KEYS, new, strict=True):
            name = f"{side}.{key}"
            if name in table.column_names:
                values = pc.if_else(found, values, _existing(table, name, values.type))
            table = _put(table, name, values)
        return table


def _type(key: str) -> pa.DataType:
    """Arrow type of a result column, from ecs_fields.yml (identical for both sides)."""
    return FIELDS[f"source.{key}"].arrow_type
