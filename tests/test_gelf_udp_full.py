"""GELF over UDP when the pipeline is full: the reader keeps reading (real socket on
127.0.0.1), holds what it can, drops the oldest beyond its limit — counted, and told by a
failure event once the pipeline takes batches again — and hands over what it held."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from netmeta.config import GelfInput
from netmeta.sources.gelf import GelfUdp, HeldBatcher

from .conftest import wait_until
from .test_gelf_input import free_udp_port, msg


class Pipeline:
    """The pipeline's place: refuses batches while ``full``."""

    def __init__(self) -> None:
        self.full = True
        self.lock = threading.Lock()
        self.messages: list[bytes] = []
        self.rejects: list[tuple[str, bytes]] = []
        self.refused = 0

    def offer(self, messages: list[tuple[bytes, str]], times: list[float],
              rejects: list[tuple[str, bytes]]) -> bool:
        assert len(times) == len(messages)
        with self.lock:
            if self.full:
                self.refused += 1
                return False
            self.messages += [m for m, _ in messages]
            self.rejects += rejects
            return True


def test_full_pipeline_never_stalls_the_reader_and_loss_is_counted() -> None:
    pipe = Pipeline()
    drops: list[int] = []
    held = HeldBatcher(pipe.offer, size=64, age=0.05, max_bytes=4000, on_drop=drops.append)
    src = GelfUdp("127.0.0.1", free_udp_port(), GelfInput(), held)
    stop = threading.Event()
    t = threading.Thread(target=src.run, args=(stop,), daemon=True)
    t.start()
    payloads = [msg(i, 20) for i in range(300)]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i, p in enumerate(payloads):
                s.sendto(p, src.address)
                if i % 50 == 49:  # paced, so the kernel buffer is not what loses them
                    wait_until(lambda n=i + 1: src.listener.counters.datagrams >= n, "the reader")
        wait_until(lambda: src.listener.counters.datagrams == 300, "every datagram read")
        assert pipe.refused > 0 and pipe.messages == []
        wait_until(lambda: held.held + held.dropped == 300, "held or dropped")
        assert held.held * len(payloads[0]) <= 4000 and held.dropped == sum(drops) > 0
        kept = held.held

        pipe.full = False  # the pipeline catches up: what was held is handed over
        wait_until(lambda: len(pipe.messages) == kept and pipe.rejects != [], "the held messages")
        assert pipe.messages == payloads[-kept:]  # the oldest were dropped, the newest kept
        (why, original), = pipe.rejects
        assert f"{held.dropped} messages dropped" in why and original == payloads[0]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(payloads[1], src.address)
        wait_until(lambda: len(pipe.messages) == kept + 1, "a later message")
        assert len(pipe.rejects) == 1  # the drop was reported once
    finally:
        stop.set()
        t.join(timeout=5)
        src.close()


def test_held_messages_are_drained_at_stop() -> None:
    pipe = Pipeline()
    held = HeldBatcher(pipe.offer, size=8, age=0.01)
    held.add([(msg(i), "192.0.2.1:1") for i in range(20)], [("gelf: bad", b"x")], time.time())
    held.flush()
    assert held.held == 20 and pipe.messages == []
    got: list[Any] = []
    held.drain(lambda m, t, r: got.append((len(m), len(t), r)))
    assert [(n, k) for n, k, _ in got] == [(8, 8), (8, 8), (4, 4)]
    assert got[0][2] == [("gelf: bad", b"x")] and held.held == 0 and held.dropped == 0
