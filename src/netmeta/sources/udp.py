"""UDP listeners: a blocking receive loop in a thread of its own, handing over batches.

Stock asyncio's datagram protocol loses most datagrams at flow-export rates; a plain
blocking ``recvfrom_into`` loop does not, as long as the kernel buffer is large and the
consumer takes whole batches. A full consumer queue drops (and counts) a batch rather
than stall the socket, since a stalled socket loses more, silently, in the kernel.
Kernel-side loss is read from /proc: per socket (``drops`` in /proc/net/udp[6]) and host
wide (``RcvbufErrors`` in /proc/net/snmp[6]).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

MAX_DATAGRAM = 65535
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux, <asm-generic/socket.h>
DEFAULT_RCVBUF = 8 << 20


@dataclass(slots=True)
class Datagrams:
    """Datagrams received together, with who sent each."""

    payloads: list[bytes] = field(default_factory=list)
    peers: list[tuple[str, int]] = field(default_factory=list)
    received: float = 0.0  # time.time() of the first one
    nbytes: int = 0


@dataclass(slots=True)
class Counters:
    datagrams: int = 0
    bytes: int = 0
    dropped_batches: int = 0
    dropped_datagrams: int = 0


class UdpListener:
    def __init__(self, host: str, port: int, *, rcvbuf: int = DEFAULT_RCVBUF,
                 reuseport: bool = False, batch: int = 1024, max_wait: float = 0.05) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        if reuseport:  # several worker processes share the port; the kernel spreads load
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self.rcvbuf_wanted = rcvbuf
        try:  # with CAP_NET_ADMIN the buffer may exceed net.core.rmem_max
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        # Linux reports twice the granted size (bookkeeping overhead included)
        self.rcvbuf = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
        self.sock.bind((host, port))
        self.sock.settimeout(max_wait)
        self.address = self.sock.getsockname()[:2]
        self.batch = batch
        self.max_wait = max_wait
        self.counters = Counters()
        self._inode = os.fstat(self.sock.fileno()).st_ino
        self._family = family

    def rcvbuf_warning(self) -> str | None:
        """One line for the log at start when the kernel capped the receive buffer."""
        if self.rcvbuf >= self.rcvbuf_wanted:
            return None
        return (f"UDP {self.address[0]}:{self.address[1]}: receive buffer is {self.rcvbuf} "
                f"bytes, {self.rcvbuf_wanted} wanted (capped by net.core.rmem_max); bursts "
                f"may be lost: raise it with `sysctl -w net.core.rmem_max={self.rcvbuf_wanted}`")

    def run(self, deliver: Callable[[Datagrams], bool], stop: threading.Event,
            idle: Callable[[], None] | None = None) -> None:
        """Receive until ``stop`` is set. ``deliver`` returns False when it cannot take the
        batch (queue full): the batch is then counted as dropped. ``idle`` is called when
        nothing arrived for ``max_wait`` seconds."""
        buf = bytearray(MAX_DATAGRAM)
        view = memoryview(buf)
        recv = self.sock.recvfrom_into
        while not stop.is_set():
            out = Datagrams()
            deadline = 0.0
            while len(out.payloads) < self.batch:
                try:
                    n, peer = recv(buf)
                except TimeoutError:
                    break
                except OSError:
                    if stop.is_set():
                        return
                    raise
                if not out.payloads:
                    out.received = time.time()
                    deadline = time.monotonic() + self.max_wait
                out.payloads.append(bytes(view[:n]))
                out.peers.append((peer[0], peer[1]))
                out.nbytes += n
                if time.monotonic() >= deadline:
                    break
            if not out.payloads:
                if idle is not None:
                    idle()
                continue
            c = self.counters
            c.datagrams += len(out.payloads)
            c.bytes += out.nbytes
            if not deliver(out):
                c.dropped_batches += 1
                c.dropped_datagrams += len(out.payloads)

    def kernel_drops(self) -> int:
        """Datagrams the kernel dropped for this socket (buffer full), from /proc/net/udp."""
        name = "/proc/net/udp6" if self._family == socket.AF_INET6 else "/proc/net/udp"
        return socket_drops(Path(name), self._inode)

    def close(self) -> None:
        self.sock.close()


def socket_drops(table: Path, inode: int) -> int:
    try:
        lines = table.read_text().splitlines()[1:]
    except OSError:
        return 0
    for line in lines:
        cols = line.split()
        # sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
        if len(cols) >= 13 and cols[9] == str(inode):
            return int(cols[12])
    return 0


def rcvbuf_errors() -> int:
    """Host-wide UDP receive-buffer errors (IPv4 and IPv6), from /proc/net/snmp[6]."""
    total = 0
    try:
        lines = Path("/proc/net/snmp").read_text().splitlines()
        heads = [ln.split() for ln in lines if ln.startswith("Udp:")]
        if len(heads) == 2 and "RcvbufErrors" in heads[0]:
            total += int(heads[1][heads[0].index("RcvbufErrors")])
        for ln in Path("/proc/net/snmp6").read_text().splitlines():
            if ln.startswith("Udp6RcvbufErrors"):
                total += int(ln.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return total
