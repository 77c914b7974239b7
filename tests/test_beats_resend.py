"""Events a Beat sends again after a broken connection, split into other windows, are stored
once: the real Beats server on 127.0.0.1 (and through ``netmeta serve``), and the suspect
table on its own (time given)."""

from __future__ import annotations

import concurrent.futures as cf
import itertools
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from netmeta import metrics
from netmeta.sources.beats import Batch, BeatsServer, Settings, Suspects, payload_digest

from .conftest import wait_until
from .lumberjack_client import Client

_names = itertools.count()


class Store:
    """Stands in for the pipeline: a batch is stored at once, or (``hold``) when released;
    ``fail`` batches in a row fail."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches: list[Batch] = []
        self.hold = False
        self.fail = 0
        self.held: list[tuple[Batch, cf.Future[None]]] = []
        self.calls = 0

    def __call__(self, batch: Batch) -> cf.Future[None]:
        fut: cf.Future[None] = cf.Future()
        with self.lock:
            self.calls += 1
            if self.hold:
                self.held.append((batch, fut))
                return fut
            if self.fail:
                self.fail -= 1
                fut.set_exception(RuntimeError("store is down"))
                return fut
            self.batches.append(batch)
        fut.set_result(None)
        return fut

    def release(self, ok: bool = True) -> None:
        with self.lock:
            held, self.held, self.hold = self.held, [], False
            if ok:
                self.batches.extend(b for b, _ in held)
        for _, fut in held:
            if ok:
                fut.set_result(None)
            else:
                fut.set_exception(RuntimeError("store is down"))

    def ns(self) -> list[object]:
        """What the events stored are (their "n"), sorted."""
        with self.lock:
            return sorted(orjson.loads(p)["n"] for b in self.batches for p in b.payloads)


def ev(i: object) -> dict[str, object]:
    return {"@timestamp": "2024-01-01T00:00:00Z", "type": "flow", "n": i}


def resent_metric(name: str) -> float:
    v = metrics.REGISTRY.get_sample_value("netmeta_beats_resent_events_total", {"input": name})
    return v or 0.0


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def server(store: Store) -> Iterator[BeatsServer]:
    s = BeatsServer("127.0.0.1", 0, store, name=f"resend{next(_names)}")
    s.start()
    yield s
    s.stop()


def ended(server: BeatsServer) -> None:
    wait_until(lambda: server.stats.connections == 0, "the connections to end")


def cut(server: BeatsServer, events: list[dict[str, object]], how: str = "at_once",
        source: str = "") -> None:
    """A window sent, the connection gone before the Beat read its ACK: closed right after
    sending (``at_once``), or once the ACK is there, unread (``ack_unread``: a reset)."""
    c = Client(server.address[1], source=source)
    c.send_window(events)
    if how == "ack_unread":
        assert c.readable(timeout=15)
    c.close()
    ended(server)


def resend(server: BeatsServer, windows: list[list[dict[str, object]]], source: str = ""
           ) -> list[int]:
    """The windows on a new connection, each waiting for its ACK."""
    c = Client(server.address[1], source=source)
    try:
        return [c.send(w) for w in windows]
    finally:
        c.close()


def split(events: list[dict[str, object]], sizes: list[int]) -> list[list[dict[str, object]]]:
    assert sum(sizes) == len(events)
    out, at = [], 0
    for n in sizes:
        out.append(events[at:at + n])
        at += n
    return out


# ---------------------------------------------------------------- over the socket

@pytest.mark.parametrize("how", ["at_once", "ack_unread"])
def test_resend_in_smaller_windows_stored_once(server: BeatsServer, store: Store, how: str
                                               ) -> None:
    events = [ev(i) for i in range(64)]
    cut(server, events, how)
    wait_until(lambda: len(store.ns()) == 64, "the window to be stored")
    # libbeat after an error: the same events again, in shrinking windows
    assert resend(server, split(events, [32, 16, 8, 8])) == [32, 16, 8, 8]
    assert store.ns() == list(range(64))  # each once
    assert server.stats.resent == 64
    assert resent_metric(server.name) == 64
    assert server.suspect_count() == 0  # all used up
    ended(server)
    assert resend(server, [events[:10]]) == [10]  # acknowledged and read: new events now
    assert len(store.ns()) == 74


def test_acknowledged_and_read_makes_no_suspects(server: BeatsServer, store: Store) -> None:
    """A Beat that read the ACK does not send the events again: equal events later are
    new ones, stored."""
    events = [ev(i) for i in range(20)]
    assert resend(server, [events]) == [20]
    ended(server)
    assert server.suspect_count() == 0
    assert resend(server, split(events, [10, 10])) == [10, 10]
    assert store.ns() == sorted(list(range(20)) * 2)
    assert resent_metric(server.name) == 0


def test_resend_window_zero_only_unacknowledged(store: Store) -> None:
    """``resend_window: 0``: batches acknowledged before the end are never suspects."""
    server = BeatsServer("127.0.0.1", 0, store, name=f"resend{next(_names)}",
                         settings=Settings(resend_window=0))
    server.start()
    try:
        events = [ev(i) for i in range(6)]
        cut(server, events, "ack_unread")  # the ACK was written (it is there), not read
        assert server.suspect_count() == 0
        assert resend(server, split(events, [3, 3])) == [3, 3]
        assert store.ns() == sorted(list(range(6)) * 2)
        assert resent_metric(server.name) == 0
    finally:
        server.stop()


def test_resend_with_new_events(server: BeatsServer, store: Store) -> None:
    old = [ev(i) for i in range(40)]
    new = [ev(100 + i) for i in range(24)]
    cut(server, old)
    wait_until(lambda: len(store.ns()) == 40, "the window to be stored")
    mixed = old[:25] + new[:5] + old[25:] + new[5:]  # the old ones and more, split anew
    assert resend(server, split(mixed, [30, 34])) == [30, 34]
    assert store.ns() == list(range(40)) + list(range(100, 124))
    assert resent_metric(server.name) == 40
    with store.lock:  # the batches handed over hold only the new events
        assert [len(b.payloads) for b in store.batches] == [40, 5, 19]


def test_another_host_is_not_affected(server: BeatsServer, store: Store) -> None:
    events = [ev(i) for i in range(12)]
    cut(server, events, source="127.0.0.2")
    wait_until(lambda: len(store.ns()) == 12, "the window to be stored")
    assert resend(server, split(events, [6, 6]), source="127.0.0.1") == [6, 6]
    assert store.ns() == sorted(list(range(12)) * 2)  # another host's events: stored
    assert resent_metric(server.name) == 0
    assert resend(server, split(events, [4, 8]), source="127.0.0.2") == [4, 8]
    assert store.ns() == sorted(list(range(12)) * 2)  # the first host's resend: not
    assert resent_metric(server.name) == 12


def test_equal_events_are_counted(server: BeatsServer, store: Store) -> None:
    """Two equal events of a window are two events; a resend of both is two resends, and
    a third equal one is stored."""
    a, b = ev("a"), ev("b")
    cut(server, [a, a, b])
    wait_until(lambda: len(store.ns()) == 3, "the window to be stored")
    assert store.ns() == ["a", "a", "b"]
    assert resend(server, [[a], [a, a, b]]) == [1, 3]
    assert store.ns() == ["a", "a", "a", "b"]
    assert resent_metric(server.name) == 3


def test_ack_written_but_the_beat_closed_before_it_arrived(store: Store) -> None:
    """The Beat closed (FIN) before our ACK reached it: the ACK was written, not read. With
    one batch in flight per connection, reading waits for the first ACK, so the close is
    seen after it was written; the peer's TCP never acknowledged it: not a clean end."""
    server = BeatsServer("127.0.0.1", 0, store, name=f"resend{next(_names)}",
                         settings=Settings(inflight=1))
    server.start()
    try:
        events = [ev(i) for i in range(30)]
        store.hold = True
        c = Client(server.address[1])
        for w in split(events, [10, 10, 10]):
            c.send_window(w)
        c.close()
        wait_until(lambda: store.calls == 3, "the windows to be handed over")
        store.release()
        ended(server)
        assert store.ns() == list(range(30))
        assert resend(server, split(events, [15, 15])) == [15, 15]
        assert store.ns() == list(range(30))
        assert resent_metric(server.name) == 30
    finally:
        server.stop()


def test_resend_waits_for_the_original_still_being_stored(server: BeatsServer, store: Store
                                                          ) -> None:
    events = [ev(i) for i in range(16)]
    store.hold = True
    c = Client(server.address[1])
    c.send_window(events)
    c.close()  # the original is still being stored
    wait_until(lambda: server.suspect_count() == 16, "the suspects")
    c = Client(server.address[1])
    lasts = [c.send_window(w) for w in split(events, [8, 8])]
    wait_until(lambda: server.stats.resent == 16, "the resend to be recognized")
    assert not c.readable()  # no ACK before the original is stored
    store.release()
    assert [c.await_ack(last) for last in lasts] == [8, 8]
    c.close()
    assert store.ns() == list(range(16))
    assert store.calls == 1  # nothing of the resend handed over


def test_original_not_stored_makes_no_suspects(server: BeatsServer, store: Store) -> None:
    events = [ev(i) for i in range(10)]
    store.fail = 1
    c = Client(server.address[1], timeout=10)
    with pytest.raises((ConnectionError, OSError)):
        c.send(events)  # not stored: not acknowledged, the connection closed
    c.close()
    ended(server)
    assert server.suspect_count() == 0
    assert resend(server, split(events, [5, 5])) == [5, 5]
    assert store.ns() == list(range(10))  # the resend is stored
    assert resent_metric(server.name) == 0


def test_original_failing_after_the_resend_came(server: BeatsServer, store: Store) -> None:
    """The resend waited for an original that then failed: not acknowledged either; the
    next resend is stored."""
    events = [ev(i) for i in range(10)]
    store.hold = True
    c = Client(server.address[1])
    c.send_window(events)
    c.close()
    wait_until(lambda: server.suspect_count() == 10, "the suspects")
    c = Client(server.address[1], timeout=10)
    last = c.send_window(events[:4])
    c.send_window(events[4:])
    wait_until(lambda: server.stats.resent == 10, "the resend to be recognized")
    store.release(ok=False)
    with pytest.raises((ConnectionError, OSError)):
        c.await_ack(last)
    c.close()
    ended(server)
    assert server.suspect_count() == 0
    assert resend(server, split(events, [3, 7])) == [3, 7]
    assert store.ns() == list(range(10))


def test_resend_of_a_resend(server: BeatsServer, store: Store) -> None:
    """A resend cut again before its ACK: both its new events and the ones taken out are
    suspects again."""
    old = [ev(i) for i in range(8)]
    new = [ev(50 + i) for i in range(4)]
    cut(server, old)
    wait_until(lambda: len(store.ns()) == 8, "the window to be stored")
    cut(server, old[:4] + new)  # 4 resent, 4 new stored
    wait_until(lambda: len(store.ns()) == 12, "the new events to be stored")
    assert server.suspect_count() == 4 + 8  # the rest of the first, all of the second
    assert resend(server, split(old + new, [6, 6])) == [6, 6]
    assert store.ns() == list(range(8)) + list(range(50, 54))


def test_suspects_bounded_per_server(store: Store) -> None:
    server = BeatsServer("127.0.0.1", 0, store, name=f"resend{next(_names)}",
                         settings=Settings(resend_max=10))
    server.start()
    try:
        cut(server, [ev(i) for i in range(8)])
        cut(server, [ev(100 + i) for i in range(6)])  # the first 8 are forgotten
        wait_until(lambda: len(store.ns()) == 14, "the windows to be stored")
        assert server.suspect_count() == 6
        assert resend(server, [[ev(i) for i in range(8)] + [ev(100 + i) for i in range(6)]]
                      ) == [14]
        assert len(store.ns()) == 22 and resent_metric(server.name) == 6
    finally:
        server.stop()


# ---------------------------------------------------------------- through netmeta serve

def test_resend_through_serve(tmp_path: Path) -> None:
    from .conftest import free_port
    from .servers import Serve
    from .test_beats_input import packetbeat_events

    port = free_port()
    serve = Serve(tmp_path, [str(tmp_path / "none" / "*.log")], inputs={"pb": {
        "type": "beats", "listen": "127.0.0.1", "port": port}})
    base = packetbeat_events()
    events = [{**e, "event": {**e["event"], "sequence": i}}
              for i, e in enumerate(base * 3)]  # 9 distinct events
    with serve:
        c = Client(port)
        c.send_window(events)
        c.close()
        serve.wait_for(lambda: serve.total("_input:pb") == 9, "the window to be stored")
        serve.wait_for(lambda: 'netmeta_beats_connections{input="pb"} 0.0' in
                       (serve.get("/metrics") or ""), "the connection to end")
        c = Client(port)
        assert [c.send(w) for w in split(events, [4, 2, 3])] == [4, 2, 3]
        c.close()
        assert serve.total("_input:pb") == 9  # not stored twice
        text = serve.get("/metrics")
        assert 'netmeta_beats_resent_events_total{input="pb"} 9.0' in text
        # no resent window was the same as a stored one: no whole-batch duplicate
        assert 'netmeta_push_duplicates_total{input="pb"} 0.0' in text


# ---------------------------------------------------------------- the suspect table

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def done(error: Exception | None = None) -> cf.Future[None]:
    f: cf.Future[None] = cf.Future()
    if error is None:
        f.set_result(None)
    else:
        f.set_exception(error)
    return f


def ds(*names: str) -> list[bytes]:
    return [payload_digest(orjson.dumps(ev(n))) for n in names]


def test_table_multiset_and_hosts() -> None:
    t = Suspects(ttl=60, max_entries=100, clock=Clock())
    stored = done()
    t.add("10.0.0.1", ds("a", "a", "b"), stored)
    assert len(t) == 3 and t.active("10.0.0.1") and not t.active("10.0.0.2")
    a, b, c = ds("a", "b", "c")
    assert t.take("10.0.0.2", a) is None  # another host
    assert t.take("10.0.0.1", c) is None  # no suspect
    assert t.take("10.0.0.1", a) is stored and t.take("10.0.0.1", a) is stored
    assert t.take("10.0.0.1", a) is None  # two counts only
    assert t.take("10.0.0.1", b) is stored
    assert len(t) == 0 and not t.active("10.0.0.1")


def test_table_oldest_original_first() -> None:
    t = Suspects(ttl=60, max_entries=100, clock=Clock())
    first, second = done(), done()
    t.add("h", ds("a"), first)
    t.add("h", ds("a", "b"), second)
    a, b = ds("a", "b")
    assert t.take("h", a) is first and t.take("h", a) is second and t.take("h", b) is second
    assert len(t) == 0


def test_table_expiry() -> None:
    clock = Clock()
    t = Suspects(ttl=900, max_entries=100, clock=clock)
    t.add("h", ds("a", "b"), done())
    clock.now += 600
    t.add("h", ds("c"), done())
    clock.now += 299
    assert len(t) == 3
    clock.now += 1  # 900 s after the first
    assert len(t) == 1
    a, c = ds("a", "c")
    assert t.take("h", a) is None and t.take("h", c) is not None
    clock.now += 10_000
    t.add("h", ds("d"), done())
    assert len(t) == 1 and t.active("h")
    clock.now += 900
    assert not t.active("h") and len(t) == 0


def test_table_bound_forgets_the_oldest() -> None:
    t = Suspects(ttl=900, max_entries=5, clock=Clock())
    assert t.add("h1", ds("a", "b", "c"), done()) == 0
    assert t.add("h2", ds("d", "e"), done()) == 0
    assert t.add("h2", ds("f"), done()) == 3  # over the bound: the oldest (3) go
    assert len(t) == 3 and not t.active("h1")
    a, d, f = ds("a", "d", "f")
    assert t.take("h1", a) is None
    assert t.take("h2", d) is not None and t.take("h2", f) is not None
    assert t.add("h3", ds(*"ghijklm"), done()) == 1  # alone over the bound: its first 5
    assert len(t) == 5


def test_table_failed_storage_makes_no_suspects() -> None:
    t = Suspects(ttl=900, max_entries=100, clock=Clock())
    assert t.add("h", ds("a"), done(RuntimeError("down"))) == 0
    assert len(t) == 0 and not t.active("h")
    pending: cf.Future[None] = cf.Future()
    kept: cf.Future[None] = cf.Future()
    t.add("h", ds("a", "b", "b"), pending)
    t.add("h", ds("b"), kept)
    b = ds("b")[0]
    assert t.take("h", b) is pending  # used up before the failure
    pending.set_exception(RuntimeError("down"))  # the original was not stored: gone
    assert len(t) == 1
    assert t.take("h", ds("a")[0]) is None
    assert t.take("h", b) is kept
    kept.set_result(None)
    assert len(t) == 0


def test_table_memory_per_entry() -> None:
    """The bound's cost in memory stays in the order documented (about 110 bytes each,
    the digests included)."""
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        t = Suspects(ttl=900, max_entries=1_000_000, clock=Clock())
        for k in range(0, 20_000, 2000):
            t.add("h", [payload_digest(i.to_bytes(4, "big")) for i in range(k, k + 2000)],
                  done())
        per_entry = (tracemalloc.get_traced_memory()[0] - before) / 20_000
    finally:
        tracemalloc.stop()
    assert len(t) == 20_000
    assert per_entry < 160, per_entry
