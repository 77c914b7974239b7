"""TCP stream listener (syslog over TCP, TLS optional): a thread per connection frames
the stream (newline or RFC 6587 octet counting) and hands complete messages over.

Backpressure is the socket's: when ``deliver`` blocks (the pipeline is full), the
connection's thread stops reading and the sender's TCP window closes. Nothing is lost.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Protocol

from netmeta.decode.syslog import FrameError, Framer

log = logging.getLogger(__name__)

READ_SIZE = 256 << 10
MAX_CONNECTIONS = 1024
# (messages or frame errors, peer "ip:port", time.time() they were read)
Deliver = Callable[[list[bytes | FrameError], str, float], None]


class StreamFramer(Protocol):
    def feed(self, chunk: bytes) -> Iterator[bytes | FrameError]: ...
    def flush(self) -> Iterator[bytes | FrameError]: ...


class TcpListener:
    def __init__(self, host: str, port: int, *, max_size: int = 65536, framing: str = "auto",
                 certfile: str = "", keyfile: str = "",
                 framer: Callable[[], StreamFramer] | None = None) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.address = self.sock.getsockname()[:2]
        self.max_size, self.framing = max_size, framing
        self.make_framer = framer  # None: syslog's (newline / octet counting)
        self.tls: ssl.SSLContext | None = None
        if certfile:
            self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls.load_cert_chain(certfile, keyfile)
        self.connections = 0
        self.refused = 0

    def run(self, deliver: Deliver, stop: threading.Event,
            idle: Callable[[], None] | None = None) -> None:
        """Accept until ``stop``; ``idle`` is called about 5 times a second."""
        threads: list[threading.Thread] = []
        while not stop.is_set():
            if idle is not None:
                idle()
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                threads = [t for t in threads if t.is_alive()]
                continue
            except OSError:
                if stop.is_set():
                    break
                raise
            threads = [t for t in threads if t.is_alive()]
            if len(threads) >= MAX_CONNECTIONS:  # a thread each: bounded
                log.warning("TCP %s:%d: %d connections open, refusing more", *peer[:2],
                            len(threads))
                conn.close()
                self.refused += 1
                continue
            t = threading.Thread(target=self._serve, args=(conn, peer, deliver, stop),
                                 name=f"tcp-{peer[0]}:{peer[1]}", daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(timeout=5)

    def _serve(self, conn: socket.socket, peer: tuple[str, int], deliver: Deliver,
               stop: threading.Event) -> None:
        who = f"[{peer[0]}]:{peer[1]}" if ":" in peer[0] else f"{peer[0]}:{peer[1]}"
        self.connections += 1
        try:
            if self.tls is not None:
                conn.settimeout(10)
                conn = self.tls.wrap_socket(conn, server_side=True)
            conn.settimeout(0.5)
            framer: StreamFramer = (self.make_framer() if self.make_framer is not None
                                    else Framer(self.max_size, self.framing))
            while not stop.is_set():
                try:
                    chunk = conn.recv(READ_SIZE)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                items = list(framer.feed(chunk))
                if items:
                    deliver(items, who, time.time())
            rest = list(framer.flush())
            if rest:
                deliver(rest, who, time.time())
        except (OSError, ssl.SSLError) as e:
            log.info("TCP %s: connection ended: %s", who, e)
        finally:
            self.connections -= 1
            conn.close()

    def close(self) -> None:
        self.sock.close()
