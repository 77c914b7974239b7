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

MOD = 1 << 32
HALF = 1 << 31
REORDER_WINDOW = 1 << 16  # counts behind the expected value still taken as reordering
MAX_GAP = 1 << 24  # counts ahead beyond this are a reset, not a loss of 16 M records


@dataclass(slots=True)
class Stream:
    expected: int  # the sequence number the next datagram should carry
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

    def observe(self, key: Hashable, seq: int, advance: int,
                uptime_ms: int | None = None) -> Observation:
        seq %= MOD
        s = self.streams.get(key)
        if s is None:
            self.streams[key] = Stream((seq + advance) % MOD, uptime_ms, advance)
            return Observation()
        s.received += advance
        if uptime_ms is not None and s.uptime_ms is not None and uptime_ms < s.uptime_ms:
            return self._reset(s, seq, advance, uptime_ms)
        gap = (seq - s.expected) % MOD
        if gap == 0:
            s.expected = (seq + advance) % MOD
            s.uptime_ms = uptime_ms if uptime_ms is not None else s.uptime_ms
            return Observation()
        if gap < HALF:  # ahead of what was expected
            if gap > MAX_GAP:
                return self._reset(s, seq, advance, uptime_ms)
            s.lost += gap
            s.expected = (seq + advance) % MOD
            s.uptime_ms = uptime_ms if uptime_ms is not None else s.uptime_ms
            return Observation(lost=gap)
        behind = MOD - gap
        if behind <= REORDER_WINDOW:
            # a late datagram: counted as lost when its successor arrived, so take it back
            given_back = min(advance, s.lost)
            s.lost -= given_back
            s.reordered += 1
            return Observation(lost=-given_back, reordered=True)
        return self._reset(s, seq, advance, uptime_ms)

    @staticmethod
    def _reset(s: Stream, seq: int, advance: int, uptime_ms: int | None) -> Observation:
        s.resets += 1
        s.expected = (seq + advance) % MOD
        s.uptime_ms = uptime_ms
        return Observation(reset=True)

    def totals(self) -> dict[Hashable, tuple[int, int, int]]:
        """Per stream: (received, lost, resets)."""
        return {k: (s.received, s.lost, s.resets) for k, s in self.streams.items()}
