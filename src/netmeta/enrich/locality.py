"""source/destination.locality and network.direction, as Elastic computes them.

Locality follows the netflow input: an address is "internal" when it is in one of the
configured internal networks (CIDRs or the named networks of named_networks.yml, which
are those of Elastic's network_direction processor), and, unless switched off, when it is
one of the always-local addresses (loopback, link-local, ...) the netflow input adds.
Direction follows the netflow integration's pipeline, which derives it from the two
localities: external -> internal "inbound", internal -> external "outbound", both
internal "internal", both external "external", otherwise "unknown". With
``local_is_internal=False`` the result is exactly the network_direction processor's.

Work is done once per distinct address of the batch, with NumPy over 128-bit keys.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from netmeta.enrich.community_id import fill_nulls, key_words
from netmeta.event import distinct_ip_keys

INTERNAL = "internal"
EXTERNAL = "external"
_LOCALITIES = pa.array([INTERNAL, EXTERNAL])
# Index = code computed in directions().
_DIRECTIONS = pa.array(["unknown", "inbound", "outbound", INTERNAL, EXTERNAL])
_ALL_ONES = (1 << 128) - 1
_V4_MAPPED = 0xFFFF << 32


@dataclass(frozen=True, slots=True)
class Range:
    """Addresses whose 128-bit key k satisfies k & mask == value, within one family."""

    v6: bool
    value: int
    mask: int


@dataclass(frozen=True, slots=True)
class Network:
    """A union of ranges, or (negated) every address outside that union."""

    ranges: tuple[Range, ...]
    negated: bool = False


# ---------------------------------------------------------------- parsing


def parse_range(text: str) -> Range:
    """A range from a CIDR, a single address, or "address/mask" such as ``ff02::/ff0f::``."""
    addr_text, slash, mask_text = text.strip().partition("/")
    addr = ipaddress.ip_address(addr_text)
    if not slash:
        mask = _ALL_ONES >> (128 - addr.max_prefixlen)
    elif mask_text.isdigit():
        mask = int(ipaddress.ip_network(text.strip(), strict=False).netmask)
    else:
        mask_addr = ipaddress.ip_address(mask_text)
        if mask_addr.version != addr.version:
            raise ValueError(f"mask {mask_text} is not of the address's family")
        mask = int(mask_addr)
    value = int(addr) & mask
    if addr.version == 4:  # IPv4 keys live in ::ffff:0:0/96
        return Range(False, _V4_MAPPED | value, (_ALL_ONES << 32 | mask) & _ALL_ONES)
    return Range(True, value, mask)


@lru_cache(maxsize=1)
def named_networks() -> tuple[dict[str, Network], dict[str, Network], tuple[str, ...]]:
    """(names accepted in internal_networks, helper names, always-internal names)."""
    text = resources.files("netmeta.enrich").joinpath("named_networks.yml").read_text()
    spec = yaml.safe_load(text)
    plain = {
        name: tuple(parse_range(r) for r in body["ranges"])
        for group in ("networks", "helpers")
        for name, body in spec[group].items()
        if "ranges" in body
    }

    def build(body: dict[str, Any]) -> Network:
        if "ranges" in body:
            return Network(tuple(parse_range(r) for r in body["ranges"]))
        return Network(tuple(r for name in body["not"] for r in plain[name]), negated=True)

    public = {name: build(body) for name, body in spec["networks"].items()}
    helpers = {name: build(body) for name, body in spec["helpers"].items()}
    return public, helpers, tuple(spec["always_internal"])


def parse_network(entry: str) -> Network:
    """One internal_networks entry: a named network or a CIDR; ValueError naming it."""
    public, _, _ = named_networks()
    if not isinstance(entry, str):
        raise ValueError(f"internal_networks entry {entry!r} is not a string")
    if entry in public:
        return public[entry]
    try:
        return Network((parse_range(entry),))
    except ValueError:
        names = ", ".join(public)
        raise ValueError(
            f"internal_networks entry {entry!r} is neither an IP address, a CIDR nor a "
            f"named network ({names})"
        ) from None


def _always_internal() -> Network:
    public, helpers, names = named_networks()
    every = {**public, **helpers}
    return Network(tuple(r for name in names for r in every[name].ranges))


# ---------------------------------------------------------------- matching


def _split(n: int) -> tuple[np.uint64, np.uint64]:
    return np.uint64(n >> 64), np.uint64(n & 0xFFFF_FFFF_FFFF_FFFF)


def in_network(hi: np.ndarray, lo: np.ndarray, is_v4: np.ndarray, net: Network) -> np.ndarray:
    """Which keys (as high/low words) are in ``net``."""
    hit = np.zeros(len(hi), bool)
    for r in net.ranges:
        vh, vl = _split(r.value)
        mh, ml = _split(r.mask)
        family = ~is_v4 if r.v6 else is_v4
        hit |= family & ((hi & mh) == vh) & ((lo & ml) == vl)
    return ~hit if net.negated else hit


def _is_v4(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    return (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))


def directions(src_locality: pa.Array, dst_locality: pa.Array) -> pa.Array:
    """network.direction from the two localities (the netflow integration's rules)."""
    si, se = _equals(src_locality, INTERNAL), _equals(src_locality, EXTERNAL)
    di, de = _equals(dst_locality, INTERNAL), _equals(dst_locality, EXTERNAL)
    code = np.select([se & di, si & de, si & di, se & de], [1, 2, 3, 4], 0)
    return _DIRECTIONS.take(pa.array(code.astype(np.int8)))


def _equals(col: pa.Array | pa.ChunkedArray, value: str) -> np.ndarray:
    return pc.fill_null(pc.equal(col, value), False).to_numpy(zero_copy_only=False)


def _column_or_nulls(table: pa.Table, name: str) -> pa.Array | pa.ChunkedArray:
    if name in table.column_names:
        return table.column(name)
    return pa.nulls(table.num_rows, pa.string())


# ---------------------------------------------------------------- public API


class Locality:
    """Locality and direction enrichment for one internal_networks configuration."""

    def __init__(self, internal_networks: Iterable[str], *, local_is_internal: bool = True):
        """``local_is_internal``: the netflow input's rule that loopback, unspecified,
        broadcast and link-local addresses are always internal (False: only
        internal_networks counts, as in the network_direction processor)."""
        if isinstance(internal_networks, str):
            raise ValueError("internal_networks must be a list of networks, not a string")
        self._networks = tuple(parse_network(e) for e in internal_networks)
        if local_is_internal:
            self._networks += (_always_internal(),)

    def internal(self, keys: np.ndarray) -> np.ndarray:
        """For (K, 16) IP keys: which are internal."""
        hi, lo = key_words(keys)
        is_v4 = _is_v4(hi, lo)
        hit = np.zeros(len(keys), bool)
        for net in self._networks:
            hit |= in_network(hi, lo, is_v4, net)
        return hit

    def localities(self, ips: pa.Array | pa.ChunkedArray) -> pa.Array:
        """Locality ("internal"/"external") per address; null where there is no address."""
        rows, keys = distinct_ip_keys(ips)
        code = np.append(np.where(self.internal(keys), 0, 1), -1)[rows].astype(np.int8)
        return _LOCALITIES.take(pa.array(code, mask=code < 0))

    def apply(self, table: pa.Table, direction: bool = True) -> pa.Table:
        """Fill source/destination.locality and network.direction where they are null."""
        names = table.column_names
        if "source.ip" not in names and "destination.ip" not in names:
            return table
        for side in ("source", "destination"):
            target = f"{side}.locality"
            if f"{side}.ip" in names and _has_nulls(table, target):
                table = fill_nulls(table, target, self.localities(table.column(f"{side}.ip")))
        if direction and _has_nulls(table, "network.direction"):
            dirs = directions(
                _column_or_nulls(table, "source.locality"),
                _column_or_nulls(table, "destination.locality"),
            )
            table = fill_nulls(table, "network.direction", dirs)
        return table


def _has_nulls(table: pa.Table, name: str) -> bool:
    return name not in table.column_names or table.column(name).null_count > 0
