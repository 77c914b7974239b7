"""A small Lumberjack v2 writer for the tests (blocking sockets, bounded waits)."""

from __future__ import annotations

import select
import socket
import ssl
import struct

import orjson

from netmeta.decode.lumberjack import encode_compressed, encode_json, encode_window


class Client:
    """``source``: the local address to connect from (another host on the loopback, e.g.
    127.0.0.2)."""

    def __init__(self, port: int, *, restart_seq: bool = True, compress: bool = True,
                 tls: ssl.SSLContext | None = None, timeout: float = 20.0,
                 source: str = "") -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                        source_address=(source, 0) if source else None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock: socket.socket = tls.wrap_socket(sock, server_hostname="127.0.0.1") \
            if tls else sock
        self.restart_seq, self.compress = restart_seq, compress
        self.seq = 0
        self.keepalives = 0

    def window_bytes(self, events: list[dict[str, object]]) -> tuple[bytes, int]:
        if self.restart_seq:
            self.seq = 0
        frames = []
        for e in events:
            self.seq += 1
            frames.append(encode_json(self.seq, orjson.dumps(e)))
        body = b"".join(frames)
        return encode_window(len(events)) + (encode_compressed(body) if self.compress
                                             else body), self.seq

    def send(self, events: list[dict[str, object]]) -> int:
        """Send one window and wait for its ACK; returns the sequence acknowledged."""
        return self.await_ack(self.send_window(events))

    def send_window(self, events: list[dict[str, object]]) -> int:
        """Send one window without reading its ACK; returns the sequence to wait for."""
        data, last = self.window_bytes(events)
        self.sock.sendall(data)
        return last

    def readable(self, timeout: float = 0.0) -> bool:
        """Whether the server sent something not read yet (an ACK, a close)."""
        return bool(select.select([self.sock], [], [], timeout)[0])

    def await_ack(self, last: int) -> int:
        while True:
            seq = self.read_ack()
            if seq == 0 and last != 0:
                self.keepalives += 1
                continue
            if seq >= last:
                return seq

    def read_ack(self) -> int:
        buf = b""
        while len(buf) < 6:
            chunk = self.sock.recv(6 - len(buf))
            if not chunk:
                raise ConnectionError("closed by the server")
            buf += chunk
        assert buf[:2] == b"2A", buf
        return int(struct.unpack(">I", buf[2:])[0])

    def close(self) -> None:
        self.sock.close()
