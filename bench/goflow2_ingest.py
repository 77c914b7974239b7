"""End-to-end GoFlow2 ingest rate vs. the msgspec parse-only rate of the same file.

Generates N varied GoFlow2 sFlow lines, runs `netmeta ingest --format goflow2` into a fresh
store (GeoIP/ASN on with the MaxMind test databases, community id and locality on), and, in
the same run, times msgspec decoding every line of the same file. Prints both rates and
their ratio. Usage: python bench/goflow2_ingest.py [N]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GEOIP = ROOT.parent / "shared" / "peer" / "geoip" / "maxmind-test-data"


def generate(path: Path, n: int, seed: int = 7) -> None:
    rng = np.random.default_rng(seed)
    prefixes = np.array(["216.160.83.", "81.2.69.", "89.160.20.", "175.16.199.", "10.1.2.",
                         "192.168.7.", "67.43.156.", "2.125.160."])
    def addrs() -> np.ndarray:
        p = prefixes[rng.integers(0, len(prefixes), n)]
        return np.char.add(p, rng.integers(1, 255, n).astype(str))
    src, dst = addrs(), addrs()
    samplers = np.array(["67.43.156.1", "89.160.20.129", "10.0.0.1", "10.0.0.2"])
    proto = np.array(["TCP", "UDP", "TCP", "ICMP", "ESP"])[rng.integers(0, 5, n)]
    t0 = 1722384059314899647
    ts = t0 + np.cumsum(rng.integers(0, 2_000_000, n))
    sp = rng.integers(1024, 65535, n)
    dp = np.array([443, 80, 53, 22, 8443, 123])[rng.integers(0, 6, n)]
    rate = np.array([1000, 2000, 512])[rng.integers(0, 3, n)]
    size = rng.integers(60, 1519, n)
    seq = rng.integers(0, 100000, n)
    inif, outif = rng.integers(0, 800, n), rng.integers(0, 800, n)
    vlan = np.array([0, 500, 1500])[rng.integers(0, 3, n)]
    smp = samplers[rng.integers(0, len(samplers), n)]
    with path.open("w") as f:
        for i in range(n):
            f.write(
                f'{{"type":"SFLOW_5","time_received_ns":{ts[i] + 1000},"time_flow_start_ns":'
                f'{ts[i]},"sampler_address":"{smp[i]}","sequence_num":{seq[i]},"in_if":'
                f'{inif[i]},"out_if":{outif[i]},"src_addr":"{src[i]}","dst_addr":"{dst[i]}",'
                f'"etype":"IPv4","proto":"{proto[i]}","src_port":{sp[i]},"dst_port":{dp[i]},'
                f'"src_vlan":{vlan[i]},"dst_vlan":{vlan[i]},"sampling_rate":{rate[i]},'
                f'"bytes":{size[i]},"packets":1}}\n')


class Record(msgspec.Struct):
    type: str | None = None
    time_received_ns: int | None = None
    time_flow_start_ns: int | None = None
    sampler_address: str | None = None
    sequence_num: int | None = None
    in_if: int | None = None
    out_if: int | None = None
    src_addr: str | None = None
    dst_addr: str | None = None
    etype: str | None = None
    proto: str | None = None
    src_port: int | None = None
    dst_port: int | None = None
    src_vlan: int | None = None
    dst_vlan: int | None = None
    sampling_rate: int | None = None
    bytes: int | None = None
    packets: int | None = None


def parse_only(path: Path) -> tuple[int, float]:
    dec = msgspec.json.Decoder(Record)
    t = time.perf_counter()
    n = 0
    with path.open("rb") as f:
        for line in f:
            dec.decode(line)
            n += 1
    return n, time.perf_counter() - t


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        data = tmpd / "goflow2.log"
        t = time.perf_counter()
        generate(data, n)
        print(f"generated {n:,} lines ({data.stat().st_size / 1e6:.0f} MB) "
              f"in {time.perf_counter() - t:.1f} s")
        cfg = tmpd / "netmeta.yml"
        cfg.write_text(
            f"data_dir: {tmpd / 'data'}\n"
            f"enrich:\n  geoip:\n    city_db: {GEOIP / 'GeoLite2-City-Test.mmdb'}\n"
            f"    asn_db: {GEOIP / 'GeoLite2-ASN-Test.mmdb'}\n")
        netmeta = Path(sys.executable).with_name("netmeta")
        t = time.perf_counter()
        subprocess.run([str(netmeta), "ingest", "--config", str(cfg), "--format", "goflow2",
                        "--no-progress", str(data)], check=True)
        ingest_s = time.perf_counter() - t
        out = subprocess.run(
            [str(netmeta), "search", "--config", str(cfg), "--limit", "1", "--json",
             "network.community_id:* and source.geo.city_name:*"],
            check=True, capture_output=True, text=True).stdout
        assert '"community_id"' in out and '"city_name"' in out, "enrichment missing"
        # the reference is cheap: best of three, so that one noisy pass does not flatter
        # the ratio
        parsed, parse_s = min((parse_only(data) for _ in range(3)), key=lambda r: r[1])
    ingest_rate, parse_rate = n / ingest_s, parsed / parse_s
    print(f"netmeta ingest (store, GeoIP/ASN, community id): {ingest_rate:,.0f} events/s "
          f"({ingest_s:.2f} s)")
    print(f"msgspec parse-only of the same file:             {parse_rate:,.0f} lines/s "
          f"({parse_s:.2f} s)")
    print(f"ratio ingest / parse-only: {ingest_rate / parse_rate:.2f}  "
          f"(goal >= 0.30 and >= 300,000 events/s)")


if __name__ == "__main__":
    main()
