"""sFlow v5 decode rate (flow samples/s, one core) vs. reading only the datagram headers.

Builds N datagrams of 7 flow samples each with the XDR encoder of the decoder's tests:
Ethernet headers (a third 802.1Q tagged) over IPv4 or IPv6 (80/20), TCP/UDP/ICMP, with
extended switch data on every sample and extended router/gateway data on some; addresses
drawn from a pool of hosts. Times ``decode_many`` over batches of 500 datagrams (about what
a receive loop hands over), and, in the same run, the floor: the same datagrams parsed only
for their header and sample count. Prints both rates and their ratio (best of 3 each).

    .venv/bin/python bench/sflow_decode.py [datagrams]
"""

from __future__ import annotations

import importlib
import ipaddress
import random
import struct
import sys
import time
from pathlib import Path
from types import ModuleType

from netmeta.decode.sflow import decode_many

ROOT = Path(__file__).resolve().parents[1]
SAMPLES_PER_DATAGRAM = 7
BATCH = 500


def _encoder() -> ModuleType:
    """The decoder's test module: its XDR encoder builds the datagrams."""
    sys.path.insert(0, str(ROOT))
    return importlib.import_module("tests.test_decode_sflow")


def make_datagrams(n: int, hosts: int = 5_000, seed: int = 7) -> list[tuple[bytes, str]]:
    enc = _encoder()
    rnd = random.Random(seed)
    v4 = [str(ipaddress.IPv4Address(rnd.getrandbits(32))) for _ in range(hosts)]
    v6 = [str(ipaddress.IPv6Address(rnd.getrandbits(128))) for _ in range(hosts // 4)]
    macs = [":".join(f"{rnd.randrange(256):02x}" for _ in range(6)) for _ in range(200)]
    agents = [f"10.255.0.{i}" for i in range(1, 9)]

    def packet() -> bytes:
        six = rnd.random() < 0.2
        proto = rnd.choice((6, 6, 6, 17, 17, 1))
        if proto == 6:
            l4 = enc.tcp(rnd.randrange(1024, 65536), rnd.choice((80, 443, 22)), 0x18, b"x" * 40)
        elif proto == 17:
            l4 = enc.udp(rnd.randrange(1024, 65536), rnd.choice((53, 123, 443)), b"y" * 40)
        else:
            proto = 58 if six else 1
            l4 = enc.icmp(8 if not six else 128, 0)
        if six:
            ip = enc.ipv6(rnd.choice(v6), rnd.choice(v6), proto, l4, hop=rnd.randrange(1, 256))
        else:
            ip = enc.ipv4(rnd.choice(v4), rnd.choice(v4), proto, l4, ttl=rnd.randrange(1, 256))
        vlans = ((0x8100, 0, rnd.randrange(1, 4095)),) if rnd.random() < 0.33 else ()
        return enc.ethernet(rnd.choice(macs), rnd.choice(macs), 0x86DD if six else 0x0800, ip,
                            vlans=vlans)[:128]

    def sample(seq: int) -> bytes:
        records = [enc.sampled_header(packet(), rnd.randrange(64, 1519)),
                   enc.extended_switch(10, 0, 20, 0)]
        if rnd.random() < 0.3:
            records.append(enc.extended_router(rnd.choice(v4), 24, 16))
        if rnd.random() < 0.1:
            records.append(enc.extended_gateway(rnd.choice(v4), 64500, 64501, 64502,
                                                [(2, [64510, rnd.randrange(64512, 65534)])],
                                                [0xFDE80001], 100))
        return enc.flow_sample(records, seq=seq, rate=rnd.choice((512, 1000, 2048)),
                               pool=seq * 1000, inp=(0, rnd.randrange(1, 48)),
                               out=(0, rnd.randrange(1, 48)))

    out = []
    for i in range(n):
        agent = agents[i % len(agents)]
        samples = [sample(i * SAMPLES_PER_DATAGRAM + j) for j in range(SAMPLES_PER_DATAGRAM)]
        out.append((enc.datagram(agent, samples, seq=i), agent))
    return out


_HEAD = struct.Struct(">II")
_COUNTS = struct.Struct(">IIII")


def floor(datagrams: list[tuple[bytes, str]]) -> int:
    """Header and sample count of each datagram: the least any decoder does."""
    samples = 0
    for data, _ in datagrams:
        _, atype = _HEAD.unpack_from(data, 0)
        _, _, _, count = _COUNTS.unpack_from(data, 8 + (4 if atype == 1 else 16))
        samples += count
    return samples


def run_decode(datagrams: list[tuple[bytes, str]]) -> tuple[float, int]:
    t0 = time.perf_counter()
    rows = 0
    for i in range(0, len(datagrams), BATCH):
        out = decode_many(datagrams[i:i + BATCH])
        rows += out.flows.num_rows
    return time.perf_counter() - t0, rows


def run_floor(datagrams: list[tuple[bytes, str]]) -> tuple[float, int]:
    t0 = time.perf_counter()
    rows = floor(datagrams)
    return time.perf_counter() - t0, rows


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    datagrams = make_datagrams(n)
    expected = n * SAMPLES_PER_DATAGRAM
    ours_s, rows = min(run_decode(datagrams) for _ in range(3))
    ref_s, ref_rows = min(run_floor(datagrams) for _ in range(3))
    if rows != expected or ref_rows != expected:
        raise SystemExit(f"decoded {rows} and counted {ref_rows} samples, expected {expected}")
    ours, ref = expected / ours_s, expected / ref_s
    size = sum(len(d) for d, _ in datagrams) / n
    print(f"{n} datagrams x {SAMPLES_PER_DATAGRAM} flow samples ({size:.0f} bytes each), "
          f"batches of {BATCH}")
    print(f"decode_many (columns out):        {ours:12,.0f} flow samples/s  ({ours_s:.3f} s)")
    print(f"reference, header + count only:   {ref:12,.0f} flow samples/s  ({ref_s:.3f} s)")
    print(f"ratio decode / reference:         {ours / ref:12.3f}  "
          f"(the reference is {ref / ours:.1f}x faster)")


if __name__ == "__main__":
    main()
