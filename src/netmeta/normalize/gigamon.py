"""Gigamon AMI records → ECS, exactly as Elastic's gigamon integration (data stream ``ami``).

Two entry points: :func:`normalize_record` for one AMI JSON object as the device POSTs it
(Elastic's http_endpoint input puts it under ``json``) and :func:`normalize_cef` for one
decoded CEF event (the ``cef`` object Filebeat's decode_cef produces). Both return the
document Elasticsearch would store after ``ingest_pipeline/default.yml`` (and, for CEF,
``cef-pipeline.yml``), step for step in the pipeline's order, including its failure
behaviour: a value a convert/date step cannot parse is removed and an ``error.message``
appended; a step without its own handler stops the pipeline and marks the document
``event.kind: pipeline_error`` (tags ``preserve_original_event``).

Not done here: the GeoIP/ASN processors (source/destination ``.geo`` and ``.as``), which
netmeta's enricher (netmeta.enrich.geoip) performs; only their failure on a non-IP value is
reproduced. Input-level fields (``tags`` from the agent's preserve_original_event option)
belong to the input configuration.

Protocol facts are data beside this file: gigamon_fields.yml (renames, dates, types, ECS
copies), gigamon_lookups.yml (code tables) and gigamon_cipher_suites.csv (the pipeline's
cipher-suite table, copied as is, including its two odd entries 156 and 19171).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import ipaddress
import math
import re
from collections.abc import Callable, Iterable
from decimal import Decimal
from functools import cache, lru_cache
from importlib import resources
from typing import Any

import numpy as np
import yaml

# _ingest.pipeline as the package's on_failure messages render it.
PIPELINE = "logs-gigamon.ami-2.4.1"
ECS_VERSION = "8.11.0"

Doc = dict[str, Any]
# JSON value types; a global tuple, as `(dict, list)` inline is built anew per test.
_SCALARS = frozenset({str, int, float, bool, type(None)})
_CONTAINERS = (dict, list)


class _Failure(Exception):
    """A processor failed with no handler of its own: the pipeline's on_failure runs."""

    def __init__(self, kind: str, message: str, tag: str | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.tag = kind, message, tag


class _StepError(ValueError):
    """A processor with its own on_failure failed (convert, date)."""


# ---------------------------------------------------------------- data files


def _text(name: str) -> str:
    return resources.files("netmeta.normalize").joinpath(name).read_text(encoding="utf-8")


@cache
def _fields() -> dict[str, Any]:
    return yaml.safe_load(_text("gigamon_fields.yml"))


@cache
def _lookups() -> dict[str, dict[str, str]]:
    return yaml.safe_load(_text("gigamon_lookups.yml"))


@cache
def _ciphers() -> dict[str, list[str]]:
    rows = csv.DictReader(io.StringIO(_text("gigamon_cipher_suites.csv")))
    return {r["id"]: [v for v in (r["name"], r["openssl_name"]) if v] for r in rows}


# ---------------------------------------------------------------- document paths


@lru_cache(maxsize=4096)
def _parts(path: str) -> tuple[tuple[str, ...], str]:
    """A dotted path as (parent keys, leaf key)."""
    *parents, leaf = path.split(".")
    return tuple(parents), leaf


def _get(doc: Doc, path: str) -> Any:
    parents, leaf = _parts(path)
    cur: Any = doc
    for part in (*parents, leaf):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _set(doc: Doc, path: str, value: Any) -> None:
    _set_at(doc, *_parts(path), value)


def _set_at(doc: Doc, parents: tuple[str, ...], leaf: str, value: Any) -> None:
    cur = doc
    for part in parents:
        cur = cur.setdefault(part, {})
    cur[leaf] = value


def _append(doc: Doc, path: str, value: Any, unique: bool = False) -> None:
    """ES append: a scalar already there becomes the first element of a list."""
    old = _get(doc, path)
    items = [] if old is None else old if isinstance(old, list) else [old]
    if not (unique and value in items):
        items.append(value)
    _set(doc, path, items)


def _append_to(parent: Doc, key: str, value: Any) -> None:
    """_append(unique=True) on a dict already in hand."""
    old = parent.get(key)
    items = [] if old is None else old if isinstance(old, list) else [old]
    if value not in items:
        items.append(value)
    parent[key] = items


def _error(doc: Doc, kind: str, tag: str, message: str) -> None:
    _append(doc, "error.message", f"Processor {kind} with tag {tag} in pipeline {PIPELINE} "
                                  f"failed with message: {message}")


# ---------------------------------------------------------------- Java value semantics


def _java_str(value: Any) -> str:
    """Object.toString() of a JSON value, as templates and converts see it."""
    if type(value) is str:  # most values arrive as text
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _java_double_str(value)
    return str(value)


def _java_double_str(x: float) -> str:
    """Double.toString: positional in [1e-3, 1e7), else d.dddE<n>."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0 or 1e-3 <= abs(x) < 1e7:
        return repr(x)  # Python's shortest repr is positional in this range too
    sign, digits, exponent = Decimal(repr(x)).normalize().as_tuple()
    text = "".join(map(str, digits))
    power = int(exponent) + len(digits) - 1
    return f"{'-' if sign else ''}{text[0]}.{text[1:] or '0'}E{power}"


_LONG = re.compile(r"[+-]?\d+")
_HEX_LONG = re.compile(r"-?0x[0-9a-fA-F]+")  # the only form ES hands to Long.decode
_DOUBLE = re.compile(r"[+-]?(NaN|Infinity|(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?[fFdD]?)")


def _to_long(value: Any) -> int:
    text = _java_str(value)
    try:
        if text.isdecimal():  # the usual case; re's \d is exactly str.isdecimal
            number = int(text)
        elif _HEX_LONG.fullmatch(text):
            number = int(text.replace("0x", "", 1), 16)
        elif _LONG.fullmatch(text):
            number = int(text)
        else:
            raise ValueError(text)
    except ValueError:
        raise _StepError(f"unable to convert [{text}] to long") from None
    if not -(2**63) <= number < 2**63:
        raise _StepError(f"unable to convert [{text}] to long")
    return number


_JAVA_SPACE = "".join(chr(c) for c in range(33))


def _parse_double(text: str, kind: str) -> float:
    # Double.parseDouble trims ASCII control/space characters and takes a d/f suffix.
    trimmed = text.strip(_JAVA_SPACE)
    if not _DOUBLE.fullmatch(trimmed):
        raise _StepError(f"unable to convert [{text}] to {kind}")
    return float(trimmed.rstrip("fFdD").replace("Infinity", "inf"))


def _f32(x: float) -> float:
    """A Java float as its JSON text reads back: the shortest decimal of the 32-bit value."""
    return float(str(np.float32(x)))


def _to_double(value: Any) -> float:
    return _parse_double(_java_str(value), "double")


def _to_float(value: Any) -> float:
    return _f32(_parse_double(_java_str(value), "float"))


# Dotted-quad IPv4 exactly as ipaddress accepts it (no leading zeros, octets up to 255): the
# usual address checked in a fraction of ip_address's time; anything else goes to ipaddress.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _is_ip(text: str) -> bool:
    if _IPV4.fullmatch(text):
        return True
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _to_ip(value: Any) -> Any:
    if not isinstance(value, str) or not _is_ip(value):
        raise _StepError(f"'{_java_str(value)}' is not an IP string literal.")
    return value


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "long": _to_long, "double": _to_double, "float": _to_float, "ip": _to_ip}


# ---------------------------------------------------------------- dates


_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_TOKENS = [("yyyy", r"(?P<year>\d{4})"), ("SSSSSS", r"(?P<frac>\d{6})"),
           ("SSS", r"(?P<frac>\d{3})"), ("EEE", f"(?P<dow>{'|'.join(_DAYS)})"),
           ("MMM", f"(?P<mon>{'|'.join(_MONTHS)})"), ("MM", r"(?P<month>\d{2})"),
           ("dd", r"(?P<day>\d{2})"), ("d", r"(?P<day>\d{1,2})"), ("HH", r"(?P<hour>\d{2})"),
           ("mm", r"(?P<minute>\d{2})"), ("ss", r"(?P<second>\d{2})")]
_ISO = re.compile(r"(?P<year>\d{4})(?:-(?P<month>\d{2})(?:-(?P<day>\d{2}))?)?"
                  r"(?:T(?P<hour>\d{2})(?::?(?P<minute>\d{2})(?::?(?P<second>\d{2})"
                  r"(?:[.,](?P<frac>\d{1,9}))?)?)?)?"
                  r"(?P<zone>Z|[+-]\d{2}(?::?\d{2})?)?")


@cache
def _pattern(fmt: str) -> re.Pattern[str]:
    """A Java DateTimeFormatter pattern (the subset the pipeline uses) as a regex."""
    if fmt == "ISO8601":
        return _ISO
    out, i = [], 0
    while i < len(fmt):
        if fmt[i] == "'":
            end = fmt.index("'", i + 1)
            out.append(re.escape(fmt[i + 1:end]))
            i = end + 1
            continue
        token = next((t for t in _TOKENS if fmt.startswith(t[0], i)), None)
        out.append(token[1] if token else re.escape(fmt[i]))
        i += len(token[0]) if token else 1
    return re.compile("".join(out))


def _moment(parts: dict[str, str | None]) -> dt.datetime:
    get = parts.get
    mon, frac = get("mon"), get("frac")
    month = _MONTHS.index(mon) + 1 if mon else int(get("month") or 1)
    micros = int(frac.ljust(6, "0")[:6]) if frac else 0
    moment = dt.datetime(int(parts["year"] or 0), month, int(get("day") or 1),
                         int(get("hour") or 0), int(get("minute") or 0),
                         int(get("second") or 0), micros, tzinfo=_zone(parts))
    # Java's strict resolver rejects a day-of-week that contradicts the date.
    if parts.get("dow") and _DAYS.index(parts["dow"]) != moment.weekday():
        raise ValueError("day of week")
    return moment


def _zone(parts: dict[str, str | None]) -> dt.tzinfo:
    zone = parts.get("zone")
    if not zone or zone == "Z":
        return dt.UTC
    digits = zone[1:].replace(":", "")
    offset = dt.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
    return dt.timezone(offset if zone[0] == "+" else -offset)


def _parse_date(value: Any, patterns: Iterable[re.Pattern[str]]) -> str:
    """The first of the step's formats (as _pattern regexes) that reads the value."""
    text = _java_str(value)
    for pattern in patterns:
        match = pattern.fullmatch(text)
        if match is None:
            continue
        try:
            moment = _moment(match.groupdict())
        except ValueError:
            continue
        return _iso_millis(moment.astimezone(dt.UTC))
    raise _StepError(f"unable to parse date [{text}]")


def _iso_millis(utc: dt.datetime) -> str:
    """yyyy-MM-ddTHH:mm:ss.SSSZ. An f-string is twice as fast as strftime; years below 1000
    keep strftime, which (glibc) does not pad them."""
    if utc.year < 1000:
        return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
    return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
            f"{utc.second:02d}.{utc.microsecond // 1000:03d}Z")


def _expand_utctime(ami: Doc, doc: Doc, name: str) -> None:
    """ASN.1 UTCTime YYMMDDhhmmssZ → four-digit year, RFC 5280 pivot (pipeline script)."""
    value = ami.get(name)
    if isinstance(value, str) and len(value) == 13 and value.endswith("Z"):
        if not _LONG.fullmatch(value[:2]):
            tag = f"script_expand_asn1_utctime_{name.removeprefix('ssl_validity_')}"
            _error(doc, "script", tag, f'For input string: "{value[:2]}"')
            return
        ami[name] = ("19" if int(value[:2]) >= 50 else "20") + value


# ---------------------------------------------------------------- step plans


class _Table:
    """One step's attributes in pipeline order, each with what the step needs for it.

    A record holds a few dozen of the hundreds of attributes the steps name, so a step visits
    only :meth:`present` names, still in the table's order (error messages and competing
    copies depend on it). A name may appear once per step."""

    def __init__(self, entries: Iterable[tuple[str, Any]]) -> None:
        self.entries: dict[str, Any] = {}
        for name, payload in entries:
            if name in self.entries:
                raise ValueError(f"gigamon_fields.yml: {name} twice in one step")
            self.entries[name] = payload
        self._rank = {name: i for i, name in enumerate(self.entries)}.__getitem__

    def present(self, ami: Doc) -> list[str]:
        """The step's names the record has (the set operation walks the smaller side)."""
        return sorted(self.entries.keys() & ami.keys(), key=self._rank)


class _Plan:
    """gigamon_fields.yml resolved once: formats compiled, converters and paths looked up."""

    def __init__(self, fields: dict[str, Any]) -> None:
        self.renames_json = _Table(fields["renames_json"].items())
        self.renames_cef = _Table((old, (new, bool(cond))) for old, new, *cond in
                                  fields["renames_cef"])
        for renames in (self.renames_json, self.renames_cef):
            # present() is taken once per rename step, so no rename may create a later one's
            # source.
            targets = {v[0] if isinstance(v, tuple) else v for v in renames.entries.values()}
            if targets & renames.entries.keys():
                raise ValueError("gigamon_fields.yml: chained renames")
        self.dates = _Table((name, (tuple(map(_pattern, formats)),
                                    name.startswith("ssl_validity_")))
                            for name, formats in fields["dates"].items())
        self.converts = _Table((n, _CONVERTERS[k]) for n, k in fields["converts"].items())
        self.late_converts = _Table((n, _CONVERTERS[k])
                                    for n, k in fields["late_converts"].items())
        self.copies = {group: _Table((name, _parts(target)) for target, name in fields[group])
                       for group in ("copies_dns", "copies", "copies_after_geoip")}
        self.appends = _Table((name, target) for target, name in fields["appends"])
        self.geoip_fields: list[str] = fields["geoip_fields"]


@cache
def _plan() -> _Plan:
    return _Plan(_fields())


# ---------------------------------------------------------------- steps
#
# After the head steps gigamon.ami is never replaced, so the body steps share one `ami`: the
# document's dict, or a stand-in {} when it holds none (no step adds to an empty one).


def _ami(doc: Doc) -> Doc:
    ami = _get(doc, "gigamon.ami")
    return ami if isinstance(ami, dict) else {}


def _rename(ami: Doc, old: str, new: str) -> None:
    if old not in ami:
        return
    if new in ami:
        raise _Failure("rename", f"field [gigamon.ami.{new}] already exists")
    ami[new] = ami.pop(old)


def _dates(doc: Doc, ami: Doc, table: _Table) -> None:
    for name in table.present(ami):
        patterns, asn1 = table.entries[name]
        if asn1:
            _expand_utctime(ami, doc, name)
        if ami[name] is None:
            continue
        try:
            ami[name] = _parse_date(ami[name], patterns)
        except _StepError as err:
            del ami[name]
            _error(doc, "date", f"date_gigamon_ami_{name}", str(err))
    if ami.get("ts") not in (None, ""):
        doc["@timestamp"] = ami["ts"]


def _convert(doc: Doc, ami: Doc, table: _Table) -> None:
    for name in table.present(ami):
        value = ami[name]
        if value is None:
            continue
        convert = table.entries[name]
        if convert is _to_long and type(value) is str and value.isdecimal() and len(value) < 19:
            ami[name] = int(value)  # the usual case, inline: 18 digits are within a long
            continue
        try:
            ami[name] = [convert(v) for v in value] if isinstance(value, list) else convert(value)
        except _StepError as err:
            del ami[name]
            _error(doc, "convert", f"convert_{name}", str(err))


def _lookup(table: str, key: Any) -> Any:
    return _lookups()[table].get(key) if isinstance(key, str) else None


def _lookups_script(ami: Doc) -> None:
    """The pipeline's script_lookup_mapping, in its order (partial effects survive a failure)."""
    for name in ("end_reason", "http_uri_path", "smb_version"):
        if ami.get(name) is not None:
            ami[f"{name}_value"] = _lookup(name, ami[name])
    _cipher(ami)
    if ami.get("ssl_protocol_version") is not None:
        raw = _java_str(ami["ssl_protocol_version"])
        if raw:
            ami["ssl_protocol_version_value"] = _lookup("ssl_protocol_version", raw) or raw
    _tcp_flag_reset(ami)
    for name in ("ssl_ext_sig_algorithm_hash", "ssl_ext_sig_algorithm_scheme",
                 "dns_query_type", "dns_reply_code"):
        if ami.get(name) is not None:
            ami[f"{name}_value"] = _lookup(name, ami[name])


def _cipher(ami: Doc) -> None:
    suite = ami.get("ssl_cipher_suite_id")
    if suite is None:
        return
    if not isinstance(suite, str) or not suite:
        # `String s = ...; s.charAt(0)` throws on a non-string or an empty string.
        raise _Failure("script", f"cannot read ssl_cipher_suite_id [{_java_str(suite)}]",
                       "script_lookup_mapping")
    if not suite[0].isdigit():
        ami["ssl_cipher_suite_id_value"] = suite
        return
    names = _ciphers().get(suite) or []
    if names:
        ami["ssl_cipher_suite_id_value"] = names[0]
    if len(names) > 1:
        ami["ssl_cipher_suite_id_protocol"] = names[1]


def _tcp_flag_reset(ami: Doc) -> None:
    flags = ami.get("tcp_flags")
    if ami.get("tcp_flag_reset") is not None or flags is None:
        return
    raw = _java_str(flags)
    if _LONG.fullmatch(raw) and -(2**63) <= int(raw) < 2**63 and int(raw) & 4:
        ami["tcp_flag_reset"] = "1"


def _scaled(doc: Doc, ami: Doc, name: str) -> None:
    """event.duration = <seconds> * 1000000000L; a Java float times a long stays a float."""
    value = ami.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Failure("script", f"cannot multiply [{_java_str(value)}]")
    _set(doc, "event.duration", float(str(np.float32(value) * np.float32(1_000_000_000))))


def _copies(doc: Doc, ami: Doc, table: _Table) -> None:
    entries = table.entries
    for name in table.present(ami):
        value = ami[name]
        if value is None:
            continue
        if type(value) in _CONTAINERS:  # the document must not alias one container twice
            value = _clone(value)
        parents, leaf = entries[name]
        cur = doc  # _set_at inlined: this is the busiest write
        for part in parents:
            cur = cur.setdefault(part, {})
        cur[leaf] = value


def _question(doc: Doc) -> None:
    """dns.question.top_level_domain and .subdomain from the question name (two scripts)."""
    name = _get(doc, "dns.question.name")
    if name is None:
        return
    if not isinstance(name, str):
        raise _Failure("script", f"dynamic method [lastIndexOf] not found on [{name!r}]")
    if "." in name:
        _set(doc, "dns.question.top_level_domain", name[name.rindex(".") + 1:])
    if name.count(".") >= 2:
        _set(doc, "dns.question.subdomain", name[:name.rindex(".", 0, name.rindex("."))])


def _appends(doc: Doc, ami: Doc, table: _Table) -> None:
    for name in table.present(ami):
        if ami[name] is not None:
            _append(doc, table.entries[name], _java_str(ami[name]), unique=True)


def _geoip_guard(doc: Doc, paths: list[str]) -> None:
    """The geoip processors fail on a string that is not an IP (enrichment itself is later)."""
    for path in paths:
        value = _get(doc, path)
        if isinstance(value, str) and not _is_ip(value):
            raise _Failure("geoip", f"'{value}' is not an IP string literal.")


def _macs(doc: Doc, ami: Doc) -> None:
    for side, name in (("source", "src_mac"), ("destination", "dst_mac")):
        mac = ami.get(name)
        if mac is None:
            continue
        if not isinstance(mac, str):
            raise _Failure("script", f"dynamic method [replace] not found on [{mac!r}]")
        _set_at(doc, (side,), "mac", mac.replace(":", "-").upper())


def _drop_empty(value: Any) -> bool:
    """The pipeline's painless_remove_null: drop null/"" and containers left empty.
    Lists, nearly always short and clean, are tested whole (C-level scans) before any
    rebuild; in dicts the container test comes first, the rarer case being cheap to skip."""
    if type(value) is dict:
        dead = None  # a plain loop: a comprehension is a call of its own, per dict
        for k, v in value.items():
            if (type(v) in _CONTAINERS and _drop_empty(v)) or v is None or v == "":
                dead = [k] if dead is None else [*dead, k]
        for key in dead or ():
            del value[key]
        return not value
    if type(value) is list:
        if not (all(value) and _SCALARS.issuperset(map(type, value))):
            value[:] = [v for v in value if not (
                v is None or v == "" or (type(v) in _CONTAINERS and _drop_empty(v)))]
        return not value
    return value is None or value == ""


# ---------------------------------------------------------------- pipelines


def _cef_pipeline(doc: Doc, plan: _Plan) -> None:
    """cef-pipeline.yml: extensions → gigamon.ami with the JSON path's names."""
    cef = doc["cef"]
    try:
        if isinstance(cef, dict) and cef.get("extensions") is not None:
            _set(doc, "gigamon.ami", cef.pop("extensions"))
        if isinstance(cef, dict) and cef.get("device") is not None:
            if "device" in _ami(doc):
                raise _Failure("rename", "field [gigamon.ami.device] already exists",
                               "rename_cef_device")
            _set(doc, "gigamon.ami.device", cef.pop("device"))
        ami = _ami(doc)
        for old in plan.renames_cef.present(ami):
            new, if_absent = plan.renames_cef.entries[old]
            if not (if_absent and ami.get(new) is not None):
                _rename(ami, old, new)
        doc.pop("cef", None)
    except _Failure as failure:
        # Its own on_failure handles it; the calling pipeline then carries on.
        _mark_failed(doc, failure)


def _mark_failed(doc: Doc, failure: _Failure) -> None:
    tag = f"with tag '{failure.tag}' " if failure.tag else ""
    doc.setdefault("error", {})
    if not isinstance(doc["error"], dict):
        doc["error"] = {}
    doc["error"]["message"] = (f"Processor '{failure.kind}' {tag}"
                               f"failed with message '{failure.message}'")
    _set(doc, "event.kind", "pipeline_error")
    _append(doc, "tags", "preserve_original_event", unique=True)


def _head(doc: Doc, plan: _Plan) -> None:
    doc["ecs"] = {"version": ECS_VERSION}
    if doc.get("json") is not None:
        _set(doc, "gigamon.ami", doc.pop("json"))
    ami = _ami(doc)
    for old in plan.renames_json.present(ami):
        _rename(ami, old, plan.renames_json.entries[old])
    if doc.get("cef") is not None:
        _cef_pipeline(doc, plan)
    _set(doc, "event.kind", "event")
    event = doc["event"]  # a dict now: _set would have failed otherwise
    _append_to(event, "category", "network")
    _append_to(event, "type", "info")


def _body(doc: Doc, plan: _Plan) -> None:
    ami = _ami(doc)
    _dates(doc, ami, plan.dates)
    _convert(doc, ami, plan.converts)
    _lookups_script(ami)  # on the empty stand-in when there is no gigamon.ami: a no-op
    _scaled(doc, ami, "dns_response_time")
    _copies(doc, ami, plan.copies["copies_dns"])
    _question(doc)
    _appends(doc, ami, plan.appends)
    _convert(doc, ami, plan.late_converts)
    _scaled(doc, ami, "http_rtt")
    _copies(doc, ami, plan.copies["copies"])
    _geoip_guard(doc, plan.geoip_fields)
    _copies(doc, ami, plan.copies["copies_after_geoip"])
    _macs(doc, ami)
    _drop_empty(doc)


def _run(doc: Doc) -> Doc:
    plan = _plan()
    try:
        _head(doc, plan)
        _body(doc, plan)
    except _Failure as failure:
        _mark_failed(doc, failure)
    return doc


def _clone(value: Any) -> Any:
    """A copy of JSON data (dicts, lists, scalars): what copy.deepcopy does here, several
    times faster (no memo, no reduce protocol). A flat dict, the usual AMI record, is copied
    in one C-level step; only nested containers are walked."""
    if isinstance(value, dict):
        out = dict(value) if type(value) is dict else dict(value.items())
        if not _SCALARS.issuperset(map(type, out.values())):
            for key, item in out.items():
                if isinstance(item, dict | list):
                    out[key] = _clone(item)
        return out
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def normalize_record(record: dict[str, Any]) -> dict[str, Any]:
    """One AMI JSON object (as POSTed by the device) → the ECS document Elastic stores."""
    return _run({"json": _clone(record)})


def normalize_cef(cef: dict[str, Any]) -> dict[str, Any]:
    """One decoded CEF event (version/name/severity/extensions…) → the ECS document."""
    return _run({"cef": _clone(cef)})


def normalize_cef_event(event: dict[str, Any]) -> dict[str, Any]:
    """A whole event from the CEF decoder (cef.*, its ECS copies, event.original), as the
    agent hands it to the ingest pipeline → the ECS document."""
    return _run(_clone(event))
