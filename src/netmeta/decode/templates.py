"""Template state and the record decoder shared by NetFlow v5/v9 and IPFIX.

A template (a list of (enterprise number, element id, length) fields) compiles once into a
NumPy big-endian structured dtype plus one converter per column; a data set then decodes with
one ``np.frombuffer`` call and becomes Arrow columns. Data sets of the same template from many
datagrams are joined first, so a batch of datagrams costs one call per template, not one per
datagram. Templates with a variable-length field (length 0xFFFF) take an exact per-record path.

Public shapes (the decoders in ``netflow.py`` and ``ipfix.py`` fill them):

- ``TemplateKey(exporter, domain, template_id)``: templates are scoped per exporter address
  (as the caller names it, e.g. "192.0.2.1:4444") and observation domain / v9 source id.
- ``Header``: the fields of one datagram's header.
- ``Batch``: the records of one template as a ``pa.Table`` (column names are element names:
  ``octet_delta_count``; unknown elements ``field_<id>`` / ``pen<pen>_field_<id>``), with the
  header each row came in (``headers[rows[i]]``: exporter, domain, export time, uptime ...);
  exporters sending the same template share a batch, and held records arrive in later calls.
- ``Decoded``: per input datagram its header (None when it could not be decoded at all), the
  data and options batches, errors as (datagram index, message), the held-set count, and the
  held sets given up on (``dropped``: expired or overflowed; the caller stores them as failures).
- ``TemplateState``: templates plus data sets held until their template arrives (bounded in
  count and bytes, expiring after ``held_ttl`` seconds); ``to_dict()`` / ``from_dict()`` give a
  JSON-able form to save in the data dir so a restart causes no blackout.

Column types: integers int64 (unsigned64 elements uint64), floats float64, booleans bool,
addresses text (IPv4 dotted, IPv6 as Go prints it, MAC "00:11:22:33:44:55"), strings with
trailing NULs removed, dateTime* as Arrow timestamps (UTC, no time zone: s/ms/us/ns),
octetArray, lists and any value whose length does not fit its type as binary.
"""

from __future__ import annotations

import base64
import csv
import ipaddress
import socket
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netmeta.event import ipv4_keys, remember_ip_keys

VARIABLE = 0xFFFF  # field length meaning "length prefix in each record" (RFC 7011 7.)
REVERSE_PEN = 29305  # RFC 5103: the reverse direction of every IANA element
V9_SCOPE = -1  # pseudo enterprise number of NetFlow v9 options scope field types
SKIP = -2  # pseudo enterprise number of bytes a fixed layout skips (v5 padding)
STATE_VERSION = 1


class DecodeError(ValueError):
    """A datagram that cannot be decoded at all (too short for a header, unknown version)."""


# ---------------------------------------------------------------- information elements

class Element(NamedTuple):
    name: str
    type: str  # abstract data type, RFC 7012 3.1


@lru_cache(maxsize=1)
def _registry() -> dict[tuple[int, int], Element]:
    text = resources.files("netmeta.decode").joinpath("ipfix_elements.csv").read_text()
    rows = csv.reader(line for line in text.splitlines() if line and not line.startswith("#"))
    next(rows)  # column titles
    out: dict[tuple[int, int], Element] = {}
    for pen, eid, name, etype, *_ in rows:
        key = (V9_SCOPE if pen == "v9scope" else int(pen), int(eid))
        out.setdefault(key, Element(name, etype))  # the first definition of an id wins
    return out


def element(pen: int, eid: int) -> Element:
    """Name and type of an element; an unknown one is kept by id as octetArray."""
    reg = _registry()
    found = reg.get((pen, eid))
    if found is not None:
        return found
    if pen == REVERSE_PEN and (0, eid) in reg:
        base = reg[(0, eid)]
        return Element("reverse_" + base.name, base.type)
    if pen == V9_SCOPE:
        return Element(f"scope_{eid}", "octetArray")
    return Element(f"field_{eid}" if pen == 0 else f"pen{pen}_field_{eid}", "octetArray")


# ---------------------------------------------------------------- templates and results

class FieldSpec(NamedTuple):
    pen: int  # 0 for IANA / v9 types, V9_SCOPE, SKIP
    id: int
    length: int  # VARIABLE for a length-prefixed field


@dataclass(frozen=True, slots=True)
class Template:
    fields: tuple[FieldSpec, ...]
    scope_count: int = 0  # the first scope_count fields are options scope fields
    options: bool = False


class TemplateKey(NamedTuple):
    exporter: str
    domain: int  # IPFIX observation domain id, v9 source id, 0 for v5
    template_id: int  # 0 for v5


@dataclass(frozen=True, slots=True)
class Header:
    version: int
    exporter: str
    domain: int
    export_time: int  # seconds since 1970 (UTC)
    sequence: int  # v5: flows, v9: datagrams, IPFIX: data records (RFC 7011 3.1)
    sys_uptime: int | None = None  # ms since the exporter booted (v5, v9)
    count: int | None = None  # record count the header announces (v5, v9)
    export_nanos: int = 0  # v5 residual nanoseconds of the export time
    engine_type: int | None = None  # v5
    engine_id: int | None = None  # v5
    sampling_interval: int | None = None  # v5: mode (2 bits) and interval (14 bits)


@dataclass(slots=True)
class Batch:
    """Records of one template id and layout; several exporters sending the same template
    share a batch (their exporter and domain are in each row's header)."""

    template_id: int
    template: Template
    records: pa.Table
    headers: list[Header]  # the datagram headers these records came in
    rows: np.ndarray  # int32 per row: index into headers

    @property
    def scope_columns(self) -> tuple[str, ...]:
        """Columns holding the options scope (v9 and IPFIX options records)."""
        return compile_template(self.template).scope_names

    def header_values(self, attr: str) -> np.ndarray:
        """One header attribute per row (``exporter``, ``export_time`` ...), vectorized."""
        values = np.array([getattr(h, attr) for h in self.headers])
        return values[self.rows]


@dataclass(frozen=True, slots=True)
class HeldSet:
    """A data set that arrived before its template."""

    key: TemplateKey
    body: bytes  # the set's content after the set header
    header: Header
    at: float  # when it arrived (the caller's clock, seconds)
    reason: str = ""  # why it was given up: "expired" or "overflow"


@dataclass(slots=True)
class Decoded:
    headers: list[Header | None] = field(default_factory=list)  # one per input datagram
    data: list[Batch] = field(default_factory=list)
    options: list[Batch] = field(default_factory=list)
    # (datagram index, message); index -1: a set held since an earlier call
    errors: list[tuple[int, str]] = field(default_factory=list)
    held: int = 0  # data sets of these datagrams held for their template
    held_in: set[int] = field(default_factory=set)  # datagrams that had such sets
    dropped: list[HeldSet] = field(default_factory=list)  # held sets given up on
    templates: int = 0  # template records learned
    withdrawn: int = 0  # templates withdrawn

    @property
    def header(self) -> Header | None:
        return self.headers[0] if self.headers else None

    @property
    def records(self) -> int:
        return sum(b.records.num_rows for b in self.data)


# ---------------------------------------------------------------- state

class TemplateState:
    """Templates per (exporter, domain, template id) and the data sets waiting for one.

    ``now`` everywhere is the caller's wall clock in seconds (``time.time()``), so held sets
    saved by ``to_dict`` expire correctly after a restart.
    """

    def __init__(self, *, max_templates: int = 16384, max_held_sets: int = 1024,
                 max_held_bytes: int = 8 << 20, held_ttl: float = 60.0) -> None:
        self.max_templates = max_templates
        self.max_held_sets = max_held_sets
        self.max_held_bytes = max_held_bytes
        self.held_ttl = held_ttl
        self._templates: dict[TemplateKey, Template] = {}
        self._held: list[HeldSet] = []  # arrival order
        self._held_bytes = 0
        self.changes = 0  # template definitions added, changed or withdrawn (to save state)

    @property
    def held(self) -> list[HeldSet]:
        return list(self._held)

    def get(self, key: TemplateKey) -> Template | None:
        return self._templates.get(key)

    def items(self) -> list[tuple[TemplateKey, Template]]:
        return list(self._templates.items())

    def learn(self, key: TemplateKey, template: Template) -> list[HeldSet]:
        """Store a template; return the held sets that were waiting for it."""
        if self._templates.get(key) != template:
            self.changes += 1
            self._templates.pop(key, None)
            self._templates[key] = template
            while len(self._templates) > self.max_templates:
                # the oldest definition goes: an exporter that still uses it resends it
                del self._templates[next(iter(self._templates))]
        return self._release(key)

    def withdraw(self, key: TemplateKey) -> bool:
        gone = self._templates.pop(key, None) is not None
        self.changes += gone
        return gone

    def withdraw_all(self, exporter: str, domain: int, options: bool) -> int:
        """RFC 7011 8.1: withdraw every (options) template of an observation domain."""
        gone = [k for k, t in self._templates.items()
                if k.exporter == exporter and k.domain == domain and t.options == options]
        for k in gone:
            del self._templates[k]
        self.changes += len(gone)
        return len(gone)

    def hold(self, key: TemplateKey, body: bytes, header: Header, now: float) -> list[HeldSet]:
        """Keep a data set until its template arrives; return the sets pushed out."""
        held = HeldSet(key, bytes(body), header, now)
        self._held.append(held)
        self._held_bytes += len(held.body)
        out: list[HeldSet] = []
        while self._held and (len(self._held) > self.max_held_sets
                              or self._held_bytes > self.max_held_bytes):
            out.append(self._pop(0, "overflow"))
        return out

    def expire(self, now: float) -> list[HeldSet]:
        """Give up on held sets older than ``held_ttl``."""
        out: list[HeldSet] = []
        while self._held and now - self._held[0].at > self.held_ttl:
            out.append(self._pop(0, "expired"))
        return out

    def _pop(self, i: int, reason: str) -> HeldSet:
        held = self._held.pop(i)
        self._held_bytes -= len(held.body)
        return HeldSet(held.key, held.body, held.header, held.at, reason)

    def _release(self, key: TemplateKey) -> list[HeldSet]:
        if not self._held:
            return []
        mine = [h for h in self._held if h.key == key]
        if mine:
            self._held = [h for h in self._held if h.key != key]
            self._held_bytes -= sum(len(h.body) for h in mine)
        return mine

    # -- persistence

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "templates": [
                {"exporter": k.exporter, "domain": k.domain, "id": k.template_id,
                 "options": t.options, "scope_count": t.scope_count,
                 "fields": [list(f) for f in t.fields]}
                for k, t in self._templates.items()],
            "held": [
                {"exporter": h.key.exporter, "domain": h.key.domain, "id": h.key.template_id,
                 "body": base64.b64encode(h.body).decode(), "at": h.at,
                 "header": asdict(h.header)}
                for h in self._held],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], **limits: Any) -> TemplateState:
        if data.get("version") != STATE_VERSION:
            raise ValueError(f"template state version {data.get('version')!r} is not "
                             f"{STATE_VERSION}")
        state = cls(**limits)
        for t in data.get("templates", []):
            fields = tuple(FieldSpec(int(p), int(i), int(n)) for p, i, n in t["fields"])
            key = TemplateKey(str(t["exporter"]), int(t["domain"]), int(t["id"]))
            state.learn(key, Template(fields, int(t["scope_count"]), bool(t["options"])))
        for h in data.get("held", []):
            key = TemplateKey(str(h["exporter"]), int(h["domain"]), int(h["id"]))
            state.hold(key, base64.b64decode(h["body"]), Header(**h["header"]), float(h["at"]))
        return state


# ---------------------------------------------------------------- compiling a template

Convert = Callable[[np.ndarray], pa.Array]
VarConvert = Callable[[list[bytes]], pa.Array]


class Plan(NamedTuple):
    """How one fixed-length field becomes a column."""

    dtype: np.dtype  # its part of the record dtype
    convert: Convert  # the field's values (as that dtype) -> Arrow array


@dataclass(frozen=True, slots=True)
class Compiled:
    names: tuple[str, ...]  # one column per field of non-zero length
    scope_names: tuple[str, ...]
    plans: tuple[Plan | None, ...]  # None: a variable-length field
    var_converts: tuple[VarConvert | None, ...]
    lengths: tuple[int, ...]  # per column: its length or VARIABLE
    layout: tuple[tuple[int, int], ...]  # per template field: (length, column or -1)
    dtype: np.dtype | None  # the whole record; None when a field has variable length
    record_length: int  # fixed: bytes per record; variable: the least a record can take


@lru_cache(maxsize=4096)
def compile_template(template: Template) -> Compiled:
    names: list[str] = []
    scope_names: list[str] = []
    plans: list[Plan | None] = []
    var_converts: list[VarConvert | None] = []
    lengths: list[int] = []
    layout: list[tuple[int, int]] = []
    seen: dict[str, int] = {}
    offsets: list[int] = []
    offset = 0
    for i, f in enumerate(template.fields):
        if f.length == 0 or f.pen == SKIP:
            # nothing to read (RFC 3954 exporters send 0-length fields) or padding to skip
            layout.append((f.length, -1))
            offset += f.length
            continue
        el = element(f.pen, f.id)
        name = el.name
        if name in seen:
            # a template may carry an element twice; both values are kept
            seen[name] += 1
            name = f"{name}__{seen[name]}"
        else:
            seen[name] = 1
        layout.append((f.length, len(names)))
        names.append(name)
        if i < template.scope_count:
            scope_names.append(name)
        lengths.append(f.length)
        if f.length == VARIABLE:
            plans.append(None)
            var_converts.append(_var_convert(el.type))
        else:
            plans.append(_plan(el.type, f.length))
            var_converts.append(None)
            offsets.append(offset)
            offset += f.length
    fixed = VARIABLE not in lengths
    dtype = None
    if fixed:
        dtype = np.dtype({"names": [f"f{i}" for i in range(len(names))],
                          "formats": [p.dtype for p in plans if p is not None],
                          "offsets": offsets, "itemsize": offset})
        record_length = offset
    else:
        record_length = sum(n for n, _ in layout if n != VARIABLE) + lengths.count(VARIABLE)
    return Compiled(tuple(names), tuple(scope_names), tuple(plans), tuple(var_converts),
                    tuple(lengths), tuple(layout), dtype, record_length)


# ---------------------------------------------------------------- converters

_UINT = {1: ">u1", 2: ">u2", 4: ">u4", 8: ">u8"}
_SINT = {1: ">i1", 2: ">i2", 4: ">i4", 8: ">i8"}
_NTP_EPOCH = 2208988800  # seconds from 1900-01-01 (NTP) to 1970-01-01
_OCTET_TEXT = pa.array([str(i) for i in range(256)], pa.string())
_HEX_TEXT = pa.array([f"{i:02x}" for i in range(256)], pa.string())


def _plan(etype: str, length: int) -> Plan:
    """The dtype and converter of a fixed-length field of abstract type ``etype``."""
    if etype.startswith("unsigned") and etype != "unsigned256" and length <= 8:
        wide = etype == "unsigned64" or length > 4
        out = np.uint64 if wide else np.int64
        if length in _UINT:
            return Plan(np.dtype(_UINT[length]), _as(out))
        return Plan(np.dtype((np.uint8, (length,))), _odd_unsigned(out))
    if etype.startswith("signed") and length in _SINT:
        return Plan(np.dtype(_SINT[length]), _as(np.int64))
    if etype in ("float32", "float64") and length in (4, 8):
        return Plan(np.dtype(f">f{length}"), _as(np.float64))
    if etype == "boolean" and length == 1:
        return Plan(np.dtype(np.uint8), _boolean)
    if etype == "ipv4Address" and length == 4:
        return Plan(np.dtype((np.uint8, (4,))), _ipv4)
    if etype == "ipv6Address" and length == 16:
        return Plan(np.dtype((np.uint8, (16,))), _ipv6)
    if etype == "macAddress" and length == 6:
        return Plan(np.dtype((np.uint8, (6,))), _mac)
    if etype == "string":
        return Plan(np.dtype(f"S{length}"), _string)
    if etype == "dateTimeSeconds" and length == 4:
        return Plan(np.dtype(">u4"), _timestamp("s"))
    if etype == "dateTimeMilliseconds" and length == 8:
        return Plan(np.dtype(">u8"), _timestamp("ms"))
    if etype in ("dateTimeMicroseconds", "dateTimeNanoseconds") and length == 8:
        return Plan(np.dtype((">u4", (2,))), _ntp("us" if "Micro" in etype else "ns"))
    # octetArray, lists, unknown elements, and values whose length does not fit their type
    return Plan(np.dtype((np.uint8, (length,))), _binary)


def _as(out: type) -> Convert:
    def convert(values: np.ndarray) -> pa.Array:
        return pa.array(values.astype(out))
    return convert


def _odd_unsigned(out: type) -> Convert:
    """Reduced-size encodings of odd width (3, 5, 6, 7 bytes), most significant byte first."""
    def convert(values: np.ndarray) -> pa.Array:
        acc = np.zeros(len(values), np.uint64)
        for i in range(values.shape[1]):
            acc = (acc << np.uint64(8)) | values[:, i].astype(np.uint64)
        return pa.array(acc.astype(out))
    return convert


def _boolean(values: np.ndarray) -> pa.Array:
    # RFC 7011 6.1.5: 1 is true, 2 is false; any other value is undefined, so null
    return pa.array(values == 1, mask=(values != 1) & (values != 2))


# Below this many rows a Python loop over the values beats Arrow kernels, whose calls cost
# tens of microseconds each whatever the size
_SMALL = 192


def _ipv4(values: np.ndarray) -> pa.Array:
    raw = np.ascontiguousarray(values)
    if len(raw) < _SMALL:
        b = raw.tobytes()
        ntoa = socket.inet_ntoa
        return pa.array([ntoa(b[i:i + 4]) for i in range(0, len(b), 4)], pa.string())
    text = _joined(_OCTET_TEXT, raw, ".")
    # the enrichers and the stored key column need the binary form: hand it over
    remember_ip_keys(text, *ipv4_keys(raw.view(np.uint8).reshape(-1, 4)))
    return text


def _mac(values: np.ndarray) -> pa.Array:
    raw = np.ascontiguousarray(values)
    if len(raw) < _SMALL:
        b = raw.tobytes()
        return pa.array([b[i:i + 6].hex(":") for i in range(0, len(b), 6)], pa.string())
    return _joined(_HEX_TEXT, raw, ":")


def _joined(texts: pa.Array, raw: np.ndarray, sep: str) -> pa.Array:
    """Each row's bytes as text (one take over all bytes), joined by ``sep``."""
    n, width = raw.shape
    parts = texts.take(pa.array(raw.reshape(-1)))
    rows = pa.ListArray.from_arrays(pa.array(np.arange(0, n * width + 1, width, np.int32)),
                                    parts)
    return pc.binary_join(rows, sep)


def _ipv6(values: np.ndarray) -> pa.Array:
    raw = np.ascontiguousarray(values)
    if len(raw) < _SMALL:
        b = raw.tobytes()
        return pa.array([ipv6_text(b[i:i + 16]) for i in range(0, len(b), 16)], pa.string())
    # few distinct addresses per batch: each is formatted once
    fixed = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(raw),
                                                 [None, pa.py_buffer(raw)])
    enc = pc.dictionary_encode(fixed)
    texts = pa.array([ipv6_text(b) for b in enc.dictionary.to_pylist()], pa.string())
    return texts.take(enc.indices)


_V4_MAPPED = b"\x00" * 10 + b"\xff\xff"


@lru_cache(maxsize=1 << 14)
def ipv6_text(b: bytes) -> str:
    """An IPv6 address as Elastic (Go's net.IP) prints it: IPv4-mapped ones as IPv4."""
    if b[:12] == _V4_MAPPED:
        return socket.inet_ntoa(b[12:])
    if b[:12] == bytes(12):
        # glibc would print ::a.b.c.d, Go prints hex groups
        return ipaddress.IPv6Address(b).compressed
    return socket.inet_ntop(socket.AF_INET6, b)


def _string(values: np.ndarray) -> pa.Array:
    # NumPy's S dtype drops trailing NULs, as Elastic's decoder does
    raw = pa.array(values, pa.binary())
    try:
        return raw.cast(pa.string())
    except pa.ArrowInvalid:  # not UTF-8: keep what can be read, mark the rest
        return pa.array([v.decode("utf-8", "replace") for v in values.tolist()], pa.string())


def _binary(values: np.ndarray) -> pa.Array:
    width = values.shape[1] if values.ndim == 2 else 0
    fixed = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(width), len(values), [None, pa.py_buffer(np.ascontiguousarray(values))])
    return fixed.cast(pa.binary())


def _timestamp(unit: str) -> Convert:
    def convert(values: np.ndarray) -> pa.Array:
        return pa.array(values.astype(np.int64), pa.timestamp(unit))
    return convert


def _ntp(unit: str) -> Convert:
    """RFC 7011 6.1.9/10: NTP format, 32-bit seconds since 1900 and a 32-bit fraction."""
    scale = 1_000_000 if unit == "us" else 1_000_000_000

    def convert(values: np.ndarray) -> pa.Array:
        secs = values[:, 0].astype(np.int64) - _NTP_EPOCH
        frac = (values[:, 1].astype(np.int64) * scale) >> 32
        return pa.array(secs * scale + frac, pa.timestamp(unit))
    return convert


def _var_convert(etype: str) -> VarConvert:
    if etype == "string":
        def strings(values: list[bytes]) -> pa.Array:
            return pa.array([v.rstrip(b"\x00").decode("utf-8", "replace") for v in values],
                            pa.string())
        return strings

    def octets(values: list[bytes]) -> pa.Array:
        return pa.array(values, pa.binary())
    return octets


# ---------------------------------------------------------------- decoding records

def decode_records(compiled: Compiled, bodies: list[bytes]
                   ) -> tuple[pa.Table, list[int], list[str]]:
    """Records of data sets of one template: the table, records per body, errors."""
    if compiled.dtype is not None:
        return _fixed(compiled, bodies)
    return _variable(compiled, bodies)


def _fixed(c: Compiled, bodies: list[bytes]) -> tuple[pa.Table, list[int], list[str]]:
    size = c.record_length
    if size == 0:
        return _empty(c), [0] * len(bodies), ["template has no field with a length"]
    # what is left after the last whole record is set padding (RFC 7011 3.3.1)
    counts = [len(b) // size for b in bodies]
    if len(bodies) == 1:
        buf = bodies[0]
    else:
        buf = b"".join(memoryview(b)[:n * size] for b, n in zip(bodies, counts, strict=True))
    assert c.dtype is not None and c.dtype.names is not None
    records = np.frombuffer(buf, c.dtype, count=sum(counts))
    cols = [plan.convert(records[name])
            for plan, name in zip(c.plans, c.dtype.names, strict=True) if plan is not None]
    return pa.Table.from_arrays(cols, names=list(c.names)), counts, []


def _variable(c: Compiled, bodies: list[bytes]) -> tuple[pa.Table, list[int], list[str]]:
    values: list[list[bytes]] = [[] for _ in c.names]
    counts: list[int] = []
    errors: list[str] = []
    for body in bodies:
        n, err = _split_records(c, body, values)
        counts.append(n)
        if err:
            errors.append(err)
    cols: list[pa.Array] = []
    for i, plan in enumerate(c.plans):
        if plan is None:
            convert = c.var_converts[i]
            assert convert is not None
            cols.append(convert(values[i]))
        else:
            joined = np.frombuffer(b"".join(values[i]), plan.dtype)
            cols.append(plan.convert(joined))
    return pa.Table.from_arrays(cols, names=list(c.names)), counts, errors


def _split_records(c: Compiled, body: bytes, values: list[list[bytes]]) -> tuple[int, str]:
    """Cut one data set into field values (RFC 7011 7.: 1-byte length, 255 then 2 bytes)."""
    end = len(body)
    pos = 0
    n = 0
    while end - pos >= c.record_length:
        row: list[bytes] = []
        for length, col in c.layout:
            if length == VARIABLE:
                if pos >= end:
                    return n, f"record {n} is cut off"
                length = body[pos]
                pos += 1
                if length == 255:
                    if end - pos < 2:
                        return n, f"record {n} is cut off"
                    length = int.from_bytes(body[pos:pos + 2], "big")
                    pos += 2
            if end - pos < length:
                return n, f"record {n} is cut off"
            if col >= 0:
                row.append(body[pos:pos + length])
            pos += length
        for i, v in enumerate(row):
            values[i].append(v)
        n += 1
    return n, ""


def _empty(c: Compiled) -> pa.Table:
    return pa.Table.from_arrays([pa.array([], pa.binary()) for _ in c.names], names=list(c.names))


# ---------------------------------------------------------------- collecting a batch

@dataclass(slots=True)
class _Group:
    template_id: int
    template: Template
    bodies: list[bytes] = field(default_factory=list)
    header_refs: list[int] = field(default_factory=list)  # index into Collector.headers
    datagrams: list[int] = field(default_factory=list)  # input datagram index (-1: older)


class Collector:
    """Gathers the sets of one or many datagrams, then decodes each template's data at once.

    The protocol parsers call ``begin`` per datagram, ``header``, then ``data_set``, ``learn``,
    ``withdraw`` and ``error`` as they meet sets; ``finish`` decodes and returns the result.
    Data sets are grouped by (template id, template) in arrival order: exporters that send the
    same template decode together, and a template redefined in the middle of a batch applies
    only to the data that followed it.
    """

    def __init__(self, state: TemplateState, now: float) -> None:
        self.state = state
        self.now = now
        self.out = Decoded()
        self.index = -1
        self._headers: list[Header] = []
        self._groups: dict[tuple[int, Template], _Group] = {}

    def begin(self, index: int) -> None:
        self.index = index
        while len(self.out.headers) <= index:
            self.out.headers.append(None)

    def header(self, header: Header) -> int:
        self.out.headers[self.index] = header
        self._headers.append(header)
        return len(self._headers) - 1

    def error(self, message: str) -> None:
        self.out.errors.append((self.index, message))

    def data_set(self, key: TemplateKey, body: bytes, header_ref: int) -> None:
        template = self.state.get(key)
        if template is None:
            self.out.held += 1
            self.out.held_in.add(self.index)
            self.out.dropped.extend(self.state.hold(key, body, self._headers[header_ref],
                                                    self.now))
            return
        self._add(key, template, body, header_ref, self.index)

    def learn(self, key: TemplateKey, template: Template) -> None:
        self.out.templates += 1
        for held in self.state.learn(key, template):
            self._headers.append(held.header)
            self._add(key, template, held.body, len(self._headers) - 1, -1)

    def withdraw(self, key: TemplateKey) -> None:
        self.out.withdrawn += int(self.state.withdraw(key))

    def withdraw_all(self, exporter: str, domain: int, options: bool) -> None:
        self.out.withdrawn += self.state.withdraw_all(exporter, domain, options)

    def _add(self, key: TemplateKey, template: Template, body: bytes, header_ref: int,
             datagram: int) -> None:
        group = self._groups.get((key.template_id, template))
        if group is None:
            group = self._groups[(key.template_id, template)] = _Group(key.template_id, template)
        group.bodies.append(body)
        group.header_refs.append(header_ref)
        group.datagrams.append(datagram)

    def finish(self) -> Decoded:
        for group in self._groups.values():
            self._decode(group)
        self._groups.clear()
        self.out.dropped.extend(self.state.expire(self.now))
        return self.out

    def _decode(self, group: _Group) -> None:
        try:
            table, counts, errors = decode_records(compile_template(group.template),
                                                   group.bodies)
        except (ValueError, TypeError, IndexError, pa.ArrowException) as e:
            # a template this decoder cannot apply must not cost the rest of the batch
            self.out.errors.append((group.datagrams[0], f"template {group.template_id}: "
                                                        f"{type(e).__name__}: {e}"))
            return
        for err in errors:
            self.out.errors.append((group.datagrams[0],
                                    f"data set of template {group.template_id}: {err}"))
        if table.num_rows == 0:
            return
        used = sorted({r for r, n in zip(group.header_refs, counts, strict=True) if n})
        local = {r: i for i, r in enumerate(used)}
        rows = np.repeat(np.array([local.get(r, 0) for r in group.header_refs], np.int32),
                         counts)
        batch = Batch(group.template_id, group.template, table, [self._headers[r] for r in used],
                      rows)
        (self.out.options if group.template.options else self.out.data).append(batch)


def parse_all(datagrams: Iterable[tuple[bytes, str]], state: TemplateState, now: float,
              parse: Callable[[bytes, str, Collector], None]) -> Decoded:
    """Run ``parse`` over many datagrams; one that cannot be decoded at all is an error."""
    c = Collector(state, now)
    for i, (data, exporter) in enumerate(datagrams):
        c.begin(i)
        try:
            parse(data, exporter, c)
        except DecodeError as e:
            c.error(str(e))
        except Exception as e:  # a decoder bug must not cost the rest of the batch
            c.error(f"internal decoder error: {type(e).__name__}: {e}")
    return c.finish()


SET_HEADER = struct.Struct(">HH")  # (flow)set id, length including this header


def iter_sets(data: bytes, pos: int, end: int, c: Collector, what: str
              ) -> Iterator[tuple[int, bytes]]:
    """(id, body) of the sets of a NetFlow v9 datagram or IPFIX message, whose layout is the
    same: a 16-bit id and a 16-bit length that includes the header. Stops at the first set
    whose length cannot be trusted (the next one could not be found), reporting it."""
    while pos < end:
        if end - pos < SET_HEADER.size or data[pos:pos + SET_HEADER.size] == b"\0\0\0\0":
            if not any(data[pos:end]):
                return  # zero fill after the last set (checked once: it ends the walk)
            if end - pos < SET_HEADER.size:
                c.error(f"{end - pos} bytes after the last {what}")
                return
        set_id, length = SET_HEADER.unpack_from(data, pos)
        if length < SET_HEADER.size:
            c.error(f"{what} {set_id} has length {length}")
            return
        if length > end - pos:
            c.error(f"{what} {set_id} of {length} bytes overruns the datagram")
            return
        yield set_id, data[pos + SET_HEADER.size:pos + length]
        pos += length
