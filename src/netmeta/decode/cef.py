"""CEF (ArcSight Common Event Format) messages -> ECS documents.

Behaves like Elastic Filebeat's ``decode_cef`` processor with ``ecs: true`` (the processor the
Gigamon and CEF integrations run), as pinned by its golden file
(``x-pack/filebeat/processors/decode_cef/testdata/samples.log.golden.json``):

* The message may carry any prefix (a syslog header, ...): decoding starts at the first
  ``CEF:``. No ``CEF:`` or no ``CEF:<digits>|`` -> :class:`CEFError` (Filebeat gives up too).
* Header ``CEF:Version|Vendor|Product|Version|ClassId|Name|Severity|``: ``\\|`` and ``\\\\`` are
  the only escapes; severity is ``[A-Za-z0-9-]*``.
* Extensions ``key=value``: a value ends where the next `` key=`` begins, so values hold spaces;
  escapes ``\\=`` ``\\\\`` ``\\n`` ``\\r``; short keys expand to full names from ``cef_keys.csv``
  (case-insensitive, like Filebeat); unknown keys are kept as written; dotted keys nest.
  Values stay strings in ``cef.extensions``; the ECS copies are typed. An invalid typed value
  keeps its raw string, skips the ECS field and adds ``error.message`` (``"<name>: <reason>"``).
* Parse errors after a valid version are not fatal: what was parsed is returned, with the
  errors in ``error.message`` (one string, or a list when several), as Filebeat does.

Where upstream revisions disagree the golden file wins: ``fname`` -> ``file.uid``, the ``msg``
extension never replaces ``message`` (the CEF name), ``cef.version`` is a number, MAC addresses
are copied as written (validated, not normalized). Go's ``strconv`` number syntax is followed
(``0x``/``0o``/``0b``/leading-``0`` octal integers); NaN/Inf floats are rejected so that the
document stays valid JSON.
"""

from __future__ import annotations

import csv
import ipaddress
import re
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

KEYS_FILE = Path(__file__).with_name("cef_keys.csv")

KEY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,\[\]]*\Z")
VERSION_RE = re.compile(r"CEF:([0-9]+)")
SEVERITY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
# Ragel's ``space`` class: a value's trailing whitespace is trimmed only at end of message.
WHITESPACE = " \t\n\v\f\r"
HEADER_ESCAPES = {"\\": "\\", "|": "|"}
VALUE_ESCAPES = {"=": "=", "\\": "\\", "n": "\n", "r": "\r"}
HEADER_FIELDS = ("vendor", "product", "device_version", "event_class_id", "name")
# CEF spec: the textual severities; Filebeat maps them to the low end of each numeric band.
SEVERITY_WORDS = {"low": 0, "medium": 4, "high": 7, "very-high": 9}
INT64_MAX = 2**63 - 1

ERR_END = "unexpected end of CEF event"
ERR_HEADER = "incomplete CEF header"


class CEFError(ValueError):
    """The message holds no decodable CEF header (nothing usable can be produced)."""


@dataclass(frozen=True)
class KeySpec:
    """One row of ``cef_keys.csv``."""

    key: str
    full_name: str
    type: str
    ecs_field: str
    ecs_translate: str


@dataclass
class Parsed:
    """What the scanner read; errors are kept, not raised, like Filebeat's parser."""

    version: int
    header: dict[str, str] = field(default_factory=dict)
    extensions: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@lru_cache(maxsize=1)
def key_table() -> tuple[dict[str, KeySpec], dict[str, KeySpec]]:
    """(lower-cased short key -> spec, full name -> spec), read once."""
    with KEYS_FILE.open(newline="", encoding="utf-8") as fh:
        rows = [KeySpec(**row) for row in csv.DictReader(fh)]
    by_key = {r.key.lower(): r for r in rows}
    by_full = {r.full_name: r for r in rows}
    return by_key, by_full


@lru_cache(maxsize=1)
def full_names() -> dict[str, str]:
    """Lower-cased short key -> full name (the lookup ``expand`` does for every extension)."""
    return {key: spec.full_name for key, spec in key_table()[0].items()}


@lru_cache(maxsize=1)
def ecs_copies() -> dict[str, tuple[str, Callable[[str], Any]]]:
    """Full name -> (ECS field, converter) for the extensions that have an ECS copy.

    A translation, when the row has one, takes the place of the type's converter.
    """
    return {
        name: (spec.ecs_field,
               TRANSLATORS[spec.ecs_translate] if spec.ecs_translate else CONVERTERS[spec.type])
        for name, spec in key_table()[1].items()
        if spec.ecs_field
    }


# --- scanning -----------------------------------------------------------------------------


def scan_header_field(data: str, pos: int) -> tuple[str | None, int, str | None]:
    """Read one ``|``-terminated header field from ``pos``.

    Returns (value or None, position after the pipe or of the failure, error or None).
    """
    out: list[str] = []
    i, n = pos, len(data)
    while i < n:
        c = data[i]
        if c == "|":
            return "".join(out), i + 1, None
        if c == "\\":
            if i + 1 >= n:
                return None, n, ERR_END
            nxt = data[i + 1]
            if nxt not in HEADER_ESCAPES:
                return None, i + 1, f"error in CEF event at pos {i + 2}"
            out.append(HEADER_ESCAPES[nxt])
            i += 2
            continue
        out.append(c)
        i += 1
    return None, n, ERR_END


def scan_severity(data: str, pos: int) -> tuple[str | None, int, str | None]:
    """Severity is restricted to letters, digits and '-', then a pipe."""
    i, n = pos, len(data)
    while i < n and data[i] in SEVERITY_CHARS:
        i += 1
    if i >= n:
        return None, n, ERR_END
    if data[i] != "|":
        return None, i, f"error in CEF event at pos {i + 1}"
    return data[pos:i], i + 1, None


# The usual header: no backslash in any field, so no escapes and no escape errors.
PLAIN_HEADER_RE = re.compile(r"CEF:([0-9]+)\|" + r"([^|\\]*)\|" * 5 + r"([A-Za-z0-9-]*)\|")


def scan_header(data: str) -> tuple[Parsed, int | None]:
    """Parse ``CEF:N|...|sev|``; returns the parse and where extensions start (None: stop)."""
    m = PLAIN_HEADER_RE.match(data)
    if m is not None:
        version, *fields, severity = m.groups()
        header = dict(zip(HEADER_FIELDS, fields, strict=True))
        header["severity"] = severity
        return Parsed(version=go_atoi_clamped(version), header=header), m.end()
    return scan_header_slow(data)


def scan_header_slow(data: str) -> tuple[Parsed, int | None]:
    """Character by character: escapes, and the exact position of any error."""
    m = VERSION_RE.match(data)
    if m is None or m.end() >= len(data) or data[m.end()] != "|":
        # Filebeat only records the version once its pipe is seen; without it nothing is valid.
        raise CEFError("no CEF header (expected 'CEF:<version>|')")
    parsed = Parsed(version=go_atoi_clamped(m.group(1)))
    pos = m.end() + 1
    for name in HEADER_FIELDS:
        value, pos, err = scan_header_field(data, pos)
        if err is not None:
            parsed.errors.extend(header_errors(err))
            return parsed, None
        parsed.header[name] = value or ""
    severity, pos, err = scan_severity(data, pos)
    if err is not None:
        parsed.errors.extend(header_errors(err))
        return parsed, None
    parsed.header["severity"] = severity or ""
    return parsed, pos


def go_atoi_clamped(digits: str) -> int:
    """Go's Atoi saturates at int64 max; also keeps Python's int() off huge digit strings."""
    digits = digits.lstrip("0") or "0"
    return INT64_MAX if len(digits) > 19 else min(int(digits), INT64_MAX)


def header_errors(err: str) -> list[str]:
    """Running out of input inside the header is reported as two errors by Filebeat."""
    return [ERR_END, ERR_HEADER] if err == ERR_END else [err]


def unescape_value(raw: str) -> str:
    """Replace the extension escapes; the scanner has already rejected any other backslash."""
    if "\\" not in raw:
        return raw
    out: list[str] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            out.append(VALUE_ESCAPES.get(raw[i + 1], raw[i + 1]))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def key_before(data: str, start: int, eq: int) -> int | None:
    """If ``data[:eq]`` ends with `` key`` (space at or after ``start``), the key's index."""
    sp = data.rfind(" ", start, eq)
    if sp < 0 or not KEY_RE.match(data, sp + 1, eq):
        return None
    return sp + 1


def find_next_key(data: str, pos: int) -> int | None:
    """Recovery: the index of the space that starts the next `` key=`` at or after ``pos``."""
    for m in NEXT_KEY_RE.finditer(data, pos):
        return m.start()
    return None


NEXT_KEY_RE = re.compile(r" [A-Za-z0-9_][A-Za-z0-9_.,\[\]]*=")


# Value text up to its first unescaped '=' or unknown escape: plain runs and valid escapes.
VALUE_RUN_RE = re.compile(r"(?:[^=\\]+|\\[=\\nr])*")


def scan_value(data: str, start: int) -> tuple[int, int | None, int | None]:
    """Scan a value from ``start``.

    Returns (end of value, index of the next key or None at end of input, error pos or None).
    The value is ``data[start:end]`` (escapes still in place).
    """
    n = len(data)
    i = VALUE_RUN_RE.match(data, start).end()
    if i < n and data[i] == "\\":
        # An escape Filebeat does not know, or a backslash ending the input.
        return i, None, min(i + 1, n)
    if i < n:  # the first unescaped '=': it must end a `` key``
        key_at = key_before(data, start, i)
        if key_at is None:
            return i, None, i
        return key_at - 1, key_at, None
    end = n
    while end > start and data[end - 1] in WHITESPACE:
        end -= 1
    return end, None, None


def scan_key(data: str, pos: int) -> tuple[str | None, int]:
    """A key at ``pos`` followed by '=': (key, index after '=') or (None, failure index)."""
    m = KEY_AT_RE.match(data, pos)
    if m is None:
        return None, pos
    if m.end() < len(data) and data[m.end()] == "=":
        return m.group(0), m.end() + 1
    return None, m.end()


KEY_AT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.,\[\]]*")


def split_plain_extensions(text: str) -> list[tuple[str, str]] | None:
    """Extensions without backslashes: every '=' ends a key, so split on them.

    Each chunk between two '=' is ``value key``; None when some key is malformed, leaving
    the error report to :func:`scan_extensions`.
    """
    chunks = text.split("=")
    key = chunks[0]
    if len(chunks) < 2 or not KEY_RE.match(key):
        return None
    pairs = []
    for chunk in chunks[1:-1]:
        value, space, next_key = chunk.rpartition(" ")
        if not space or not KEY_RE.match(next_key):
            return None
        pairs.append((key, value))
        key = next_key
    pairs.append((key, chunks[-1].rstrip(WHITESPACE)))
    return pairs


def scan_extensions(data: str, pos: int, parsed: Parsed) -> None:
    """Read ``key=value`` pairs from ``pos`` to the end into ``parsed``."""
    n = len(data)
    if pos >= n:
        return
    if data.find("\\", pos) < 0:
        pairs = split_plain_extensions(data[pos:].lstrip(" "))
        if pairs is not None:
            parsed.extensions = pairs
            return
    while pos < n and data[pos] == " ":
        pos += 1
    while True:
        key, after = scan_key(data, pos)
        if key is None:
            at_end = after >= n
            parsed.errors.append(ERR_END if at_end else f"error in CEF event at pos {after + 1}")
            return
        end, next_key, err_at = scan_value(data, after)
        if err_at is not None:
            # Filebeat drops the malformed value and resumes at the next `` key=``.
            parsed.errors.append(f"malformed value for {key} at pos {err_at + 1}")
            resume = find_next_key(data, err_at)
            if resume is None:
                parsed.errors.append(ERR_END)
                return
            pos = resume + 1
            continue
        parsed.extensions.append((key, unescape_value(data[after:end])))
        if next_key is None:
            return
        pos = next_key


def parse(cef: str) -> Parsed:
    """Scan a string that starts with ``CEF:``."""
    parsed, pos = scan_header(cef)
    if pos is not None:
        scan_extensions(cef, pos, parsed)
    return parsed


# --- typed values ---------------------------------------------------------------------------

OCTAL_RE = re.compile(r"[+-]?0[0-9_]")
# Unsigned decimal without a leading zero, short enough for any int64: int() reads it as Go does.
PLAIN_DECIMAL_RE = re.compile(r"(?:0|[1-9][0-9]{0,18})\Z")
INT_LIMITS = {bits: 2 ** (bits - 1) for bits in (32, 64)}


def go_int(value: str, bits: int) -> int:
    """``strconv.ParseInt(v, 0, bits)``: base prefixes, leading-0 octal, no spaces."""
    if PLAIN_DECIMAL_RE.match(value):  # ports, counts, protocol numbers
        number = int(value)
        if number < INT_LIMITS[bits]:
            return number
        raise ValueError(f'strconv.ParseInt: parsing "{value}": value out of range')
    if not value.isascii() or value != value.strip() or not value:
        raise ValueError(f'strconv.ParseInt: parsing "{value}": invalid syntax')
    text = value
    if OCTAL_RE.match(text):
        sign = text[0] if text[0] in "+-" else ""
        text = f"{sign}0o{text[len(sign) + 1 :]}"
    try:
        number = int(text, 0)
    except ValueError:
        raise ValueError(f'strconv.ParseInt: parsing "{value}": invalid syntax') from None
    if not -(2 ** (bits - 1)) <= number < 2 ** (bits - 1):
        raise ValueError(f'strconv.ParseInt: parsing "{value}": value out of range')
    return number


FLOAT_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")


def go_float(value: str) -> float:
    """``strconv.ParseFloat`` for decimal syntax (finite results only)."""
    if not FLOAT_RE.match(value):
        raise ValueError(f'strconv.ParseFloat: parsing "{value}": invalid syntax')
    number = float(value)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f'strconv.ParseFloat: parsing "{value}": value out of range')
    return number


def float32(value: str) -> float:
    """Go's float32: the decimal parsed, rounded to single precision."""
    return float(struct.unpack("f", struct.pack("f", go_float(value)))[0])


def is_plain_ip(value: str) -> bool:
    """Cheap exact acceptance of the usual forms: ``inet_pton`` accepts no text that
    ``ipaddress`` rejects (no leading zeros, 4 dotted decimals, at most 4 hex digits a group);
    IPv6 with an embedded IPv4 tail is left to ``ipaddress``."""
    family = socket.AF_INET6 if ":" in value else socket.AF_INET
    if family == socket.AF_INET6 and "." in value:
        return False
    try:
        socket.inet_pton(family, value)
    except (OSError, ValueError):
        return False
    return True


def valid_ip(value: str) -> str:
    """``net.ParseIP``: plain IPv4/IPv6 text, no zone; the text itself is kept."""
    try:
        if "%" in value or not value.isascii():
            raise ValueError
        if not is_plain_ip(value):  # rejected or unusual: ``ipaddress`` has the last word
            ipaddress.ip_address(value)
    except ValueError:
        raise ValueError("value is not a valid IP address") from None
    return value


MAC_RE = re.compile(
    r"(?:[0-9A-Fa-f]{2}(?P<s>[:-])(?:[0-9A-Fa-f]{2}(?P=s)){4}[0-9A-Fa-f]{2}"
    r"|[0-9A-Fa-f]{2}(?P<t>[:-])(?:[0-9A-Fa-f]{2}(?P=t)){6}[0-9A-Fa-f]{2}"
    r"|[0-9A-Fa-f]{2}(?P<u>[:-])(?:[0-9A-Fa-f]{2}(?P=u)){18}[0-9A-Fa-f]{2}"
    r"|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){2}"
    r"|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){3}"
    r"|[0-9A-Fa-f]{4}(?:\.[0-9A-Fa-f]{4}){9})\Z"
)


def valid_mac(value: str) -> str:
    """``net.ParseMAC`` forms (6, 8 or 20 octets); copied as written, as the golden shows."""
    if not MAC_RE.match(value):
        raise ValueError(f"address {value}: invalid MAC address")
    return value


MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
CEF_TIME_RE = re.compile(
    r"(?P<mon>[A-Za-z]{3}) {1,2}(?P<day>[0-9]{1,2})(?: (?P<year>[0-9]{4}))? "
    r"(?P<h>[0-9]{1,2}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2})(?:[.,](?P<frac>[0-9]+))?"
    r"(?: (?P<tz>UTC|[A-Z]{3}(?:[A-Z]?T)?))?\Z"
)


def parse_cef_time(value: str, now: datetime | None = None) -> datetime:
    """Unix milliseconds, or ``MMM dd [yyyy] HH:mm:ss[.SSS] [zzz]`` read as UTC.

    Go parses a zone abbreviation in a UTC location as offset 0, and a missing year as the
    current one, so both are reproduced here.
    """
    try:
        millis = go_int(value, 64)
    except ValueError:
        pass
    else:
        try:
            return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis)
        except OverflowError:
            raise ValueError("value is not a valid timestamp") from None
    m = CEF_TIME_RE.match(value)
    month = MONTHS.get(m.group("mon").lower()) if m else None
    if m is None or month is None:
        raise ValueError("value is not a valid timestamp")
    year = int(m.group("year") or (now or datetime.now(UTC)).year)
    micros = int((m.group("frac") or "0")[:6].ljust(6, "0"))
    try:
        return datetime(year, month, int(m.group("day")), int(m.group("h")), int(m.group("m")),
                        int(m.group("s")), micros, tzinfo=UTC)
    except ValueError:
        raise ValueError("value is not a valid timestamp") from None


def format_time(ts: datetime) -> str:
    """Beats' JSON time layout: milliseconds and a ``Z``."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"


CONVERTERS: dict[str, Callable[[str], Any]] = {
    "string": str,
    "integer": lambda v: go_int(v, 32),
    "long": lambda v: go_int(v, 64),
    "float": float32,
    "double": go_float,
    "ip": valid_ip,
    "mac": valid_mac,
    "timestamp": lambda v: format_time(parse_cef_time(v)),
}


def translate_direction(value: str) -> str:
    """``deviceDirection``: 0 inbound, 1 outbound; anything else is an error."""
    if value == "0":
        return "inbound"
    if value == "1":
        return "outbound"
    raise ValueError("deviceDirection must be 0 or 1")


TRANSLATORS: dict[str, Callable[[str], Any]] = {
    "lower": str.lower,
    "direction": translate_direction,
    # Only URL-looking request contexts become the referrer.
    "http_prefix": lambda v: v if v.startswith("http") else None,
}


# --- document -------------------------------------------------------------------------------


def put(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path, creating objects; a scalar in the way is replaced (last one wins)."""
    if "." not in path:  # most extension names are flat
        doc[path] = value
        return
    *parents, leaf = path.split(".")
    node = doc
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[leaf] = value


def full_name(key: str) -> str:
    """Short key -> dictionary name; unknown (vendor) keys stay as written."""
    return full_names().get(key.lower(), key)


def expand(extensions: list[tuple[str, str]]) -> dict[str, str]:
    """Full names in input order; empty values dropped (Filebeat's remove-empty option)."""
    names = full_names()
    return {names.get(key.lower(), key): value for key, value in extensions if value != ""}


# (output name, header field) pairs, in output order.
DEVICE_FIELDS = (("vendor", "vendor"), ("product", "product"), ("version", "device_version"),
                 ("event_class_id", "event_class_id"))
OBSERVER_FIELDS = (("vendor", "vendor"), ("product", "product"), ("version", "device_version"))


def non_empty(header: dict[str, str], fields: tuple[tuple[str, str], ...]) -> dict[str, str]:
    """The header fields that are set, renamed; empty ones are left out."""
    return {out: header[name] for out, name in fields if header.get(name)}


def cef_object(parsed: Parsed, extensions: dict[str, str]) -> dict[str, Any]:
    """The ``cef`` object: header fields (non-empty only) and nested extensions."""
    h = parsed.header
    obj: dict[str, Any] = {"version": parsed.version}
    device = non_empty(h, DEVICE_FIELDS)
    if device:
        obj["device"] = device
    for name in ("name", "severity"):
        if h.get(name):
            obj[name] = h[name]
    if extensions:
        ext: dict[str, Any] = {}
        for key, value in extensions.items():
            if "." in key:
                put(ext, key, value)
            else:  # flat, the usual case: skip the call
                ext[key] = value
        obj["extensions"] = ext
    return obj


SIGNED_DIGITS_RE = re.compile(r"[+-]?[0-9]+")


def severity_number(severity: str) -> int | None:
    """Numeric severity (``strconv.Atoi``) or the CEF words; None when neither."""
    word = SEVERITY_WORDS.get(severity.lower())
    if word is not None:
        return word
    if not SIGNED_DIGITS_RE.fullmatch(severity) or len(severity.lstrip("+-0")) > 19:
        return None
    number = int(severity)
    return number if -INT64_MAX - 1 <= number <= INT64_MAX else None


def header_ecs(doc: dict[str, Any], header: dict[str, str]) -> None:
    """observer.*, event.code, message (the CEF name) and event.severity.

    Runs first on a ``doc`` holding only ``cef``, so the objects can be assigned whole.
    """
    observer = non_empty(header, OBSERVER_FIELDS)
    if observer:
        doc["observer"] = observer
    if header.get("event_class_id"):
        doc["event"] = {"code": header["event_class_id"]}
    if header.get("name"):
        doc["message"] = header["name"]
    sev = severity_number(header.get("severity", ""))
    if header.get("severity") and sev is not None:
        put(doc, "event.severity", sev)


def extensions_ecs(doc: dict[str, Any], extensions: dict[str, str], errors: list[str]) -> None:
    """Copy mapped extensions to their ECS fields; bad values become errors, not fields."""
    copies = ecs_copies()
    for name, raw in extensions.items():
        copy = copies.get(name)
        if copy is None:
            continue
        ecs_field, convert = copy
        try:
            value = convert(raw)
        except ValueError as exc:
            errors.append(f"{name}: {exc}")
            continue
        if value is not None:
            put(doc, ecs_field, value)


def add_errors(doc: dict[str, Any], errors: list[str]) -> None:
    """error.message: one string, or the de-duplicated list when there are several."""
    if not errors:  # the usual case
        return
    unique = list(dict.fromkeys(errors))
    if unique:
        put(doc, "error.message", unique[0] if len(unique) == 1 else unique)


def decode(message: str, *, original: bool = True) -> dict[str, Any]:
    """Decode one CEF message (any prefix before ``CEF:`` is skipped) into an ECS document.

    ``original`` keeps the whole input in ``event.original``. Raises :class:`CEFError` when the
    message has no ``CEF:<version>|`` header.
    """
    start = message.find("CEF:")
    if start < 0:
        raise CEFError("message does not contain a CEF header")
    parsed = parse(message[start:])
    extensions = expand(parsed.extensions)
    doc: dict[str, Any] = {"cef": cef_object(parsed, extensions)}
    errors = list(parsed.errors)
    header_ecs(doc, parsed.header)
    extensions_ecs(doc, extensions, errors)
    add_errors(doc, errors)
    if original:
        put(doc, "event.original", message)
    return doc
