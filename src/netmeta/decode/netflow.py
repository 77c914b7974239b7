"""NetFlow v5, NetFlow v9 (RFC 3954) and, by dispatch, IPFIX datagrams -> columns.

API (pure functions: bytes in, columns out; no sockets):

- ``decode(data, exporter, state, now) -> Decoded``: one UDP payload. Dispatches on the
  version (5, 9, 10), so a listener on 2055 calls one function. Raises ``DecodeError`` only
  when the datagram cannot be decoded at all (short header, unknown version); every other
  problem is in ``Decoded.errors``.
- ``decode_many(datagrams, state, now) -> Decoded``: a batch of (payload, exporter) pairs.
  Data sets of the same template are decoded together, one ``np.frombuffer`` call per
  template for the whole batch; a datagram that cannot be decoded at all is an error entry
  (its header is None), never an exception.

``exporter`` names the exporter as the caller wants templates scoped ("192.0.2.1:4444");
``state`` is a ``templates.TemplateState``; ``now`` the wall clock in seconds (held sets expire
by it). ``Decoded``, ``Batch`` and ``Header`` are described in ``templates.py``.

NetFlow v5 records are one fixed 48-byte layout, decoded like a template with the IANA names
Elastic gives them (template key (exporter, 0, 0)). NetFlow v9 flowsets: templates (0),
options templates (1, scope fields first), data (>= 256), padding; field types share the IANA
element registry (ids 1-127 are the same), scope field types are named ``scope_system``,
``scope_interface``, ... and a v9 field of length 0xFFFF is read as IPFIX reads one.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from functools import lru_cache

from netmeta.decode import ipfix
from netmeta.decode.templates import (
    SKIP,
    V9_SCOPE,
    Collector,
    Decoded,
    DecodeError,
    FieldSpec,
    Header,
    Template,
    TemplateKey,
    TemplateState,
    iter_sets,
    parse_all,
)

__all__ = ["DecodeError", "Decoded", "TemplateState", "decode", "decode_many", "parse"]

V5_HEADER = struct.Struct(">HHIIIIBBH")  # 24 bytes
V9_HEADER = struct.Struct(">HHIIII")  # version, count, uptime, secs, sequence, source id
V9_TEMPLATES = 0
V9_OPTIONS = 1
FIRST_DATA_FLOWSET = 256

# NetFlow v5 record (48 bytes) as IANA elements, in wire order; SKIP fields are padding
V5_TEMPLATE = Template(tuple(FieldSpec(*f) for f in (
    (0, 8, 4), (0, 12, 4), (0, 15, 4),  # source, destination, next hop address
    (0, 10, 2), (0, 14, 2),  # input, output interface
    (0, 2, 4), (0, 1, 4),  # packets, octets
    (0, 22, 4), (0, 21, 4),  # first, last (sysUptime ms)
    (0, 7, 2), (0, 11, 2),  # source, destination port
    (SKIP, 0, 1), (0, 6, 1), (0, 4, 1), (0, 5, 1),  # pad, TCP flags, protocol, ToS
    (0, 16, 2), (0, 17, 2),  # source, destination AS
    (0, 9, 1), (0, 13, 1), (SKIP, 0, 2),  # source, destination mask, pad
)))
V5_RECORD = 48


def decode(data: bytes, exporter: str, state: TemplateState, now: float) -> Decoded:
    """One datagram; raises ``DecodeError`` if it cannot be decoded at all."""
    c = Collector(state, now)
    c.begin(0)
    try:
        parse(data, exporter, c)
    except DecodeError:
        raise
    except Exception as e:  # a decoder bug must not take the listener down: a failure
        raise DecodeError(f"internal decoder error: {type(e).__name__}: {e}") from e
    return c.finish()


def decode_many(datagrams: Iterable[tuple[bytes, str]], state: TemplateState,
                now: float) -> Decoded:
    """Many datagrams; one that cannot be decoded at all becomes an error entry."""
    return parse_all(datagrams, state, now, parse)


def parse(data: bytes, exporter: str, c: Collector) -> None:
    if len(data) < 2:
        raise DecodeError(f"datagram of {len(data)} bytes has no version")
    (version,) = struct.unpack_from(">H", data)
    if version == 5:
        _v5(data, exporter, c)
    elif version == 9:
        _v9(data, exporter, c)
    elif version == ipfix.VERSION:
        ipfix.parse(data, exporter, c)
    else:
        raise DecodeError(f"unknown NetFlow version {version}")


# ---------------------------------------------------------------- v5

def _v5(data: bytes, exporter: str, c: Collector) -> None:
    if len(data) < V5_HEADER.size:
        raise DecodeError(f"NetFlow v5 datagram of {len(data)} bytes is shorter than its header")
    (_, count, uptime, secs, nsecs, sequence, engine_type, engine_id,
     sampling) = V5_HEADER.unpack_from(data)
    ref = c.header(Header(5, exporter, 0, secs, sequence, uptime, count, nsecs, engine_type,
                          engine_id, sampling))
    present = (len(data) - V5_HEADER.size) // V5_RECORD
    if present < count:
        c.error(f"NetFlow v5 header announces {count} records, {present} are present")
    elif present > count:
        c.error(f"NetFlow v5 header announces {count} records, the datagram holds {present}")
    n = min(count, present)
    if n:
        body = data[V5_HEADER.size:V5_HEADER.size + n * V5_RECORD]
        c.state.learn(TemplateKey(exporter, 0, 0), V5_TEMPLATE)
        c.data_set(TemplateKey(exporter, 0, 0), body, ref)


# ---------------------------------------------------------------- v9

def _v9(data: bytes, exporter: str, c: Collector) -> None:
    if len(data) < V9_HEADER.size:
        raise DecodeError(f"NetFlow v9 datagram of {len(data)} bytes is shorter than its header")
    _, count, uptime, secs, sequence, source_id = V9_HEADER.unpack_from(data)
    ref = c.header(Header(9, exporter, source_id, secs, sequence, uptime, count))
    for flowset_id, body in iter_sets(data, V9_HEADER.size, len(data), c, "flowset"):
        if flowset_id == V9_TEMPLATES:
            _v9_templates(body, exporter, source_id, c)
        elif flowset_id == V9_OPTIONS:
            _v9_options(body, exporter, source_id, c)
        elif flowset_id >= FIRST_DATA_FLOWSET:
            c.data_set(TemplateKey(exporter, source_id, flowset_id), body, ref)
        else:
            c.error(f"flowset id {flowset_id} is reserved")


def _v9_templates(body: bytes, exporter: str, source_id: int, c: Collector) -> None:
    for template_id, template, error in _v9_template_records(bytes(body)):
        if error:
            c.error(error)
        elif template is not None:
            c.learn(TemplateKey(exporter, source_id, template_id), template)


def _v9_options(body: bytes, exporter: str, source_id: int, c: Collector) -> None:
    for template_id, template, error in _v9_options_records(bytes(body)):
        if error:
            c.error(error)
        elif template is not None:
            c.learn(TemplateKey(exporter, source_id, template_id), template)


# Exporters resend the same template flowsets every few datagrams: each distinct flowset is
# parsed once. Results are (template id, template or None, error) per record.
Parsed = tuple[tuple[int, Template | None, str], ...]


@lru_cache(maxsize=1024)
def _v9_template_records(body: bytes) -> Parsed:
    out: list[tuple[int, Template | None, str]] = []
    pos = 0
    end = len(body)
    while end - pos >= 4:
        template_id, count = struct.unpack_from(">HH", body, pos)
        if template_id == 0 and not any(body[pos:]):
            break  # padding
        pos += 4
        if end - pos < 4 * count:
            out.append((template_id, None,
                        f"template {template_id} with {count} fields is cut off"))
            break
        fields = tuple(FieldSpec(0, fid, length)
                       for fid, length in struct.iter_unpack(">HH", body[pos:pos + 4 * count]))
        pos += 4 * count
        if template_id < FIRST_DATA_FLOWSET:
            out.append((template_id, None, f"template id {template_id} is reserved"))
        elif not fields:
            out.append((template_id, None, f"template {template_id} has no fields"))
        else:
            out.append((template_id, Template(fields), ""))
    return tuple(out)


@lru_cache(maxsize=1024)
def _v9_options_records(body: bytes) -> Parsed:
    out: list[tuple[int, Template | None, str]] = []
    pos = 0
    end = len(body)
    while end - pos >= 6:
        template_id, scope_len, option_len = struct.unpack_from(">HHH", body, pos)
        if template_id == 0 and not any(body[pos:]):
            break  # padding
        pos += 6
        if scope_len % 4 or option_len % 4:
            out.append((template_id, None,
                        f"options template {template_id}: scope length {scope_len} and option "
                        f"length {option_len} are not multiples of 4"))
            break
        if end - pos < scope_len + option_len:
            out.append((template_id, None, f"options template {template_id} is cut off"))
            break
        specs = list(struct.iter_unpack(">HH", body[pos:pos + scope_len + option_len]))
        pos += scope_len + option_len
        n_scope = scope_len // 4
        fields = tuple(FieldSpec(V9_SCOPE if i < n_scope else 0, fid, length)
                       for i, (fid, length) in enumerate(specs))
        if template_id < FIRST_DATA_FLOWSET:
            out.append((template_id, None, f"options template id {template_id} is reserved"))
        elif not fields:
            out.append((template_id, None, f"options template {template_id} has no fields"))
        else:
            out.append((template_id, Template(fields, n_scope, options=True), ""))
    return tuple(out)
