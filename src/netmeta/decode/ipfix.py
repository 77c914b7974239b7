"""IPFIX (RFC 7011) messages -> columns.

``parse(data, exporter, collector)`` reads one message into a ``templates.Collector``:
template sets (2) and options template sets (3) update the template state (a record with
field count 0 withdraws a template, or all of them when its id is the set id, RFC 7011 8.1),
data sets (>= 256) are queued for decoding by template, or held until their template arrives.
Field specifiers with the enterprise bit carry a PEN; fields of length 0xFFFF are variable
(1-byte length, or 255 and a 2-byte length). Several sets per message, padding after records.

Use ``netflow.decode`` / ``netflow.decode_many``: they dispatch on the version, so one listener
takes NetFlow v5, v9 and IPFIX alike.
"""

from __future__ import annotations

import struct
from functools import lru_cache

from netmeta.decode.templates import (
    Collector,
    DecodeError,
    FieldSpec,
    Header,
    Template,
    TemplateKey,
    iter_sets,
)

VERSION = 10
HEADER = struct.Struct(">HHIII")  # version, length, export time, sequence, domain
TEMPLATE_SET = 2
OPTIONS_SET = 3
FIRST_DATA_SET = 256
ENTERPRISE_BIT = 0x8000


def parse(data: bytes, exporter: str, c: Collector) -> None:
    if len(data) < HEADER.size:
        raise DecodeError(f"IPFIX message of {len(data)} bytes is shorter than its header")
    version, length, export_time, sequence, domain = HEADER.unpack_from(data)
    if version != VERSION:
        raise DecodeError(f"not IPFIX: version {version}")
    if length < HEADER.size:
        raise DecodeError(f"IPFIX message length {length} is shorter than its header")
    end = length
    if length > len(data):
        c.error(f"IPFIX message length {length} exceeds the {len(data)} bytes received")
        end = len(data)
    ref = c.header(Header(VERSION, exporter, domain, export_time, sequence))
    for set_id, body in iter_sets(data, HEADER.size, end, c, "set"):
        if set_id in (TEMPLATE_SET, OPTIONS_SET):
            _template_set(body, exporter, domain, set_id == OPTIONS_SET, c)
        elif set_id >= FIRST_DATA_SET:
            c.data_set(TemplateKey(exporter, domain, set_id), body, ref)
        else:
            c.error(f"set id {set_id} is reserved")


def _template_set(body: bytes, exporter: str, domain: int, options: bool, c: Collector) -> None:
    for template_id, template, error in _template_records(bytes(body), options):
        if error:
            c.error(error)
        elif template is None:
            _withdraw(template_id, exporter, domain, options, c)
        else:
            c.learn(TemplateKey(exporter, domain, template_id), template)


@lru_cache(maxsize=1024)
def _template_records(body: bytes, options: bool
                      ) -> tuple[tuple[int, Template | None, str], ...]:
    """(template id, template or None for a withdrawal, error) per record of a set.

    Exporters resend the same template sets every few datagrams; parsing each distinct set
    once keeps that off the per-datagram cost.
    """
    out: list[tuple[int, Template | None, str]] = []
    pos = 0
    end = len(body)
    while end - pos >= 4:
        template_id, count = struct.unpack_from(">HH", body, pos)
        if template_id == 0 and not any(body[pos:]):
            break  # padding
        pos += 4
        if count == 0:
            out.append((template_id, None, ""))
            continue
        scope = 0
        if options:
            if end - pos < 2:
                out.append((template_id, None, f"options template {template_id} is cut off"))
                break
            (scope,) = struct.unpack_from(">H", body, pos)
            pos += 2
        fields, pos = _field_specs(body, pos, count)
        if fields is None:
            out.append((template_id, None,
                        f"template {template_id} with {count} fields is cut off"))
            break
        if template_id < FIRST_DATA_SET:
            out.append((template_id, None, f"template id {template_id} is reserved"))
        elif options and not 0 < scope <= count:
            out.append((template_id, None, f"options template {template_id}: scope field "
                                           f"count {scope} of {count}"))
        else:
            out.append((template_id, Template(fields, scope, options), ""))
    return tuple(out)


def _field_specs(body: bytes, pos: int, count: int) -> tuple[tuple[FieldSpec, ...] | None, int]:
    end = len(body)
    if end - pos < 4 * count:  # each specifier takes 4 bytes at least
        return None, pos
    fields: list[FieldSpec] = []
    for _ in range(count):
        if end - pos < 4:
            return None, pos
        fid, length = struct.unpack_from(">HH", body, pos)
        pos += 4
        pen = 0
        if fid & ENTERPRISE_BIT:
            if end - pos < 4:
                return None, pos
            (pen,) = struct.unpack_from(">I", body, pos)
            pos += 4
            fid &= ~ENTERPRISE_BIT
        fields.append(FieldSpec(pen, fid, length))
    return tuple(fields), pos


def _withdraw(template_id: int, exporter: str, domain: int, options: bool,
              c: Collector) -> None:
    if template_id == (OPTIONS_SET if options else TEMPLATE_SET):
        c.withdraw_all(exporter, domain, options)
    elif template_id >= FIRST_DATA_SET:
        c.withdraw(TemplateKey(exporter, domain, template_id))
    else:
        c.error(f"withdrawal of reserved template id {template_id}")
