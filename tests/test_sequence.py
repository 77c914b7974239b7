"""Loss accounting from sequence numbers: gaps, wraps, restarts, reordering."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from netmeta.decode.sequence import MOD, SequenceTracker


def test_ipfix_counts_records_and_a_gap_is_loss() -> None:
    t = SequenceTracker()
    k = ("192.0.2.1", 1, "ipfix")
    assert t.observe(k, 1000, 30).lost == 0
    assert t.observe(k, 1030, 30).lost == 0
    assert t.observe(k, 1090, 10).lost == 30  # one 30-record message missing
    assert t.totals()[k] == (70, 30, 0)


def test_netflow_v9_counts_packets_and_wraps_at_32_bits() -> None:
    t = SequenceTracker()
    k = ("192.0.2.1", 0, "v9")
    t.observe(k, MOD - 2, 1, uptime_ms=1000)
    assert t.observe(k, MOD - 1, 1, uptime_ms=1100).lost == 0
    assert t.observe(k, 0, 1, uptime_ms=1200).lost == 0  # wrapped, nothing lost
    assert t.observe(k, 3, 1, uptime_ms=1300).lost == 2
    assert t.totals()[k] == (4, 2, 0)


def test_exporter_restart_is_a_reset_not_loss() -> None:
    t = SequenceTracker()
    k = ("192.0.2.1", 0, "v5")
    t.observe(k, 500_000, 30, uptime_ms=9_000_000)
    obs = t.observe(k, 0, 30, uptime_ms=1_000)  # counter and uptime went back
    assert obs.reset and obs.lost == 0
    assert t.observe(k, 30, 30, uptime_ms=2_000).lost == 0
    jump = t.observe(k, 60 + (1 << 25), 30, uptime_ms=3_000)  # too far to be loss
    assert jump.reset
    assert t.totals()[k][1:] == (0, 2)


def test_a_late_datagram_is_reordering_and_gives_its_loss_back() -> None:
    t = SequenceTracker()
    k = ("sflow", "10.0.0.1", 0)
    t.observe(k, 1, 1)
    assert t.observe(k, 3, 1).lost == 1  # 2 looks lost
    late = t.observe(k, 2, 1)  # ... but arrives
    assert late.reordered and not late.reset
    assert t.observe(k, 4, 1).lost == 0
    assert t.totals()[k] == (4, 0, 0)


def test_streams_are_independent() -> None:
    t = SequenceTracker()
    t.observe(("a", 1), 10, 1)
    t.observe(("a", 2), 500, 1)
    assert t.observe(("a", 1), 11, 1).lost == 0
    assert t.observe(("a", 2), 501, 1).lost == 0


@given(st.lists(st.integers(1, 50), min_size=1, max_size=200), st.integers(0, MOD - 1),
       st.sets(st.integers(0, 199)))
def test_loss_equals_the_records_of_the_datagrams_that_never_arrived(
        sizes: list[int], start: int, missing: set[int]) -> None:
    t = SequenceTracker()
    seq, sent = start, []
    for n in sizes:
        sent.append((seq % MOD, n))
        seq += n
    k = ("x", 0)
    t.observe(k, *sent[0])  # the first one always arrives
    arrived = [(i, s) for i, s in enumerate(sent[1:], 1) if i not in missing]
    for _, (s, n) in arrived:
        t.observe(k, s, n)
    last = arrived[-1][0] if arrived else 0
    lost_before_last = sum(n for i, (_, n) in enumerate(sent) if 0 < i < last and i in missing)
    assert t.totals()[k][1] == lost_before_last


def test_ipfix_messages_counted_from_decoded_records_and_held_sets_resync() -> None:
    """Records per message come from the decoder; a message whose data waits for its
    template has an unknown size, so the next message resynchronizes instead of counting
    its records as lost."""
    import struct

    from netmeta.decode import netflow
    from netmeta.decode.sequence import netflow_counts
    from netmeta.decode.templates import TemplateState

    from .test_decode_netflow import a_set, ipfix_message, ipfix_template

    fields = [(8, 4), (12, 4)]
    rec = struct.pack(">4s4s", b"\x0a\0\0\1", b"\x0a\0\0\2")
    state, tracker = TemplateState(), SequenceTracker()

    def feed(*msgs: bytes) -> tuple[int, int, int]:
        d = netflow.decode_many([(m, "192.0.2.5:4739") for m in msgs], state, 0.0)
        (c,) = netflow_counts(d, tracker)
        return c.datagrams, c.records, c.lost

    held = ipfix_message(a_set(300, rec * 4), sequence=100)  # before its template
    assert feed(held) == (1, 0, 0)
    tpl = ipfix_message(a_set(2, ipfix_template(300, fields)), a_set(300, rec * 3),
                        sequence=104)
    assert feed(tpl) == (1, 7, 0)  # 3 + the 4 held records released
    assert feed(ipfix_message(a_set(300, rec * 2), sequence=107)) == (1, 2, 0)
    assert feed(ipfix_message(a_set(300, rec), sequence=119)) == (1, 1, 10)  # 10 lost
