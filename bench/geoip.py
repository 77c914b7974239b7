"""GeoIP/ASN enrichment: distinct-address lookups + LRU cache vs. a naive per-row loop.

    .venv/bin/python bench/geoip.py [--rows 1000000] [--distinct 50000] [--batch 65536]

Rows draw (uniformly, seeded) from ``--distinct`` addresses inside the networks of MaxMind's
test databases (about 1 in 5 private, i.e. a miss). Both runs write the same 10 columns for
``source``; the naive run calls ``reader.get`` on both databases for every row. Prints
lookups/s for the vectorized path with a cold cache (fresh instance), with a warm cache
(same batches again), for the naive loop, and the ratios. The vectorized figures are the best
of ``--repeat`` runs (the machine is shared); the naive loop runs once. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa

from netmeta.enrich.geoip import RESULT_KEYS, GeoIP
from netmeta.event import FIELDS

TEST_DB = Path(__file__).resolve().parents[2] / "shared" / "peer" / "geoip" / "maxmind-test-data"
CITY = TEST_DB / "GeoLite2-City-Test.mmdb"
ASN = TEST_DB / "GeoLite2-ASN-Test.mmdb"


def known_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    nets = []
    for name in ("GeoLite2-City-Test.json", "GeoLite2-ASN-Test.json"):
        for entry in json.loads((TEST_DB / name).read_text()):
            nets += [ipaddress.ip_network(n) for n in entry]
    return nets


def distinct_addresses(n: int, rng: random.Random) -> list[str]:
    nets = known_networks()
    out: set[str] = set()
    while len(out) < n:
        if rng.random() < 0.2:
            out.add(f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}")
            continue
        net = rng.choice(nets)
        out.add(str(net.network_address + rng.randrange(net.num_addresses)))
    return sorted(out)


def batches(addrs: list[str], rows: int, size: int, seed: int) -> list[pa.Table]:
    pool = np.array(addrs, dtype=object)
    picks = np.random.default_rng(seed).integers(0, len(pool), rows)
    return [pa.table({"source.ip": pa.array(pool[picks[i:i + size]], pa.string())})
            for i in range(0, rows, size)]


def naive(geoip: GeoIP) -> Callable[[pa.Table], pa.Table]:
    """Enrichment without distinct values or a cache: ``lookup`` is one reader.get per DB."""
    lookup = geoip.lookup

    def run(table: pa.Table) -> pa.Table:
        cols: list[list] = [[] for _ in RESULT_KEYS]
        for ip in table.column("source.ip").to_pylist():
            for col, v in zip(cols, lookup(ip), strict=True):
                col.append(v)
        for key, col in zip(RESULT_KEYS, cols, strict=True):
            arr = pa.array(col, FIELDS[f"source.{key}"].arrow_type)
            if arr.null_count < len(arr):
                table = table.append_column(f"source.{key}", arr)
        return table

    return run


def timed(fn: Callable[[pa.Table], pa.Table], tables: list[pa.Table]) -> tuple[float, list]:
    t0 = time.perf_counter()
    out = [fn(t) for t in tables]
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--distinct", type=int, default=50_000)
    ap.add_argument("--batch", type=int, default=65_536)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    addrs = distinct_addresses(args.distinct, random.Random(1))
    tables = batches(addrs, args.rows, args.batch, seed=2)
    rows = sum(t.num_rows for t in tables)

    cold = warm = float("inf")
    for _ in range(max(1, args.repeat)):
        geoip = GeoIP(str(CITY), str(ASN))  # fresh instance: empty cache
        t, out_vec = timed(geoip.apply, tables)
        cold = min(cold, t)
        warm = min(warm, timed(geoip.apply, tables)[0])
    slow, out_naive = timed(naive(geoip), tables)
    same = all(a.select(sorted(a.column_names)).equals(b.select(sorted(b.column_names)))
               for a, b in zip(out_vec, out_naive, strict=True))
    info = geoip.cache_info()

    print(f"geoip: {rows:,} rows, {len(addrs):,} distinct addresses, batches of {args.batch:,}")
    print(f"  vectorized, cold cache : {rows / cold:>12,.0f} lookups/s  ({cold:.2f} s)")
    print(f"  vectorized, warm cache : {rows / warm:>12,.0f} lookups/s  ({warm:.2f} s)")
    print(f"  naive per-row get      : {rows / slow:>12,.0f} lookups/s  ({slow:.2f} s)")
    print(f"  ratio cold/naive {slow / cold:.1f}x, warm/naive {slow / warm:.1f}x; "
          f"cache {info.hits:,} hits / {info.misses:,} misses; identical results: {same}")


if __name__ == "__main__":
    main()
