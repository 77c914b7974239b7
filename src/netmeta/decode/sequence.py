"""Loss accounting from export sequence numbers (NetFlow v5/v9, IPFIX, sFlow).

What a sequence number counts differs per protocol, which is why the caller passes how far
one datagram advances it:

- NetFlow v5: flows exported before this packet — advances by the packet's flow count.
- NetFlow v9 (RFC 3954 §5.1): export packets — advances by 1.
- IPFIX (RFC 7011 §3.1): data records exported before this message, per observation
  domain — advances by the message's data record count (template records excluded).
- sFlow v5: datagrams from one agent and sub-agent — advances by 1.

Counters are 32-bit and wrap. A jump backwards, a jump too large to be loss, or a sysUptime
that went backwards is an exporter restart or reset, not loss; a slightly late datagram is
a reordering, not loss either.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from netmeta.decode import sflow, templates
from netmeta.event import exporter_ip

MOD = 1 << 32
HALF = 1 << 31
REORDER_WINDOW = 1 << 16  # counts behind the expected value still taken as reordering
MAX_STREAMS = 1 << 16  # exporter streams followed; the oldest is forgotten beyond
MAX_GAP = 1 << 24  # counts ahead beyond this are a reset, not a loss of 16 M records


@dataclass(slots=True)
class Stream:
    expected: int | None  # the sequence number the next datagram should carry (None:
    # unknown, the last one's size was not known; the next datagram resynchronizes)
    uptime_ms: int | None
    received: int = 0  # counts seen (records or datagrams, as the protocol counts)
    lost: int = 0
    resets: int = 0
    reordered: int = 0


@dataclass(frozen=True, slots=True)
class Observation:
    lost: int = 0
    reset: bool = False
    reordered: bool = False


class SequenceTracker:
    """Expected sequence numbers per (exporter, observation domain / source id, protocol)."""

    def __init__(self) -> None:
        self.streams: dict[Hashable, Stream] = {}

    def observe(self, key: Hashable, seq: int, advance: int | None,
                uptime_ms: int | None = None) -> Observation:
        """``advance`` None: how far this datagram moves the sequence is not known (an IPFIX
        message whose data sets wait for their template): checked, then the next one
        resynchronizes."""
        seq %= MOD
        s = self.streams.get(key)
        if s is None:
            if len(self.streams) >= MAX_STREAMS:  # spoofed sources must not grow it forever
                del self.streams[next(iter(self.streams))]
            self.streams[key] = Stream(_next(seq, advance), uptime_ms, advance or 0)
            return Observation()
        s.received += advance or 0
        if uptime_ms is not None and s.uptime_ms is not None and uptime_ms < s.uptime_ms:
            return self._reset(s, seq, advance, uptime_ms)
        if s.expected is None:
            s.expected = _next(seq, advance)
            s.uptime_ms = uptime_ms if uptime_ms is not None else s.uptime_ms
            return Observation()
        gap = (seq - s.expected) % MOD
        if gap == 0:
            s.expected = _next(seq, advance)
            s.uptime_ms = uptime_ms if uptime_ms is not None else s.uptime_ms
            return Observation()
        if gap < HALF:  # ahead of what was expected
            if gap > MAX_GAP:
                return self._reset(s, seq, advance, uptime_ms)
            s.lost += gap
            s.expected = _next(seq, advance)
            s.uptime_ms = uptime_ms if uptime_ms is not None else s.uptime_ms
            return Observation(lost=gap)
        behind = MOD - gap
        if behind <= REORDER_WINDOW:
            # a late datagram: counted as lost when its successor arrived, so take it back
            given_back = min(advance or 0, s.lost)
            s.lost -= given_back
            s.reordered += 1
            return Observation(lost=-given_back, reordered=True)
        return self._reset(s, seq, advance, uptime_ms)

    @staticmethod
    def _reset(s: Stream, seq: int, advance: int | None, uptime_ms: int | None
               ) -> Observation:
        s.resets += 1
        s.expected = _next(seq, advance)
        s.uptime_ms = uptime_ms
        return Observation(reset=True)

    def totals(self) -> dict[Hashable, tuple[int, int, int]]:
        """Per stream: (received, lost, resets)."""
        return {k: (s.received, s.lost, s.resets) for k, s in self.streams.items()}


def _next(seq: int, advance: int | None) -> int | None:
    return None if advance is None else (seq + advance) % MOD


# ---------------------------------------------------------------- per batch, per exporter

@dataclass(slots=True)
class ExporterCount:
    """What one batch brought from one exporter stream; ``lost``/``resets`` are the stream's
    totals so far (reordering can give loss back, so they are not increments)."""

    exporter: str  # address, without the port
    protocol: str  # netflow_v5, netflow_v9, ipfix, sflow
    datagrams: int = 0
    records: int = 0
    lost: int = 0
    resets: int = 0


_PROTOCOLS = {5: "netflow_v5", 9: "netflow_v9", 10: "ipfix"}


def netflow_counts(decoded: templates.Decoded, tracker: SequenceTracker
                   ) -> list[ExporterCount]:
    out: dict[tuple[str, str], ExporterCount] = {}
    in_datagram: dict[int, int] = {}  # id(header) -> records it carried
    for b in (*decoded.data, *decoded.options):
        per_header = np.bincount(b.rows, minlength=len(b.headers))
        for h, k in zip(b.headers, per_header.tolist(), strict=True):
            in_datagram[id(h)] = in_datagram.get(id(h), 0) + k
            c = _count(out, exporter_ip(h.exporter), _PROTOCOLS.get(h.version, "netflow"))
            c.records += k
    for i, h in enumerate(decoded.headers):
        if h is None:
            continue
        protocol = _PROTOCOLS.get(h.version, "netflow")
        c = _count(out, exporter_ip(h.exporter), protocol)
        c.datagrams += 1
        if h.version == 5:
            advance: int | None = h.count
        elif h.version == 9:
            advance = 1
        else:
            advance = None if i in decoded.held_in else in_datagram.get(id(h), 0)
        tracker.observe((c.exporter, h.domain, protocol), h.sequence, advance, h.sys_uptime)
    return _totals(out, tracker)


def sflow_counts(decoded: sflow.Decoded, tracker: SequenceTracker) -> list[ExporterCount]:
    out: dict[tuple[str, str], ExporterCount] = {}
    dg = decoded.datagrams
    samples = np.bincount(
        np.concatenate([decoded.flows.column("datagram").to_numpy(),
                        decoded.counters.column("datagram").to_numpy()]).astype(np.int64),
        minlength=int(pc.max(dg.column("datagram")).as_py() or 0) + 1 if dg.num_rows else 0)
    for row in dg.select(["datagram", "sampler_address", "sub_agent_id", "sequence_num",
                          "uptime_ms"]).to_pylist():
        agent = row["sampler_address"] or "unknown"
        c = _count(out, agent, "sflow")
        c.datagrams += 1
        c.records += int(samples[row["datagram"]]) if row["datagram"] < len(samples) else 0
        tracker.observe((agent, row["sub_agent_id"], "sflow"), row["sequence_num"], 1,
                        row["uptime_ms"])
    return _totals(out, tracker)


def _totals(out: dict[tuple[str, str], ExporterCount], tracker: SequenceTracker
            ) -> list[ExporterCount]:
    """Loss and resets of every stream (domain, sub agent) of each exporter, summed."""
    for (exporter, _, protocol), s in tracker.streams.items():  # type: ignore[misc]
        c = out.get((exporter, protocol))
        if c is not None:
            c.lost += s.lost
            c.resets += s.resets
    return list(out.values())


def _count(out: dict[tuple[str, str], ExporterCount], exporter: str, protocol: str
           ) -> ExporterCount:
    c = out.get((exporter, protocol))
    if c is None:
        c = out[(exporter, protocol)] = ExporterCount(exporter, protocol)
    return c
