"""Community ID v1 flow hash, computed for a whole batch at once.

Spec: https://github.com/corelight/community-id-spec. The hashed bytes of one flow are

    seed (2, big endian) | saddr | daddr | proto (1) | pad (1) | sport (2) | dport (2)

with the endpoints ordered so that the smaller (address, port) comes first, SHA-1 over
them, base64, and the prefix ``1:``. ICMP/ICMPv6 use the message type as source "port" and
the type of the matching reply (or, for messages without one, the code) as destination
"port"; flows of messages without a reply are one-way and never reordered. Protocols
other than TCP, UDP, SCTP, ICMP and ICMPv6 hash without the port words.

The batch is laid out with NumPy (IPv4 rows 16 bytes, IPv6 rows 40), the ordering is
decided with vectorized comparisons, SHA-1 runs in a tight loop over a memoryview of
the layout, and base64 is computed in NumPy over the (N, 20) digest matrix.

Addresses are parsed with :func:`netmeta.event.ip_key` (IPv4-mapped IPv6 addresses count
as IPv4, as Elastic's Go and Java implementations treat them). A flow whose two addresses
are of different families gets no id.
"""

from __future__ import annotations

import csv
import hashlib
from functools import lru_cache
from importlib import resources

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netmeta.event import distinct_ip_keys

ICMP = 1
TCP = 6
UDP = 17
ICMP6 = 58
SCTP = 132
# Protocols whose flows are 5-tuples (ICMP's "ports" are its type and code).
PORT_PROTOCOLS = (ICMP, TCP, UDP, ICMP6, SCTP)

# Request/reply message types that form a two-way ICMP conversation (spec section
# "ICMP", mirroring Zeek). Types outside these pairs are one-way.
_ICMP4_PAIRS = ((8, 0), (13, 14), (15, 16), (10, 9), (17, 18))
_ICMP6_PAIRS = ((128, 129), (130, 131), (133, 134), (135, 136), (139, 140), (144, 145))

_V4_MAPPED_BYTES = b"\x00" * 10 + b"\xff\xff"
_V4_MAPPED = np.frombuffer(_V4_MAPPED_BYTES, np.uint8)
_B64_ALPHABET = np.frombuffer(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", np.uint8
)
_PREFIX = b"1:"
_ID_LEN = len(_PREFIX) + 28  # 20 digest bytes are 28 base64 characters (one "=")

Array = pa.Array | pa.ChunkedArray


# ---------------------------------------------------------------- inputs -> NumPy


def _flat(a: Array) -> pa.Array:
    return a.combine_chunks() if isinstance(a, pa.ChunkedArray) else a


def int_column(a: Array, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """(values as int64 with 0 where unusable, mask of rows holding a value in [lo, hi])."""
    a = _flat(a)
    if not pa.types.is_integer(a.type):
        a = pc.cast(a, pa.int64())
    values = pc.fill_null(a, 0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    ok = a.is_valid().to_numpy(zero_copy_only=False) & (values >= lo) & (values <= hi)
    return np.where(ok, values, 0), ok


def ip_key_rows(a: Array) -> tuple[np.ndarray, np.ndarray]:
    """(N, 16) key matrix of a column of IP strings and the mask of rows with an address."""
    rows, keys = distinct_ip_keys(a)
    ok = rows >= 0
    if not len(keys):
        return np.zeros((len(rows), 16), np.uint8), ok
    return keys[np.where(ok, rows, 0)], ok


def key_words(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, 16) keys as (high, low) native uint64 words: 128-bit tests in two vector ops."""
    words = np.ascontiguousarray(keys).view(">u8").astype(np.uint64)
    return words[:, 0], words[:, 1]


# ---------------------------------------------------------------- the flow tuple


def _icmp_counterparts(pairs: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Lookup table: message type -> type of its reply (or request), -1 when none."""
    table = np.full(256, -1, np.int64)
    for a, b in pairs:
        table[a], table[b] = b, a
    return table


_COUNTERPART = {ICMP: _icmp_counterparts(_ICMP4_PAIRS), ICMP6: _icmp_counterparts(_ICMP6_PAIRS)}


def _icmp_ports(
    proto: np.ndarray, mtype: np.ndarray, code: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(destination "port", one-way flag) of ICMP rows; sport is the type itself."""
    small = np.clip(mtype, 0, 255)
    counterpart = np.where(
        proto == ICMP6, _COUNTERPART[ICMP6][small], _COUNTERPART[ICMP][small]
    )
    counterpart = np.where(mtype <= 255, counterpart, -1)
    one_way = counterpart < 0
    return np.where(one_way, code, counterpart), one_way


def _flip_mask(
    s: np.ndarray, d: np.ndarray, sport: np.ndarray, dport: np.ndarray
) -> np.ndarray:
    """Rows whose (saddr, sport) is greater than (daddr, dport), compared as big endian."""
    sh, sl = key_words(s)
    dh, dl = key_words(d)
    return (sh > dh) | ((sh == dh) & ((sl > dl) | ((sl == dl) & (sport > dport))))


def _layout(
    seed: int, s: np.ndarray, d: np.ndarray, proto: np.ndarray,
    sport: np.ndarray, dport: np.ndarray,
) -> np.ndarray:
    """Hash input rows: seed, saddr, daddr, proto, pad, sport, dport (all big endian)."""
    alen = s.shape[1]
    buf = np.empty((len(s), 2 * alen + 8), np.uint8)
    buf[:, 0], buf[:, 1] = seed >> 8, seed & 0xFF
    buf[:, 2:2 + alen] = s
    buf[:, 2 + alen:2 + 2 * alen] = d
    p = 2 + 2 * alen
    buf[:, p] = proto
    buf[:, p + 1] = 0
    buf[:, p + 2], buf[:, p + 3] = sport >> 8, sport & 0xFF
    buf[:, p + 4], buf[:, p + 5] = dport >> 8, dport & 0xFF
    return buf


def sha1_rows(buf: np.ndarray) -> np.ndarray:
    """SHA-1 of every row of a (K, W) uint8 matrix, as a (K, 20) matrix."""
    k, width = buf.shape
    if k == 0:
        return np.empty((0, 20), np.uint8)
    view = memoryview(np.ascontiguousarray(buf)).cast("B")
    sha1 = hashlib.sha1
    joined = b"".join([sha1(view[i:i + width]).digest() for i in range(0, k * width, width)])
    return np.frombuffer(joined, np.uint8).reshape(k, 20)


def _pair_table() -> np.ndarray:
    """12-bit value -> its two base64 characters, as one uint16 in native byte order."""
    i = np.arange(4096)
    pairs = np.stack([_B64_ALPHABET[i >> 6], _B64_ALPHABET[i & 63]], axis=1)
    return np.ascontiguousarray(pairs).view(np.uint16).ravel()


_B64_PAIRS = _pair_table()


def base64_ids(digests: np.ndarray) -> np.ndarray:
    """(K, 30) ASCII matrix "1:" + base64 of each 20-byte digest.

    Each 3-byte group is one 24-bit number whose two 12-bit halves index a table of
    character pairs, so the whole encoding is a handful of vector operations.
    """
    k = len(digests)
    groups = np.zeros((k, 21), np.uint8)  # 20 bytes + 1 pad byte = 7 groups of 3
    groups[:, :20] = digests
    quads = np.zeros((k, 7, 4), np.uint8)  # each group as a big-endian uint32
    quads[:, :, 1:] = groups.reshape(k, 7, 3)
    v = quads.view(">u4")[:, :, 0].astype(np.uint32)
    chars = np.empty((k, 7, 2), np.uint16)
    chars[:, :, 0] = _B64_PAIRS[v >> 12]
    chars[:, :, 1] = _B64_PAIRS[v & 0xFFF]
    out = np.empty((k, _ID_LEN), np.uint8)
    out[:, 0], out[:, 1] = _PREFIX
    out[:, 2:] = chars.view(np.uint8).reshape(k, 28)
    out[:, -1] = ord("=")  # the last character encodes only the pad byte
    return out


def _string_array(ids: np.ndarray, valid: np.ndarray) -> pa.Array:
    """Arrow string array from fixed-width rows for the valid positions, null elsewhere."""
    n = len(valid)
    offsets = np.zeros(n + 1, np.int32)
    np.cumsum(valid * np.int32(_ID_LEN), out=offsets[1:])
    nulls = int(n - valid.sum())
    bitmap = pa.py_buffer(np.packbits(valid, bitorder="little")) if nulls else None
    return pa.Array.from_buffers(
        pa.string(), n, [bitmap, pa.py_buffer(offsets), pa.py_buffer(ids.tobytes())], nulls
    )


# ---------------------------------------------------------------- public API


def community_ids(
    src_ip: Array,
    dst_ip: Array,
    src_port: Array,
    dst_port: Array,
    proto: Array,
    seed: int = 0,
    icmp_type: Array | None = None,
    icmp_code: Array | None = None,
) -> pa.Array:
    """Community ID v1 of each row; null where an input the flow needs is null or invalid.

    ``proto`` is the IANA protocol number. For ICMP rows the type and code come from
    ``icmp_type``/``icmp_code`` when given, else from the source/destination port (the
    convention of Zeek and of the reference implementation).
    """
    if not 0 <= seed <= 0xFFFF:
        raise ValueError(f"community id seed must be 0..65535, not {seed}")
    s, s_ok = ip_key_rows(src_ip)
    d, d_ok = ip_key_rows(dst_ip)
    p, p_ok = int_column(proto, 0, 255)
    sport, sport_ok = int_column(src_port, 0, 0xFFFF)
    dport, dport_ok = int_column(dst_port, 0, 0xFFFF)
    s_v4 = (s[:, :12] == _V4_MAPPED).all(axis=1)
    d_v4 = (d[:, :12] == _V4_MAPPED).all(axis=1)

    is_icmp = (p == ICMP) | (p == ICMP6)
    has_ports = np.isin(p, PORT_PROTOCOLS)
    if icmp_type is None:
        mtype, type_ok, code, code_ok = sport, sport_ok, dport, dport_ok
    else:
        mtype, type_ok = int_column(icmp_type, 0, 255)
        code, code_ok = int_column(
            icmp_code if icmp_code is not None else pa.nulls(len(p), pa.int64()), 0, 255
        )
    icmp_dport, one_way = _icmp_ports(p, mtype, code)
    sport = np.where(is_icmp, mtype, np.where(has_ports, sport, 0))
    dport = np.where(is_icmp, icmp_dport, np.where(has_ports, dport, 0))
    ports_ok = np.where(is_icmp, type_ok & code_ok, ~has_ports | (sport_ok & dport_ok))
    valid = s_ok & d_ok & p_ok & ports_ok & (s_v4 == d_v4)

    flip = _flip_mask(s, d, sport, dport) & ~(is_icmp & one_way)
    f = flip[:, None]
    s, d = np.where(f, d, s), np.where(f, s, d)
    sport, dport = np.where(flip, dport, sport), np.where(flip, sport, dport)

    digests = np.empty((len(p), 20), np.uint8)
    for family, first_byte in ((s_v4, 12), (~s_v4, 0)):  # IPv4 keys: last 4 bytes
        for ported in (True, False):
            rows = valid & family & (has_ports == ported)
            if not rows.any():
                continue
            buf = _layout(seed, s[rows, first_byte:], d[rows, first_byte:], p[rows],
                          sport[rows], dport[rows])
            digests[rows] = sha1_rows(buf if ported else buf[:, :-4])
    return _string_array(base64_ids(digests[valid]), valid)


# ---------------------------------------------------------------- table level


@lru_cache(maxsize=1)
def protocol_numbers() -> dict[str, int]:
    """Lowercase protocol keyword -> IANA number (iana_protocols.csv)."""
    text = resources.files("netmeta.enrich").joinpath("iana_protocols.csv").read_text()
    return {row["keyword"]: int(row["number"]) for row in csv.DictReader(text.splitlines())}


def _protocol_number(text: str | None) -> int | None:
    """IANA number of a protocol given as a number ("6") or a keyword ("TCP")."""
    if text is None:
        return None
    t = text.strip().lower()
    if t.isdigit():
        n = int(t)
        return n if n <= 255 else None
    return protocol_numbers().get(t)


def protocol_number_column(a: Array) -> pa.Array:
    """int64 protocol numbers of a column of numbers or names, converted per distinct value."""
    enc = pc.dictionary_encode(pc.cast(_flat(a), pa.string()))
    numbers = pa.array([_protocol_number(v) for v in enc.dictionary.to_pylist()], pa.int64())
    return numbers.take(enc.indices)


def _table_protocols(table: pa.Table) -> pa.Array | None:
    """Protocol from network.iana_number, else from network.transport (Elastic's order)."""
    cols = [
        protocol_number_column(table.column(name))
        for name in ("network.iana_number", "network.transport")
        if name in table.column_names
    ]
    if not cols:
        return None
    return cols[0] if len(cols) == 1 else pc.coalesce(*cols)


def _optional_ints(table: pa.Table, name: str, fill: int | None) -> pa.Array:
    if name not in table.column_names:
        return pa.nulls(table.num_rows, pa.int64()) if fill is None else pa.array(
            np.full(table.num_rows, fill, np.int64)
        )
    col = pc.cast(_flat(table.column(name)), pa.int64())
    return col if fill is None else pc.fill_null(col, fill)


def add_community_id(table: pa.Table, seed: int = 0) -> pa.Table:
    """Set network.community_id where it is null, from the flow columns of the batch.

    ICMP type and code come from ``icmp.type``/``icmp.code`` when the batch has them and
    are 0 otherwise, as in Elastic (the netflow input never passes them, the ingest
    processor defaults missing ones to 0): NetFlow's ICMP "destination port" is not used.
    """
    target = "network.community_id"
    if "source.ip" not in table.column_names or "destination.ip" not in table.column_names:
        return table
    existing = table.column(target) if target in table.column_names else None
    if existing is not None and existing.null_count == 0:
        return table
    proto = _table_protocols(table)
    if proto is None:
        return table
    ids = community_ids(
        table.column("source.ip"),
        table.column("destination.ip"),
        _optional_ints(table, "source.port", None),
        _optional_ints(table, "destination.port", None),
        proto,
        seed,
        icmp_type=_optional_ints(table, "icmp.type", 0),
        icmp_code=_optional_ints(table, "icmp.code", 0),
    )
    return fill_nulls(table, target, ids)


def fill_nulls(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """Column ``name`` set to ``values`` where it is null (added when absent)."""
    if name not in table.column_names:
        return table.append_column(name, values)
    existing = table.column(name)
    if existing.null_count == 0:
        return table
    merged = pc.coalesce(pc.cast(_flat(existing), values.type), values)
    return table.set_column(table.column_names.index(name), name, merged)
