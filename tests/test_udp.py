"""UDP listener on real sockets (127.0.0.1 and ::1), bounded loops."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from netmeta.sources.udp import Datagrams, UdpListener, rcvbuf_errors

from .conftest import wait_until


def _listen(host: str, deliver, **kw) -> tuple[UdpListener, threading.Event, threading.Thread]:
    lis = UdpListener(host, 0, **kw)
    stop = threading.Event()
    t = threading.Thread(target=lis.run, args=(deliver, stop), daemon=True)
    t.start()
    return lis, stop, t


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_every_datagram_arrives_in_batches_with_its_sender(host: str) -> None:
    got: list[Datagrams] = []
    lis, stop, t = _listen(host, lambda b: got.append(b) or True, batch=64)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as tx:
        tx.bind((host, 0))
        me = tx.getsockname()[:2]
        for i in range(500):
            tx.sendto(i.to_bytes(4, "big") * (1 + i % 50), lis.address)
            if i % 100 == 99:
                time.sleep(0.01)  # stay within the kernel buffer of a test machine
    wait_until(lambda: sum(len(b.payloads) for b in got) == 500)
    stop.set()
    t.join(5)
    assert not t.is_alive()
    payloads = [p for b in got for p in b.payloads]
    assert [int.from_bytes(p[:4], "big") for p in payloads] == list(range(500))
    assert all(len(b.payloads) <= 64 for b in got)
    assert {peer for b in got for peer in b.peers} == {me}
    assert lis.counters.datagrams == 500 and lis.kernel_drops() == 0
    lis.close()


def test_a_full_consumer_drops_whole_batches_and_counts_them() -> None:
    taken = []

    def deliver(b: Datagrams) -> bool:
        if taken:
            return False  # the queue is full after the first batch
        taken.append(b)
        return True

    lis, stop, t = _listen("127.0.0.1", deliver, batch=10, max_wait=0.01)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        for i in range(40):
            tx.sendto(b"x%d" % i, lis.address)
    wait_until(lambda: lis.counters.datagrams == 40)
    stop.set()
    t.join(5)
    c = lis.counters
    assert c.dropped_datagrams == 40 - len(taken[0].payloads)
    assert c.dropped_batches >= 1
    lis.close()


def test_receive_buffer_cap_is_reported_once() -> None:
    with open("/proc/sys/net/core/rmem_max") as f:
        cap = int(f.read())
    lis = UdpListener("127.0.0.1", 0, rcvbuf=cap * 4)
    warning = lis.rcvbuf_warning()
    if lis.rcvbuf >= cap * 4:  # running as root may lift the cap; then nothing to say
        assert warning is None
    else:
        assert warning is not None and "net.core.rmem_max" in warning
    assert UdpListener("127.0.0.1", 0, rcvbuf=4096).rcvbuf_warning() is None
    assert rcvbuf_errors() >= 0
    lis.close()


def test_two_listeners_share_a_port_with_reuseport() -> None:
    a = UdpListener("127.0.0.1", 0, reuseport=True)
    b = UdpListener("127.0.0.1", a.address[1], reuseport=True)
    assert a.address == b.address
    a.close()
    b.close()
