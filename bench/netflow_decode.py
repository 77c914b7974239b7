"""Decode-only throughput of NetFlow v9 and IPFIX data sets, one core.

Builds datagrams with a small encoder of its own (one template per exporter, ~1400-byte
datagrams of 20-field IPv4 flow records, 200 exporters, varied addresses), then times
in this process:

- netmeta: ``netflow.decode_many`` over receive batches of ``BATCH`` datagrams (as a listener
  hands them over), and ``netflow.decode`` one datagram at a time;
- the reference: a straightforward decoder that unpacks the same datagrams record by record
  (``struct.iter_unpack`` per data set), formats addresses with ``socket.inet_ntoa`` and
  builds the same Arrow columns from the tuples.

Both results are checked to hold the same rows before the figures are printed.

    .venv/bin/python bench/netflow_decode.py [datagrams]
"""

from __future__ import annotations

import random
import socket
import struct
import sys
import time

import pyarrow as pa

from netmeta.decode import netflow
from netmeta.decode.templates import TemplateState

BATCH = 256
EXPORTERS = 200
# (element id, length, struct code) of the records: IANA ids, as a router's v9/IPFIX export
V9_FIELDS = [(8, 4, "4s"), (12, 4, "4s"), (15, 4, "4s"), (7, 2, "H"), (11, 2, "H"),
             (4, 1, "B"), (6, 1, "B"), (5, 1, "B"), (1, 4, "I"), (2, 4, "I"), (22, 4, "I"),
             (21, 4, "I"), (10, 4, "I"), (14, 4, "I"), (16, 4, "I"), (17, 4, "I"), (9, 1, "B"),
             (13, 1, "B"), (61, 1, "B"), (60, 1, "B")]
IPFIX_FIELDS = [(8, 4, "4s"), (12, 4, "4s"), (15, 4, "4s"), (7, 2, "H"), (11, 2, "H"),
                (4, 1, "B"), (6, 2, "H"), (5, 1, "B"), (1, 8, "Q"), (2, 8, "Q"), (152, 8, "Q"),
                (153, 8, "Q"), (10, 4, "I"), (14, 4, "I"), (16, 4, "I"), (17, 4, "I"),
                (9, 1, "B"), (13, 1, "B"), (61, 1, "B"), (60, 1, "B")]
NAMES = {8: "source_ipv4_address", 12: "destination_ipv4_address", 15: "ip_next_hop_ipv4_address",
         7: "source_transport_port", 11: "destination_transport_port", 4: "protocol_identifier",
         6: "tcp_control_bits", 5: "ip_class_of_service", 1: "octet_delta_count",
         2: "packet_delta_count", 22: "flow_start_sys_up_time", 21: "flow_end_sys_up_time",
         152: "flow_start_milliseconds", 153: "flow_end_milliseconds", 10: "ingress_interface",
         14: "egress_interface", 16: "bgp_source_as_number", 17: "bgp_destination_as_number",
         9: "source_ipv4_prefix_length", 13: "destination_ipv4_prefix_length",
         61: "flow_direction", 60: "ip_version"}
WIDE = {1, 2}  # unsigned64 elements: uint64 columns
TIMES = {152, 153}  # dateTimeMilliseconds


def record_values(rnd: random.Random, ipfix: bool) -> list[object]:
    hosts = [rnd.getrandbits(32).to_bytes(4, "big") for _ in range(3)]
    base = 1_700_000_000_000 if ipfix else 3_600_000
    start = base + rnd.randrange(60_000)
    values: list[object] = [*hosts, rnd.randrange(65536), rnd.choice((53, 80, 443, 8080)),
                            rnd.choice((6, 17, 1)), rnd.randrange(64), rnd.randrange(8),
                            rnd.randrange(1, 10**6), rnd.randrange(1, 1000), start,
                            start + rnd.randrange(1, 5000), rnd.randrange(64),
                            rnd.randrange(64), rnd.randrange(65536), rnd.randrange(65536),
                            rnd.randrange(33), rnd.randrange(33), rnd.randrange(2), 4]
    return values


def build(n: int, ipfix: bool, seed: int = 11) -> list[tuple[bytes, str]]:
    """``n`` datagrams of ~1400 bytes of records; an exporter's first datagram and every
    20th after it carry the template first, as exporters resend theirs."""
    rnd = random.Random(seed)
    fields = IPFIX_FIELDS if ipfix else V9_FIELDS
    rec = struct.Struct(">" + "".join(code for _, _, code in fields))
    per = 1400 // rec.size
    out = []
    for i in range(n):
        exporter = f"198.51.100.{i % EXPORTERS}:2055"
        spec = b"".join(struct.pack(">HH", eid, length) for eid, length, _ in fields)
        tpl = struct.pack(">HH", 256, len(fields)) + spec
        data = b"".join(rec.pack(*record_values(rnd, ipfix)) for _ in range(per))
        with_template = (i // EXPORTERS) % 20 == 0
        if ipfix:
            sets = (struct.pack(">HH", 2, 4 + len(tpl)) + tpl if with_template else b""
                    ) + struct.pack(">HH", 256, 4 + len(data)) + data
            out.append((struct.pack(">HHIII", 10, 16 + len(sets), 1_700_000_000, i * per, 1)
                        + sets, exporter))
        else:
            sets = (struct.pack(">HH", 0, 4 + len(tpl)) + tpl if with_template else b""
                    ) + struct.pack(">HH", 256, 4 + len(data)) + data
            out.append((struct.pack(">HHIIII", 9, per + 1, 3_700_000, 1_700_000_000, i, 1)
                        + sets, exporter))
    return out


# ---------------------------------------------------------------- the naive reference

def naive(datagrams: list[tuple[bytes, str]]) -> pa.Table:
    """Record by record with ``struct.iter_unpack``; columns from the tuples at the end."""
    templates: dict[tuple[str, int, int], tuple[struct.Struct, list[int]]] = {}
    rows: dict[tuple[int, ...], list[tuple]] = {}  # per template layout
    for data, exporter in datagrams:
        version = struct.unpack_from(">H", data)[0]
        pos, domain = (20, struct.unpack_from(">I", data, 16)[0]) if version == 9 else (
            16, struct.unpack_from(">I", data, 12)[0])
        while pos + 4 <= len(data):
            set_id, length = struct.unpack_from(">HH", data, pos)
            body, pos = data[pos + 4:pos + length], pos + length
            if set_id in (0, 2):
                tid, count = struct.unpack_from(">HH", body)
                specs = [struct.unpack_from(">HH", body, 4 + 4 * i) for i in range(count)]
                codes = {1: "B", 2: "H", 4: "I", 8: "Q"}
                fmt = ">" + "".join("4s" if eid in (8, 12, 15) else codes[ln] for eid, ln in specs)
                templates[(exporter, domain, tid)] = (struct.Struct(fmt), [e for e, _ in specs])
            elif set_id >= 256:
                rec, ids = templates[(exporter, domain, set_id)]
                whole = len(body) // rec.size * rec.size
                rows.setdefault(tuple(ids), []).extend(rec.iter_unpack(body[:whole]))
    tables = []
    for ids, records in rows.items():
        arrays = []
        for eid, values in zip(ids, zip(*records, strict=True), strict=True):
            if eid in (8, 12, 15):
                arrays.append(pa.array(list(map(socket.inet_ntoa, values)), pa.string()))
            else:
                t = (pa.timestamp("ms") if eid in TIMES else pa.uint64() if eid in WIDE
                     else pa.int64())
                arrays.append(pa.array(values, t))
        tables.append(pa.Table.from_arrays(arrays, names=[NAMES[e] for e in ids]))
    return pa.concat_tables(tables)


# ---------------------------------------------------------------- timing

def ours_batched(datagrams: list[tuple[bytes, str]]) -> tuple[float, pa.Table]:
    state = TemplateState()
    tables = []
    t0 = time.perf_counter()
    for i in range(0, len(datagrams), BATCH):
        tables += [b.records for b in netflow.decode_many(datagrams[i:i + BATCH], state, 0.0).data]
    return time.perf_counter() - t0, pa.concat_tables(tables)


def ours_single(datagrams: list[tuple[bytes, str]]) -> tuple[float, int]:
    state = TemplateState()
    rows = 0
    t0 = time.perf_counter()
    for data, exporter in datagrams:
        rows += netflow.decode(data, exporter, state, 0.0).records
    return time.perf_counter() - t0, rows


def best(f, *args, runs: int = 3):  # type: ignore[no-untyped-def]
    results = [f(*args) for _ in range(runs)]
    return min(results, key=lambda r: r[0])


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
    print(f"decode only, one core; {n} datagrams per format, receive batches of {BATCH}")
    print(f"{'format':8} {'netmeta batched':>17} {'netmeta 1 by 1':>16} {'struct loop':>14} "
          f"{'batched / struct loop':>22}")
    for name, ipfix in (("v9", False), ("IPFIX", True)):
        datagrams = build(n, ipfix)
        t_ref, ref = best(lambda d: _timed(naive, d), datagrams)
        t_ours, table = best(ours_batched, datagrams)
        t_one, rows = best(ours_single, datagrams)
        # batches group records by template key, so rows come in another order
        order = [(c, "ascending") for c in ref.column_names]
        if not table.select(ref.column_names).sort_by(order).equals(ref.sort_by(order)):
            raise SystemExit(f"{name}: netmeta and the reference disagree")
        assert rows == ref.num_rows
        rate = ref.num_rows / t_ours
        print(f"{name:8} {rate:>11,.0f} rec/s {rows / t_one:>10,.0f} rec/s "
              f"{ref.num_rows / t_ref:>8,.0f} rec/s {t_ref / t_ours:>21.1f}x")


def _timed(f, *args):  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    result = f(*args)
    return time.perf_counter() - t0, result


if __name__ == "__main__":
    main()
