"""GoFlow2 JSON lines → ECS, exactly as Elastic's goflow2 integration (data stream sflow).

Elastic's pipeline (packages/goflow2 .../ingest_pipeline/default.yml) maps GoFlow2's sFlow
records; the same mapping is applied here to GoFlow2's NETFLOW_V5, NETFLOW_V9 and IPFIX
records, with sampling handled the same way (see docs/goflow2.md). Every step is a column
operation over a whole decoded chunk; lines that the fast JSON path rejected arrive as
``loose`` objects, are coerced to the same columns and take the same code.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from netmeta.columns import (
    Raw,
    arr,
    blank_to_null,
    constant_list,
    json_object,
    lines_to_strings,
    list_of,
)
from netmeta.decode.jsonlines import Decoded
from netmeta.event import (
    META_EXTRA,
    META_ID,
    META_INPUT,
    Failure,
    Origin,
    distinct_ip_keys,
)

ECS_VERSION = "8.16.0"

_TYPES = {"string": pa.string(), "int64": pa.int64(),
          "list<int64>": pa.list_(pa.int64()), "list<string>": pa.list_(pa.string())}


def _load_schema() -> pa.Schema:
    text = resources.files("netmeta.normalize").joinpath("goflow2_fields.yml").read_text()
    return pa.schema([(k, _TYPES[v]) for k, v in yaml.safe_load(text).items()])


SCHEMA = _load_schema()

# Elastic renames these only when non-empty; an empty string stays as goflow2.<name>.
_RENAMED_IF_SET = frozenset({"type", "sequence_num", "in_if", "out_if", "src_port", "dst_port",
                             "src_vlan", "dst_vlan", "sampling_rate"})
# ... and removes these whatever their value.
_REMOVED = frozenset({"time_flow_start_ns", "proto", "etype", "dst_addr", "src_addr",
                      "sampler_address", "bytes"})
_CONSUMED = _RENAMED_IF_SET | _REMOVED
# NetFlow/IPFIX records also carry real packet counts and an end time, which are mapped.
_CONSUMED_NETFLOW = _CONSUMED | {"packets", "time_flow_end_ns"}


@dataclass(slots=True)
class Normalized:
    events: list[pa.Table] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


def normalize(decoded: Decoded, data: bytes, origin: Origin) -> Normalized:
    out = Normalized()
    for off, line, msg in decoded.failures:
        out.failures.append(_failure(origin, off, line, msg))
    for seg in decoded.segments:
        original = lines_to_strings(data, seg.starts, seg.ends)
        _append(out, seg.records, original, seg.starts, origin, None)
    if decoded.loose:
        _normalize_loose(decoded.loose, origin, out)
    if len(out.events) > 1:  # bisected chunk: give the events back in file order
        merged = pa.concat_tables(out.events, promote_options="default")
        out.events = [merged.sort_by("log.offset")]
    return out


def _failure(origin: Origin, off: int, line: bytes, msg: str) -> Failure:
    return Failure(origin.input, f"goflow2: {msg}", line, origin.path, origin.offset + off)


# ---------------------------------------------------------------- the loose (per-line) path

def _coerce(name: str, t: pa.DataType, v: Any) -> Any:
    if pa.types.is_integer(t):
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            return int(v)
        raise ValueError(f"field {name!r} expects an integer, got {orjson.dumps(v).decode()}")
    if pa.types.is_string(t):
        if isinstance(v, str):
            return v
        if isinstance(v, int | float) and not isinstance(v, bool):
            return str(v)
        raise ValueError(f"field {name!r} expects a string, got {orjson.dumps(v).decode()}")
    if not isinstance(v, list):
        raise ValueError(f"field {name!r} expects a list, got {orjson.dumps(v).decode()}")
    return [_coerce(name, t.value_type, x) for x in v]


def _normalize_loose(loose: list[tuple[int, bytes, dict[str, Any]]], origin: Origin,
                     out: Normalized) -> None:
    rows, extras, lines, starts = [], [], [], []
    for off, line, obj in loose:
        row: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        try:
            for k, v in obj.items():
                f = SCHEMA.field(k) if k in SCHEMA.names else None
                if f is None:
                    extra[k] = v
                elif v is None:
                    continue
                elif v == "":
                    if k not in _REMOVED:
                        extra[k] = v
                else:
                    row[k] = _coerce(k, f.type, v)
        except (ValueError, OverflowError) as e:
            out.failures.append(_failure(origin, off, line, str(e)))
            continue
        rows.append(row)
        extras.append(orjson.dumps(extra).decode()[1:-1] if extra else None)
        lines.append(line.decode())
        starts.append(off)
    if rows:
        try:
            table = pa.Table.from_pylist(rows, schema=SCHEMA)
        except (pa.ArrowInvalid, OverflowError) as e:  # e.g. an integer beyond 64 bits
            for off, line in zip(starts, lines, strict=True):
                out.failures.append(_failure(origin, off, line.encode(), str(e)))
            return
        _append(out, table, pa.array(lines, pa.string()), np.array(starts, np.int64), origin,
                pa.array(extras, pa.string()))


# ---------------------------------------------------------------- the column mapping

def _ip_check(col: pa.Array | None, name: str, bad: np.ndarray, why: list[str | None]) -> None:
    """Mark rows whose address does not parse (Elastic's `convert type: ip` fails them)."""
    if col is None:
        return
    rows, _ = distinct_ip_keys(col)  # remembered for the enrichers of this batch
    rows_bad = np.asarray(col.is_valid()) & (rows < 0)
    for i in np.flatnonzero(rows_bad & ~bad):
        why[i] = f"{name} {col[int(i)].as_py()!r} is not an IP address"
    bad |= rows_bad


def _file_columns(origin: Origin, offsets: pa.Array, n: int) -> dict[str, pa.Array]:
    """Where each line came from, as Filebeat's filestream input records it."""
    cols = {"log.offset": offsets}
    if origin.path is None:
        cols["input.type"] = pa.repeat(pa.scalar("stdin"), n)
        return cols
    cols["input.type"] = pa.repeat(pa.scalar("filestream"), n)
    cols["log.file.path"] = pa.repeat(pa.scalar(origin.path), n)
    cols["log.file.device_id"] = pa.repeat(pa.scalar(str(origin.device)), n)
    cols["log.file.inode"] = pa.repeat(pa.scalar(str(origin.inode)), n)
    return cols


def _leftovers(rec: pa.Table, sf: Any, raw_extra: pa.Array | None) -> pa.Array:
    """JSON of the fields Elastic's pipeline leaves under goflow2.* (``sf`` keeps a value on
    sFlow rows only: NetFlow rows map packets and the end time)."""
    leftovers: dict[str, Any] = {}
    for name in rec.column_names:
        raw = arr(rec.column(name))
        if name == "type":  # an empty type is not renamed and stays (Elastic)
            leftovers[name] = pc.if_else(pc.equal(raw, ""), raw, pa.scalar(None, raw.type))
        elif name not in _CONSUMED_NETFLOW:
            leftovers[name] = raw
        elif name not in _CONSUMED:
            leftovers[name] = sf(raw)
    if raw_extra is not None:  # fields of loose lines that are not in the schema
        leftovers[""] = Raw(raw_extra)
    return json_object(leftovers, rec.num_rows)


def _append(out: Normalized, rec: pa.Table, original: pa.Array, starts: np.ndarray,
            origin: Origin, raw_extra: pa.Array | None) -> None:
    n = rec.num_rows
    if n == 0:
        return
    m = map_records(rec, original, raw_extra)
    cols = m.columns
    offsets = pc.add(pa.array(starts, pa.int64()), origin.offset)
    cols.update(_file_columns(origin, offsets, n))
    prefix = f"{origin.input}:{origin.device}:{origin.inode}:"
    cols[META_ID] = pc.binary_join_element_wise(prefix, pc.cast(offsets, pa.string()), "")
    cols[META_INPUT] = pa.repeat(pa.scalar(origin.input), n)
    table = pa.table(cols)
    if m.bad.any():
        lines = original.to_pylist()
        for i in np.flatnonzero(m.bad):
            out.failures.append(Failure(origin.input, f"goflow2: {m.why[i]}", lines[i],
                                        origin.path, origin.offset + int(starts[i])))
        table = table.filter(pa.array(~m.bad))
    out.events.append(table)


@dataclass(slots=True)
class Mapped:
    columns: dict[str, pa.Array]  # ECS columns and META_EXTRA; no _id, _input or log.*
    bad: np.ndarray  # rows whose addresses do not parse (failures in Elastic)
    why: list[str | None]


def map_records(rec: pa.Table, original: pa.Array | None, raw_extra: pa.Array | None = None,
                more: dict[str, Any] | None = None) -> Mapped:
    """Elastic's goflow2 pipeline over a table of GoFlow2 records (columns named and typed
    as SCHEMA). ``original``: event.original per row (None: not set); ``raw_extra``: JSON
    members of fields outside the schema; ``more``: extra members merged into the
    event's JSON (``{"sflow": {...}}`` adds to sflow.*)."""
    n = rec.num_rows

    def get(name: str) -> pa.Array | None:
        return blank_to_null(arr(rec.column(name))) if name in rec.column_names else None

    def num(name: str) -> pa.Array:
        c = get(name)
        return c if c is not None else pa.nulls(n, pa.int64())

    def text(name: str) -> pa.Array | None:
        c = get(name)
        return None if c is None else pc.cast(c, pa.string())

    kind = get("type")
    is_nf = (pc.fill_null(pc.match_substring_regex(kind, r"^(NETFLOW|IPFIX)"), False)
             if kind is not None else pa.repeat(pa.scalar(False), n))
    is_sf = pc.invert(is_nf)

    src, dst, sampler = get("src_addr"), get("dst_addr"), get("sampler_address")
    bad = np.zeros(n, bool)
    why: list[str | None] = [None] * n
    _ip_check(src, "src_addr", bad, why)
    _ip_check(dst, "dst_addr", bad, why)
    _ip_check(sampler, "sampler_address", bad, why)

    start_ns = pc.coalesce(num("time_flow_start_ns"), num("time_received_ns"))
    now_ms = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    ts_ms = pc.fill_null(pc.divide(start_ns, 1_000_000), now_ms)  # integer division → ms
    ts = pc.cast(pc.multiply(ts_ms, 1000), pa.int64()).cast(pa.timestamp("us"))

    rate, nbytes, npackets = num("sampling_rate"), num("bytes"), num("packets")
    factor = pc.if_else(pc.greater(pc.fill_null(rate, 0), 0), rate, 1)
    end_ns = num("time_flow_end_ns")

    any_nf = pc.any(is_nf).as_py()
    all_nf = any_nf and pc.all(is_nf).as_py()

    def nf(a: pa.Array) -> pa.Array:  # the value on NetFlow/IPFIX rows only
        if not any_nf:
            return pa.nulls(len(a), a.type)
        return a if all_nf else pc.if_else(is_nf, a, pa.scalar(None, a.type))

    def sf(a: pa.Array) -> pa.Array:  # the value on sFlow rows only
        if not any_nf:
            return a
        return pa.nulls(len(a), a.type) if all_nf else pc.if_else(is_sf, a, pa.scalar(None, a.type))

    cols: dict[str, pa.Array] = {
        "@timestamp": ts,
        "ecs.version": pa.repeat(pa.scalar(ECS_VERSION), n),
        "event.kind": pa.repeat(pa.scalar("event"), n),
        "event.category": constant_list("network", n),
        "event.type": constant_list("connection", n),
    }
    if original is not None:
        cols["event.original"] = original
    if kind is not None:
        cols["event.action"] = kind
    if any_nf:
        start_us = pc.divide(num("time_flow_start_ns"), 1000)
        end_us = pc.divide(end_ns, 1000)
        cols["event.start"] = nf(pc.cast(start_us, pa.int64()).cast(pa.timestamp("us")))
        cols["event.end"] = nf(pc.cast(end_us, pa.int64()).cast(pa.timestamp("us")))
        cols["event.duration"] = nf(pc.subtract(end_ns, num("time_flow_start_ns")))
    if sampler is not None:
        cols["observer.ip"] = list_of(sampler)
    for name, target in (("in_if", "observer.ingress.interface.id"),
                         ("out_if", "observer.egress.interface.id"),
                         ("src_vlan", "observer.ingress.vlan.id"),
                         ("dst_vlan", "observer.egress.vlan.id")):
        c = text(name)
        if c is not None:
            cols[target] = c
    if src is not None:
        cols["source.ip"] = src
    if dst is not None:
        cols["destination.ip"] = dst
    for name, target in (("src_port", "source.port"), ("dst_port", "destination.port")):
        c = get(name)
        if c is not None:
            cols[target] = c
    for name, target in (("etype", "network.type"), ("proto", "network.transport")):
        c = text(name)
        if c is not None:
            cols[target] = pc.utf8_lower(c)
    # sFlow (Elastic): a sample stands for sampling_rate packets of its size;
    # NetFlow/IPFIX: counters scaled by the sampling rate when there is one
    cols["network.bytes"] = pc.coalesce(nf(pc.multiply(nbytes, factor)),
                                        sf(pc.multiply(nbytes, rate)))
    cols["network.packets"] = pc.coalesce(nf(pc.multiply(npackets, factor)), sf(rate))
    if src is not None or dst is not None:
        cols["related.ip"] = list_of(*[c for c in (src, dst) if c is not None])

    more = dict(more or {})
    cols[META_EXTRA] = json_object({
        "sflow": {"bytes": sf(nbytes), "sample_rate": sf(rate),
                  "sequence_num": sf(num("sequence_num")), **more.pop("sflow", {})},
        "netflow": {"octet_delta_count": nf(nbytes), "packet_delta_count": nf(npackets),
                    "sampling_interval": nf(rate), "flow_sequence": nf(num("sequence_num"))},
        "source": {"address": list_of(src)} if src is not None else {},
        "destination": {"address": list_of(dst)} if dst is not None else {},
        "goflow2": Raw(_leftovers(rec, sf, raw_extra)),
        **more,
    }, n)
    return Mapped(cols, bad, why)
