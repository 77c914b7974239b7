"""Decoded NetFlow v5 / v9 / IPFIX records → ECS, as Elastic's netflow input and integration.

The Filebeat netflow input (x-pack/filebeat/input/netflow, convert.go) turns each record into
an ECS document; the integration's ingest pipeline (packages/netflow .../default.yml) then
sets ecs.version, makes observer.ip an array, network.iana_number a string, derives
network.type from the netflow.* address fields and network.direction from the two
localities. Both steps are reproduced here as column operations over a whole ``Batch``.

Left to the enrichers: network.community_id (enrich.community_id), GeoIP / AS (enrich.geoip).
source/destination.locality, flow.locality and network.direction are set here when a
``Locality`` is given (the input computes them itself, with the same internal networks).
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netmeta.columns import Raw, arr, constant_list, json_object, list_of
from netmeta.decode.templates import Batch, Decoded
from netmeta.enrich.community_id import protocol_numbers
from netmeta.enrich.locality import Locality, directions
from netmeta.event import (
    META_EXTRA,
    META_ID,
    META_INPUT,
    Failure,
    distinct_ip_keys,
    remember_ip_keys,
)
from netmeta.normalize.exporters import Exporters

ECS_VERSION = "8.11.0"  # set by the integration's pipeline
# Elastic's input names only these protocols (convert.go IPProtocol); others are "unknown (N)"
_NAMED_PROTOCOLS = ("icmp", "tcp", "udp", "ipv6-icmp")
# flowDirection (IE 61) values, RFC 5102
_FLOW_DIRECTIONS = ("inbound", "outbound")
# Counters in the order Elastic tries them (getKeyUint64Alternatives)
_BYTES = ("octet_delta_count", "octet_total_count", "initiator_octets")
_PACKETS = ("packet_delta_count", "packet_total_count", "initiator_packets")
_REV_BYTES = ("reverse_octet_delta_count", "reverse_octet_total_count", "responder_octets")
_REV_PACKETS = ("reverse_packet_delta_count", "reverse_packet_total_count", "responder_packets")
_SIDE_FIELDS = ("ip", "port", "mac", "bytes", "packets", "locality")
BIFLOW_REVERSE_INITIATOR = 2  # biflowDirection (IE 239): source and destination swapped


@lru_cache(maxsize=1)
def _protocol_names() -> pa.Array:
    """Index = IANA number: the name Elastic's input gives it."""
    numbers = protocol_numbers()
    names = [f"unknown ({i})" for i in range(256)]
    for name in _NAMED_PROTOCOLS:
        names[numbers[name]] = name
    return pa.array(names, pa.string())


# ---------------------------------------------------------------- flow.id (xxHash64)

_P1, _P2, _P3, _P4, _P5 = (np.uint64(p) for p in (
    11400714785074694791, 14029467366897019727, 1609587929392839161,
    9650029242287828579, 2870177450012600261))


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def _round(acc: np.ndarray, lane: np.ndarray) -> np.ndarray:
    return _rotl(acc + lane * _P2, 31) * _P1


def xxh64_rows(buf: np.ndarray) -> np.ndarray:
    """XXH64 (seed 0) of each row of a (N, L) uint8 matrix, vectorized over rows."""
    n, length = buf.shape
    buf = np.ascontiguousarray(buf)

    def lanes(pos: int, width: int, dtype: str) -> np.ndarray:
        return np.ascontiguousarray(buf[:, pos:pos + width]).view(dtype)[:, 0].astype(np.uint64)

    with np.errstate(over="ignore"):
        pos = 0
        if length >= 32:
            v = [np.full(n, s, np.uint64) for s in (_P1 + _P2, _P2, np.uint64(0), -_P1)]
            while pos + 32 <= length:
                v = [_round(v[i], lanes(pos + 8 * i, 8, "<u8")) for i in range(4)]
                pos += 32
            h = _rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)
            for vi in v:
                h = (h ^ _round(np.zeros(n, np.uint64), vi)) * _P1 + _P4
        else:
            h = np.full(n, _P5, np.uint64)
        h = h + np.uint64(length)
        while pos + 8 <= length:
            h = _rotl(h ^ _round(np.zeros(n, np.uint64), lanes(pos, 8, "<u8")), 27) * _P1 + _P4
            pos += 8
        if pos + 4 <= length:
            h = _rotl(h ^ (lanes(pos, 4, "<u4") * _P1), 23) * _P2 + _P3
            pos += 4
        while pos < length:
            h = _rotl(h ^ (buf[:, pos].astype(np.uint64) * _P5), 11) * _P1
            pos += 1
        h ^= h >> np.uint64(33)
        h *= _P2
        h ^= h >> np.uint64(29)
        h *= _P3
        h ^= h >> np.uint64(32)
    return h


def _ip_bytes(col: pa.Array, v4: np.ndarray) -> list[np.ndarray]:
    """Per row the address as Go's net.IP holds it: 4 bytes for IPv4 fields, else 16;
    a missing address is 0.0.0.0 (Elastic)."""
    rows, keys = distinct_ip_keys(col)
    keys = np.vstack([keys, np.zeros((1, 16), np.uint8)])
    full = keys[rows]  # -1 picks the appended zero row
    short = v4 | (rows < 0)
    return [full[:, 12:], full, short]


def flow_ids(src: pa.Array, dst: pa.Array, src_v4: np.ndarray, dst_v4: np.ndarray,
             sport: np.ndarray, dport: np.ndarray, proto: np.ndarray) -> pa.Array:
    """Elastic's flow.id: base64url(xxh64(ip, port, ip, port, proto)), higher port first so
    both directions of a flow share the id."""
    s4, s16, s_short = _ip_bytes(src, src_v4)
    d4, d16, d_short = _ip_bytes(dst, dst_v4)
    n = len(sport)
    flip = sport < dport
    out = np.empty(n, np.uint64)
    for ss in (True, False):
        for ds in (True, False):
            rows = np.flatnonzero((s_short == ss) & (d_short == ds))
            if not len(rows):
                continue
            a = (s4 if ss else s16)[rows]
            b = (d4 if ds else d16)[rows]
            sp = sport[rows].astype(">u2").view(np.uint8).reshape(-1, 2)
            dp = dport[rows].astype(">u2").view(np.uint8).reshape(-1, 2)
            p = proto[rows].astype(np.uint8).reshape(-1, 1)
            f = flip[rows]
            if (~f).any():
                out[rows[~f]] = xxh64_rows(np.hstack([a, sp, b, dp, p])[~f])
            if f.any():
                out[rows[f]] = xxh64_rows(np.hstack([b, dp, a, sp, p])[f])
    return _base64url_u64(out)


_B64URL = np.frombuffer(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
                        np.uint8)


def _base64url_u64(values: np.ndarray) -> pa.Array:
    """Unpadded base64url of each 64-bit value's 8 big-endian bytes: 11 characters, the
    first 10 six bits each and the last the remaining 4 bits shifted left by 2."""
    n = len(values)
    v = values.astype(np.uint64)
    chars = np.empty((n, 11), np.uint8)
    for i in range(10):
        chars[:, i] = _B64URL[(v >> np.uint64(58 - 6 * i)) & np.uint64(63)]
    chars[:, 10] = _B64URL[(v & np.uint64(15)) << np.uint64(2)]
    offsets = np.arange(0, 11 * (n + 1), 11, dtype=np.int32)
    return pa.Array.from_buffers(pa.string(), n, [None, pa.py_buffer(offsets),
                                                  pa.py_buffer(chars.tobytes())])


# ---------------------------------------------------------------- value rendering

def _b64(a: pa.Array) -> pa.Array:
    """octetArray values as Go's encoding/json shows []byte: standard base64."""
    enc = pc.dictionary_encode(a)
    uniq = pa.array([base64.b64encode(v).decode() for v in enc.dictionary.to_pylist()],
                    pa.string())
    return uniq.take(enc.indices)


def _date_text(a: pa.Array) -> pa.Array:
    """RFC 3339 UTC; milliseconds always, microseconds for finer elements (sub-microsecond
    digits of nanosecond elements are cut)."""
    unit = "ms" if a.type.unit in ("s", "ms") else "us"
    t = pc.cast(a, pa.timestamp(unit), safe=False)
    return pc.binary_join_element_wise(pc.strftime(t, "%Y-%m-%dT%H:%M:%S"), "Z", "")


def rendered(a: pa.Array) -> pa.Array:
    """A decoded column as the JSON value Elastic writes (numbers stay numbers)."""
    t = a.type
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return _b64(a)
    if pa.types.is_timestamp(t):
        return _date_text(a)
    return a


def _members(table: pa.Table, names: tuple[str, ...] | list[str]) -> dict[str, pa.Array]:
    return {k: rendered(arr(table.column(k))) for k in names}


# ---------------------------------------------------------------- per batch

class _Cols:
    """Access to a batch's columns by element name; absent ones are None."""

    def __init__(self, records: pa.Table) -> None:
        self.t = records
        self.n = records.num_rows

    def get(self, name: str) -> pa.Array | None:
        return arr(self.t.column(name)) if name in self.t.column_names else None

    def first(self, names: tuple[str, ...]) -> pa.Array | None:
        found = [pc.cast(c, pa.int64()) for c in map(self.get, names) if c is not None]
        if not found:
            return None
        return found[0] if len(found) == 1 else pc.coalesce(*found)

    def ints(self, name: str) -> pa.Array:
        c = self.get(name)
        return pa.nulls(self.n, pa.int64()) if c is None else pc.cast(c, pa.int64())


def _header_columns(b: Batch, input_name: str) -> dict[str, pa.Array]:
    """Columns that come from the datagram headers: computed once per header (a batch has
    a few hundred at most), then spread over the rows."""
    n = b.records.num_rows
    heads = b.headers
    rows = pa.array(b.rows)
    exporter_h = pa.array([h.exporter for h in heads], pa.string())
    secs = np.array([h.export_time for h in heads], np.int64)
    nanos = np.array([h.export_nanos for h in heads], np.int64)
    ts_h = pa.array(secs * 1_000_000 + nanos // 1000, pa.timestamp("us"))
    uptime = pa.array([h.sys_uptime for h in heads], pa.int64()).take(rows)
    # "ip:port" or "[v6]:port" → the address (convert.go extractIPFromIPPort)
    ip_h = pc.replace_substring_regex(exporter_h, r"^\[?(.*?)\]?(:\d+)?$", r"\1")
    domain_h = pa.array([h.domain for h in heads], pa.int64())
    # input:exporter:domain:export time:sequence:template:row, unique per record of a
    # datagram (a datagram's sets of other templates are other batches, numbered from 0 too)
    prefix_h = pa.array([f"{input_name}:{h.exporter}:{h.domain}:{h.export_time}:{h.sequence}:"
                         f"{b.template_id}:" for h in heads], pa.string())
    ids = pc.binary_join_element_wise(prefix_h.take(rows),
                                      pc.cast(pa.array(np.arange(n)), pa.string()), "")
    exporter_json = json_object({
        "address": exporter_h,
        "source_id": domain_h,
        "timestamp": _date_text(pc.cast(ts_h, pa.timestamp("ms"), safe=False)),
        "uptime_millis": pc.fill_null(pa.array([h.sys_uptime for h in heads], pa.int64()),
                                      0),  # IPFIX has none: Elastic shows 0
        "version": pa.array([h.version for h in heads], pa.int64()),
    }, len(heads))
    return {
        "@timestamp": ts_h.take(rows),
        "observer.ip": list_of(ip_h).take(rows),
        "_exporter": exporter_json.take(rows),
        "_uptime": uptime,
        META_ID: ids,
        META_INPUT: pa.repeat(pa.scalar(input_name), n),
    }


def _times(c: _Cols, ts: pa.Array, uptime: pa.Array) -> dict[str, pa.Array]:
    """event.start/end/duration (convert.go): from sysUpTime offsets when the exporter sends
    its uptime, else flowDurationMilliseconds fills the missing one."""
    has_sys = pc.fill_null(pc.greater(uptime, 0), False)
    ts_ms = pc.cast(pc.cast(ts, pa.int64()), pa.int64())  # microseconds

    def at(name: str) -> pa.Array:
        up = c.ints(name)
        ok = pc.and_(has_sys, pc.fill_null(pc.less_equal(up, uptime), False))
        us = pc.add(ts_ms, pc.multiply(pc.subtract(up, uptime), 1000))
        return pc.if_else(ok, us, pa.scalar(None, pa.int64()))

    start, end = at("flow_start_sys_up_time"), at("flow_end_sys_up_time")
    duration = pc.multiply(pc.subtract(end, start), 1000)
    dur_ms = c.ints("flow_duration_milliseconds")
    fallback = pc.is_null(duration)
    dur_us = pc.multiply(dur_ms, 1000)
    new_end = pc.if_else(pc.and_(fallback, pc.is_valid(start)), pc.add(start, dur_us), end)
    new_start = pc.if_else(pc.and_(fallback, pc.and_(pc.is_null(start), pc.is_valid(end))),
                           pc.subtract(end, dur_us), start)
    duration = pc.coalesce(duration, pc.multiply(dur_ms, 1_000_000))
    return {"event.start": pc.cast(new_start, pa.timestamp("us")),
            "event.end": pc.cast(new_end, pa.timestamp("us")),
            "event.duration": duration}


def _side(c: _Cols, side: str) -> tuple[dict[str, pa.Array], np.ndarray]:
    v4, v6 = c.get(f"{side}_ipv4_address"), c.get(f"{side}_ipv6_address")
    ips = [x for x in (v4, v6) if x is not None]
    cols: dict[str, pa.Array] = {}
    is_v4 = np.asarray(v4.is_valid()) if v4 is not None else np.zeros(c.n, bool)
    if ips:
        cols["ip"] = ips[0] if len(ips) == 1 else pc.coalesce(*ips)
    for name, target in ((f"{side}_transport_port", "port"), (f"{side}_mac_address", "mac")):
        col = c.get(name)
        if col is not None:
            cols[target] = pc.cast(col, pa.int64()) if target == "port" else col
    return cols, is_v4


def _related(src: pa.Array | None, dst: pa.Array | None, n: int) -> pa.Array | None:
    """related.ip: the two addresses, sorted by their bytes, without repeats (Elastic)."""
    if src is None or dst is None:
        one = src if src is not None else dst
        return None if one is None else list_of(one)
    srow, skeys = distinct_ip_keys(src)
    drow, dkeys = distinct_ip_keys(dst)
    sk = np.vstack([skeys, np.zeros((1, 16), np.uint8)])[srow]
    dk = np.vstack([dkeys, np.zeros((1, 16), np.uint8)])[drow]
    diff = sk.astype(np.int16) - dk.astype(np.int16)
    first = np.argmax(diff != 0, axis=1)
    sign = diff[np.arange(n), first]
    swap = pa.array(sign > 0)
    lo, hi = pc.if_else(swap, dst, src), pc.if_else(swap, src, dst)
    hi = pc.if_else(pa.array(sign == 0), pa.scalar(None, pa.string()), hi)
    out = list_of(lo, hi)
    # the stored key column of related.ip needs these keys: hand over what is known
    flip = (sign > 0)[:, None]
    keys = np.stack([np.where(flip, dk, sk), np.where(flip, sk, dk)], axis=1)
    ok = np.stack([np.where(sign > 0, drow, srow) >= 0, np.where(sign > 0, srow, drow) >= 0],
                  axis=1)
    present = np.stack([np.asarray(lo.is_valid()), np.asarray(hi.is_valid())], axis=1)
    flat_ok = ok[present]
    remember_ip_keys(out.flatten(), np.where(flat_ok, np.arange(len(flat_ok)), -1),
                     keys[present])
    return out


def _flow_columns(b: Batch, head: dict[str, pa.Array], locality: Locality | None
                  ) -> dict[str, pa.Array]:
    c = _Cols(b.records)
    n = c.n
    out: dict[str, pa.Array] = {"@timestamp": head["@timestamp"]}
    out.update(_times(c, head["@timestamp"], head["_uptime"]))
    src, src_v4 = _side(c, "source")
    dst, dst_v4 = _side(c, "destination")
    proto = c.get("protocol_identifier")
    nbytes, npackets = c.first(_BYTES), c.first(_PACKETS)
    rbytes, rpackets = c.first(_REV_BYTES), c.first(_REV_PACKETS)
    if nbytes is not None:
        src["bytes"] = nbytes
        out["network.bytes"] = nbytes if rbytes is None else pc.add(nbytes,
                                                                    pc.fill_null(rbytes, 0))
    if npackets is not None:
        src["packets"] = npackets
        out["network.packets"] = npackets if rpackets is None else pc.add(
            npackets, pc.fill_null(rpackets, 0))
    if rbytes is not None:
        dst["bytes"] = rbytes
    if rpackets is not None:
        dst["packets"] = rpackets
    if locality is not None:
        _localities(locality, src, dst, out, n)
    # flow.id and community id see the addresses before any biflow swap
    zeros = np.zeros(n, np.int64)
    sport = pc.fill_null(src["port"], 0).to_numpy() if "port" in src else zeros
    dport = pc.fill_null(dst["port"], 0).to_numpy() if "port" in dst else zeros
    nulls = pa.nulls(n, pa.string())
    out["flow.id"] = flow_ids(src.get("ip", nulls), dst.get("ip", nulls), src_v4, dst_v4,
                              sport, dport,
                              zeros if proto is None else pc.fill_null(proto, 0).to_numpy())
    if proto is not None:
        p = pc.cast(proto, pa.int64())
        out["network.transport"] = _protocol_names().take(p)
        out["network.iana_number"] = pc.cast(p, pa.string())  # the pipeline's convert
    session = _biflow(c, src, dst)
    for side, cols in (("source", src), ("destination", dst)):
        for k, v in cols.items():
            out[f"{side}.{k}"] = v
    _direction(c, out, n)
    related = _related(src.get("ip"), dst.get("ip"), n)
    if related is not None:
        out["related.ip"] = related
    out["_session"] = session
    return out


def _localities(locality: Locality, src: dict[str, pa.Array], dst: dict[str, pa.Array],
                out: dict[str, pa.Array], n: int) -> None:
    """source/destination.locality; flow.locality is internal only when every present
    address is (a missing one counts as 0.0.0.0, which is always internal)."""
    internal = np.ones(n, bool)
    for cols in (src, dst):
        if "ip" in cols:
            loc = locality.localities(cols["ip"])
            cols["locality"] = loc
            internal &= np.asarray(pc.fill_null(pc.not_equal(loc, "external"), True))
    out["_flow_locality"] = pc.if_else(pa.array(internal), "internal", "external")


def _biflow(c: _Cols, src: dict[str, pa.Array], dst: dict[str, pa.Array]) -> pa.Array | None:
    """biflowDirection: swap source and destination for reverseInitiator; such records are
    sessions with client/server copies (convert.go). Returns the session mask."""
    bi = c.get("biflow_direction")
    if bi is None or not src or not dst:
        return None
    swap = pc.fill_null(pc.equal(pc.cast(bi, pa.int64()), BIFLOW_REVERSE_INITIATOR), False)
    for k in _SIDE_FIELDS:
        s, d = src.get(k), dst.get(k)
        if s is None and d is None:
            continue
        s = s if s is not None else pa.nulls(c.n, d.type)
        d = d if d is not None else pa.nulls(c.n, s.type)
        src[k], dst[k] = pc.if_else(swap, d, s), pc.if_else(swap, s, d)
    return pc.is_valid(bi)


def _direction(c: _Cols, out: dict[str, pa.Array], n: int) -> None:
    """The input's flowDirection value, overridden by the pipeline's locality rule."""
    fd = c.get("flow_direction")
    if fd is None:
        given = pa.repeat(pa.scalar("unknown"), n)
    else:
        fd = pc.cast(fd, pa.int64())
        names = pc.binary_join_element_wise("unknown (", pc.cast(fd, pa.string()), ")", "")
        known = pa.array(_FLOW_DIRECTIONS).take(
            pc.if_else(pc.less(fd, len(_FLOW_DIRECTIONS)), fd, pa.scalar(None, pa.int64())))
        given = pc.fill_null(pc.coalesce(known, names), "unknown")
    if "source.locality" in out and "destination.locality" in out:
        derived = directions(out["source.locality"], out["destination.locality"])
        given = pc.if_else(pc.equal(derived, "unknown"), given, derived)
    out["network.direction"] = given


def _network_type(c: _Cols, n: int) -> tuple[pa.Array, pa.Array]:
    """network.type (pipeline): ipv4, ipv6, or [ipv4, ipv6] when both families are present;
    the list case goes to _extra (the column holds one keyword)."""
    def present(*names: str) -> np.ndarray:
        m = np.zeros(n, bool)
        for name in names:
            col = c.get(name)
            if col is not None:
                m |= np.asarray(col.is_valid())
        return m

    v4 = present("source_ipv4_address", "destination_ipv4_address")
    v6 = present("source_ipv6_address", "destination_ipv6_address")
    single = np.select([v4 & ~v6, v6 & ~v4], [0, 1], -1)
    col = pa.array(["ipv4", "ipv6"]).take(pa.array(single, mask=single < 0))
    both = pc.if_else(pa.array(v4 & v6), pa.scalar('["ipv4","ipv6"]'),
                      pa.scalar(None, pa.string()))
    return col, both


def _flow_table(b: Batch, input_name: str, locality: Locality | None,
                exporters: Exporters | None = None, renormalize: bool = False) -> pa.Table:
    head = _header_columns(b, input_name)
    c = _Cols(b.records)
    n = c.n
    cols = _flow_columns(b, head, locality)
    if exporters is not None:
        _exporter_facts(b, cols, exporters, renormalize)
    session = cols.pop("_session")
    flow_locality = cols.pop("_flow_locality", None)
    category = pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)),
                                        pa.array(["network_traffic", "network"] * n))
    client: dict[str, pa.Array] = {}
    if session is not None:
        is_session = pc.fill_null(session, False)
        category = pc.if_else(is_session, pa.scalar(["network", "session"],
                                                    pa.list_(pa.string())), category)
        for side, role in (("source", "client"), ("destination", "server")):
            client[role] = {k: pc.if_else(is_session, cols[f"{side}.{k}"],
                                          pa.scalar(None, cols[f"{side}.{k}"].type))
                            for k in _SIDE_FIELDS if f"{side}.{k}" in cols}
    ntype, ntype_both = _network_type(c, n)
    table = {
        **{k: v for k, v in cols.items() if k != "@timestamp"},
        "@timestamp": head["@timestamp"],
        "ecs.version": pa.repeat(pa.scalar(ECS_VERSION), n),
        "event.kind": pa.repeat(pa.scalar("event"), n),
        "event.category": category,
        "event.type": constant_list("connection", n),
        "event.action": pa.repeat(pa.scalar("netflow_flow"), n),
        "observer.ip": head["observer.ip"],
        "network.type": ntype,
    }
    for k in ("source.mac", "destination.mac"):
        if k in table:  # Go's net.HardwareAddr text
            table[k] = pc.utf8_lower(table[k])
    netflow = _members(b.records, b.records.column_names)
    netflow["exporter"] = Raw(head["_exporter"])
    netflow["type"] = pa.repeat(pa.scalar("netflow_flow"), n)
    extra = {"netflow": netflow, "network": {"type": Raw(ntype_both)}, **client}
    if flow_locality is not None:
        extra["flow"] = {"locality": flow_locality}
    table[META_EXTRA] = json_object(extra, n)
    table[META_ID] = head[META_ID]
    table[META_INPUT] = head[META_INPUT]
    return pa.table({k: v for k, v in table.items() if v.null_count < n or k == META_EXTRA})


def _exporter_facts(b: Batch, cols: dict[str, pa.Array], exporters: Exporters,
                    renormalize: bool) -> None:
    """Interface names and the sampling rate the exporter's options data gave."""
    for column, side in (("ingress_interface", "ingress"), ("egress_interface", "egress")):
        names = exporters.interface_names(b, column)
        if names is not None:
            cols[f"observer.{side}.interface.name"] = names
    if not renormalize:
        return
    rate = exporters.rates(b)
    if rate is None:
        return
    for k in ("network.bytes", "network.packets"):
        if k in cols:
            cols[k] = pc.multiply(cols[k], pc.fill_null(rate, 1))


def _options_table(b: Batch, input_name: str) -> pa.Table:
    """Options records: netflow.scope.* (scope fields) and netflow.options.* (the rest)."""
    head = _header_columns(b, input_name)
    n = b.records.num_rows
    scope = set(b.scope_columns)
    names = b.records.column_names
    extra = json_object({"netflow": {
        "exporter": Raw(head["_exporter"]),
        "type": pa.repeat(pa.scalar("netflow_options"), n),
        "scope": _members(b.records, [k for k in names if k in scope]),
        "options": _members(b.records, [k for k in names if k not in scope]),
    }}, n)
    return pa.table({
        "@timestamp": head["@timestamp"],
        "ecs.version": pa.repeat(pa.scalar(ECS_VERSION), n),
        "event.kind": pa.repeat(pa.scalar("event"), n),
        "event.category": pa.ListArray.from_arrays(
            pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)),
            pa.array(["network_traffic", "network"] * n)),
        "event.action": pa.repeat(pa.scalar("netflow_options"), n),
        "observer.ip": head["observer.ip"],
        "network.direction": pa.repeat(pa.scalar("unknown"), n),  # the pipeline's default
        META_EXTRA: extra,
        META_ID: head[META_ID],
        META_INPUT: head[META_INPUT],
    })


# ---------------------------------------------------------------- public API

def normalize(decoded: Decoded, input_name: str, locality: Locality | None = None,
              exporters: Exporters | None = None, renormalize: bool = False) -> pa.Table:
    """All data and options records of ``decoded`` as one event batch (flows first, in
    decoding order). ``locality``: the input's internal networks (Elastic's default is
    ``Locality(["private"])``); None leaves locality and direction to the enricher.
    ``exporters``: what options data said (interface names, sampling rates), learnt from
    this batch first; ``renormalize`` multiplies bytes and packets by the sampling rate."""
    if exporters is not None:
        exporters.learn(decoded)
    tables = [_flow_table(b, input_name, locality, exporters, renormalize)
              for b in decoded.data if b.records.num_rows]
    tables += [_options_table(b, input_name) for b in decoded.options if b.records.num_rows]
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="default")


def failures(decoded: Decoded, input_name: str,
             datagrams: Sequence[tuple[bytes, str]] = ()) -> list[Failure]:
    """Decoder errors and held data sets given up on, for the failure store; with the
    datagrams, each error keeps its exporter and a hex excerpt of the datagram."""
    out: list[Failure] = []
    for index, message in decoded.errors:
        h = decoded.headers[index] if 0 <= index < len(decoded.headers) else None
        payload, who = datagrams[index] if 0 <= index < len(datagrams) else (b"", "")
        who = h.exporter if h is not None else (who or "unknown exporter")
        out.append(Failure(input_name, f"netflow: {who}: {message}", payload[:256].hex()))
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    for held in decoded.dropped:
        out.append(Failure(input_name, f"netflow: {held.key.exporter}: data set of template "
                           f"{held.key.template_id} {held.reason}", held.body[:64], at=now))
    return out
