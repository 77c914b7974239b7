"""sFlow v5, decoded natively → the ECS documents of the GoFlow2 path.

One shape for sFlow however it arrives: flow samples are laid out as the GoFlow2 records
GoFlow2 would have written for them (``type: SFLOW_5``, the same field names) and mapped by
the same code as GoFlow2's JSON lines (Elastic's goflow2 integration, see
normalize/goflow2.py). What a native decoder knows beyond GoFlow2's JSON is added under
``sflow.*`` (sample sequence number, source id, sample pool, drops, interface formats,
header protocol). There is no ``event.original``: the datagram is binary.

Counter samples become events of their own: ``event.kind: metric``, ``event.action:
sflow_counters``, the interface in ``observer.ingress.interface.id`` and the counters under
``sflow.counters.*`` (RFC 2233 / RFC 2358 names in snake case).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from netmeta.columns import Raw, constant_list, json_object, list_of
from netmeta.decode.sflow import COUNTER_SCHEMA, Decoded
from netmeta.enrich.community_id import protocol_numbers
from netmeta.event import META_EXTRA, META_ID, META_INPUT, Failure
from netmeta.normalize import goflow2

# GoFlow2 renders these EtherTypes by name, others as the number
_ETYPES = {0x0800: "IPv4", 0x86DD: "IPv6", 0x0806: "ARP"}
# columns copied as they are into the GoFlow2 record (same name, widened to int64)
_SAME = ("sequence_num", "sampling_rate", "bytes", "packets", "src_port", "dst_port", "in_if",
         "out_if", "src_vlan", "dst_vlan", "vlan_id", "ip_tos", "ip_ttl", "ip_flags",
         "tcp_flags", "icmp_type", "icmp_code", "ipv6_flow_label", "fragment_id",
         "fragment_offset", "src_as", "dst_as", "next_hop_as")
_SAME_TEXT = ("sampler_address", "src_addr", "dst_addr", "src_mac", "dst_mac", "next_hop",
              "bgp_next_hop")
# known to the native decoder only: under sflow.*
_SFLOW_EXTRA = ("sample_sequence_num", "source_id_type", "source_id_index", "sample_pool",
                "drops", "in_if_format", "out_if_format", "header_protocol", "stripped",
                "header_length", "src_priority", "dst_priority", "src_peer_as", "local_pref",
                "ip_total_length")
_COUNTER_FIELDS = [f.name for f in COUNTER_SCHEMA
                   if f.name.startswith(("if_", "dot3_")) and f.name != "if_index"]


@lru_cache(maxsize=1)
def _protocol_names() -> pa.Array:
    names = [str(i) for i in range(256)]
    for name, number in protocol_numbers().items():
        names[number] = name.upper()
    return pa.array(names, pa.string())


def _int64(a: pa.Array | pa.ChunkedArray) -> pa.Array:
    return pc.cast(a, pa.int64())


def _named(numbers: pa.Array, names: dict[int, str]) -> pa.Array:
    text = pc.cast(numbers, pa.string())
    for number, name in names.items():
        text = pc.if_else(pc.equal(numbers, number), name, text)
    return text


def _network(addr: pa.Array, mask: pa.Array) -> pa.Array:
    """GoFlow2's src_net/dst_net: the address's prefix, "192.0.2.0/24" (once per distinct
    address and length)."""
    if mask.null_count == len(mask):
        return pa.nulls(len(mask), pa.string())
    keys = pc.binary_join_element_wise(addr, pc.cast(mask, pa.string()), "/")
    distinct = pc.unique(keys)
    rendered: list[str | None] = []
    for key in distinct.to_pylist():
        try:
            rendered.append(None if key is None else str(ipaddress.ip_network(key, strict=False)))
        except ValueError:
            rendered.append(None)
    return pc.take(pa.array(rendered, pa.string()), pc.index_in(keys, distinct))


Received = float | Sequence[float]  # when: for the whole batch, or per datagram


def _received_us(received: Received, datagram: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Arrival time (µs since 1970, via µs: a float of seconds has no exact ns) of each
    sample's datagram."""
    if isinstance(received, float | int):
        return pa.repeat(pa.scalar(round(received * 1e6), pa.int64()), len(datagram))
    per = np.round(np.asarray(received, np.float64) * 1e6).astype(np.int64)
    index = np.asarray(datagram.to_numpy(), np.int64)
    return pa.array(per[index], pa.int64())


def goflow2_records(decoded: Decoded, received: Received,
                    rates: dict[str, int] | None = None) -> pa.Table:
    """The flow samples as GoFlow2 records (goflow2.SCHEMA names and types); ``rates``:
    sampling rates per agent address that replace what the agent said."""
    f = decoded.flows
    n = f.num_rows
    ns = pc.multiply(_received_us(received, f.column("datagram")), 1000)
    cols: dict[str, pa.Array] = {
        "type": pa.repeat(pa.scalar("SFLOW_5"), n),
        "time_received_ns": ns,
        "time_flow_start_ns": ns,
    }
    for name in _SAME:
        cols[name] = _int64(f.column(name))
    for name in _SAME_TEXT:
        cols[name] = f.column(name).combine_chunks()
    if rates:
        agents = cols["sampler_address"]
        configured = pa.array([rates.get(a) for a in agents.to_pylist()], pa.int64())
        cols["sampling_rate"] = pc.coalesce(configured, cols["sampling_rate"])
    cols["etype"] = _named(f.column("etype").combine_chunks(), _ETYPES)
    proto = f.column("proto").combine_chunks()
    cols["proto"] = pc.if_else(proto.is_valid(), pc.take(_protocol_names(), proto),
                               pa.scalar(None, pa.string()))
    for side in ("src", "dst"):
        cols[f"{side}_net"] = _network(cols[f"{side}_addr"],
                                       f.column(f"{side}_mask_len").combine_chunks())
    for name in ("as_path", "bgp_communities"):
        cols[name] = pc.cast(f.column(name), pa.list_(pa.int64()))
    return pa.table({k: v for k, v in cols.items() if v.null_count < n or k == "type"})


def _ids(input_name: str, decoded: Decoded, table: pa.Table, kind: str,
         received: Received) -> pa.Array:
    """Deterministic event ids: agent, sub agent, datagram sequence, sample index."""
    dg = decoded.datagrams
    rows = pa.array(np.searchsorted(dg.column("datagram").to_numpy(),
                                    table.column("datagram").to_numpy()))
    sub = pc.cast(pc.take(dg.column("sub_agent_id"), rows), pa.string())
    seq = pc.cast(table.column("sequence_num"), pa.string())
    index = pa.array(np.arange(table.num_rows).astype(str))
    secs = pc.cast(pc.divide(_received_us(received, table.column("datagram")), 1_000_000),
                   pa.string())
    return pc.binary_join_element_wise(
        f"{input_name}:sflow:", table.column("sampler_address"), ":", sub, ":", seq, ":",
        secs, ":", kind, index, "")


def flows(decoded: Decoded, input_name: str, received: Received, renormalize: bool = True,
          rates: dict[str, int] | None = None) -> goflow2.Mapped | None:
    f = decoded.flows
    if f.num_rows == 0:
        return None
    rec = goflow2_records(decoded, received, rates)
    extra: dict[str, Any] = {name: f.column(name).combine_chunks() for name in _SFLOW_EXTRA}
    others = f.column("other_records").combine_chunks()
    if others.null_count < len(others):  # flow records of formats not decoded here
        extra["records"] = Raw(pa.array(
            [None if v is None else orjson.dumps(
                [{**r, "data": r["data"].hex()} for r in v]).decode()
             for v in others.to_pylist()], pa.string()))
    m = goflow2.map_records(rec, None, None, {"sflow": extra})
    if not renormalize:  # the sample as seen: one packet of its length
        m.columns["network.bytes"] = rec.column("bytes")
        m.columns["network.packets"] = rec.column("packets")
    m.columns["input.type"] = pa.repeat(pa.scalar("sflow"), f.num_rows)
    m.columns[META_ID] = _ids(input_name, decoded, f, "f", received)
    m.columns[META_INPUT] = pa.repeat(pa.scalar(input_name), f.num_rows)
    return m


def counters(decoded: Decoded, input_name: str, received: Received) -> pa.Table | None:
    c = decoded.counters
    n = c.num_rows
    if n == 0:
        return None
    at = _received_us(received, c.column("datagram")).cast(pa.timestamp("us"))
    if_index = c.column("if_index").combine_chunks()
    fmt = pc.binary_join_element_wise(pc.cast(c.column("enterprise"), pa.string()),
                                      pc.cast(c.column("format"), pa.string()), "/")
    raw = c.column("data").combine_chunks()
    tree: dict[str, Any] = {
        "sflow": {
            "sequence_num": c.column("sequence_num").combine_chunks(),
            "sample_sequence_num": c.column("sample_sequence_num").combine_chunks(),
            "source_id_type": c.column("source_id_type").combine_chunks(),
            "source_id_index": c.column("source_id_index").combine_chunks(),
            "counters": {"format": fmt, **{
                name: c.column(name).combine_chunks() for name in _COUNTER_FIELDS},
                # a record of a format not decoded here, as sent (hex)
                "data": pc.if_else(pc.greater(pc.binary_length(raw), 0),
                                   pa.array([b.hex() if b else None
                                             for b in raw.to_pylist()], pa.string()),
                                   pa.scalar(None, pa.string()))},
        },
    }
    cols: dict[str, pa.Array] = {
        "@timestamp": at,
        "ecs.version": pa.repeat(pa.scalar(goflow2.ECS_VERSION), n),
        "event.kind": pa.repeat(pa.scalar("metric"), n),
        "event.category": constant_list("network", n),
        "event.type": constant_list("info", n),
        "event.action": pa.repeat(pa.scalar("sflow_counters"), n),
        "input.type": pa.repeat(pa.scalar("sflow"), n),
        "observer.ip": list_of(c.column("sampler_address").combine_chunks()),
        "observer.ingress.interface.id": pc.cast(if_index, pa.string()),
        META_EXTRA: json_object(tree, n),
        META_ID: _ids(input_name, decoded, c, "c", received),
        META_INPUT: pa.repeat(pa.scalar(input_name), n),
    }
    return pa.table({k: v for k, v in cols.items() if v.null_count < n})


def other_samples(decoded: Decoded, input_name: str, received: Received) -> pa.Table | None:
    """Samples of formats this decoder does not know (vendor enterprises): kept as sent."""
    o = decoded.other_samples
    n = o.num_rows
    if n == 0:
        return None
    dg = decoded.datagrams
    rows = pa.array(np.searchsorted(dg.column("datagram").to_numpy(),
                                    o.column("datagram").to_numpy()))
    agent = pc.take(dg.column("sampler_address"), rows)
    seq = pc.take(dg.column("sequence_num"), rows)
    hexed = pa.array([b.hex() for b in o.column("data").to_pylist()], pa.string())
    extra = json_object({"sflow": {"sequence_num": seq, "sample": {
        "enterprise": o.column("enterprise").combine_chunks(),
        "format": o.column("format").combine_chunks(), "data": hexed}}}, n)
    ids = pc.binary_join_element_wise(
        f"{input_name}:sflow:", pc.fill_null(agent, "-"), ":", pc.cast(seq, pa.string()), ":",
        pc.cast(pc.divide(_received_us(received, o.column("datagram")), 1_000_000),
                pa.string()), ":o", pa.array(np.arange(n).astype(str)), "")
    return pa.table({
        "@timestamp": _received_us(received, o.column("datagram")).cast(pa.timestamp("us")),
        "ecs.version": pa.repeat(pa.scalar(goflow2.ECS_VERSION), n),
        "event.kind": pa.repeat(pa.scalar("event"), n),
        "event.action": pa.repeat(pa.scalar("sflow_other_sample"), n),
        "input.type": pa.repeat(pa.scalar("sflow"), n),
        "observer.ip": list_of(agent),
        META_EXTRA: extra, META_ID: ids, META_INPUT: pa.repeat(pa.scalar(input_name), n),
    })


def normalize(decoded: Decoded, input_name: str, received: Received, renormalize: bool = True,
              rates: dict[str, int] | None = None) -> tuple[pa.Table | None, list[Failure]]:
    """Flow and counter samples of a decoded batch as events (flows first), and failures:
    samples that broke their structure and flows whose addresses do not parse.
    ``renormalize``: a flow sample stands for ``sampling_rate`` packets (Elastic's goflow2
    mapping); ``rates``: sampling rates per agent address over what the agents say."""
    fails = [Failure(input_name, f"{e.message} (exporter {e.exporter}, offset {e.offset})",
                     e.excerpt.hex()) for e in decoded.errors]
    tables: list[pa.Table] = []
    m = flows(decoded, input_name, received, renormalize, rates)
    if m is not None:
        table = pa.table(m.columns)
        if m.bad.any():
            for i in np.flatnonzero(m.bad):
                fails.append(Failure(input_name, f"sflow: {m.why[i]}", ""))
            table = table.filter(pa.array(~m.bad))
        tables.append(table)
    for t in (counters(decoded, input_name, received),
              other_samples(decoded, input_name, received)):
        if t is not None:
            tables.append(t)
    if not tables:
        return None, fails
    return pa.concat_tables(tables, promote_options="default"), fails
