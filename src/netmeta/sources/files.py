"""Reading and tailing JSON-lines files (GoFlow2 ``-transport.file``), like Filebeat's filestream.

Pure reading: this module hands out byte ranges made of whole lines and never parses them.
It starts no threads; the caller calls :meth:`Tailer.poll` from its own loop.

A file is identified by ``(st_dev, st_ino)``, not by its name, so that rotation is followed:

* rename rotation (``goflow2.log`` -> ``goflow2.log.1``, a new ``goflow2.log``): the open
  descriptor keeps reading the renamed file, even when the glob no longer matches it, and the
  new file is a new identity read from 0;
* copytruncate (size drops below what was already seen): read again from 0;
* deleted while open: read to its end, then closed.

Exactly once across restarts: every :class:`Chunk` carries ``(device, inode, end)``; the caller
stores them in the same transaction as the decoded events and passes them back as
``positions``. A chunk only ever contains whole lines, so ``end`` is always a line boundary.
An over-long line is only reported (in the chunk whose ``end`` passes it) once its newline is
found, so a restart in the middle of it reports it once, not twice nor never.

Use a glob that also matches rotated names (``goflow2.log*``): after a restart only matched
files are found again, so the unread tail of a renamed file is read only if it is matched
(as with Filebeat). Compressed rotations (``*.gz``) are excluded by default.
"""

from __future__ import annotations

import fnmatch
import glob
import logging
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import BinaryIO

__all__ = ["Chunk", "Tailer", "read_file"]

log = logging.getLogger(__name__)

Key = tuple[int, int]  # (st_dev, st_ino)

DEFAULT_READ_SIZE = 4 << 20
DEFAULT_MAX_LINE = 1 << 20


@dataclass(frozen=True, slots=True)
class Chunk:
    """Whole lines read from one file, plus any over-long lines skipped right after them."""

    path: str  # the path the bytes were read from (as matched by the glob, absolute)
    device: int  # st_dev
    inode: int  # st_ino
    offset: int  # file offset of data[0]
    # Whole lines only, each ending with b"\n" (possibly many lines). Only the very last line
    # of a file may lack it: read_file at EOF, or a tailed file closed for good (deleted or
    # inactive), whose line nobody can finish any more. The decoder judges it.
    data: bytes
    end: int  # offset just after data, or after the skipped over-long lines that follow it
    # (offset, first max_line bytes) of lines longer than max_line that were skipped
    oversized: tuple[tuple[int, bytes], ...] = ()


# ---------------------------------------------------------------------------------------------
# Line splitting, shared by the tailer and the one-shot reader


@dataclass(slots=True)
class _Piece:
    offset: int
    data: bytes
    end: int
    oversized: list[tuple[int, bytes]]


@dataclass(slots=True)
class _Cursor:
    """Where a file has been consumed up to; the buffer handed to _split starts at ``at``."""

    offset: int = 0  # start of the first line not handed out yet (what the caller stores)
    # While skipping an over-long line (which starts at ``offset``): its first max_line bytes,
    # and how far it has been scanned. Only the head is kept, so memory stays bounded.
    skip_head: bytes | None = None
    scan: int = 0

    @property
    def at(self) -> int:
        return self.scan if self.skip_head is not None else self.offset


def _take(buf: bytes | bytearray, a: int, b: int) -> bytes:
    if isinstance(buf, bytes):
        return buf if a == 0 and b == len(buf) else buf[a:b]
    with memoryview(buf) as mv:
        return mv[a:b].tobytes()


def _emit(
    out: list[_Piece], cur: _Cursor, data: bytes, end: int, big: tuple[int, bytes] | None
) -> None:
    """Append a piece, merging consecutive over-long lines into one piece."""
    if not data and big is not None and out and out[-1].end == cur.offset:
        out[-1].oversized.append(big)
        out[-1].end = end
    elif data or big is not None:
        out.append(_Piece(cur.offset, data, end, [big] if big is not None else []))
    cur.offset = end


def _finish_skip(cur: _Cursor, buf: bytes | bytearray, eof: bool, out: list[_Piece]) -> int | None:
    """Look for the newline ending the over-long line; return the index after it, or None."""
    assert cur.skip_head is not None
    nl = buf.find(b"\n")
    if nl < 0 and not eof:
        cur.scan += len(buf)
        return None
    stop = nl + 1 if nl >= 0 else len(buf)  # at EOF the line is complete without newline
    start = cur.offset
    head = cur.skip_head
    cur.skip_head = None
    _emit(out, cur, b"", cur.scan + stop, (start, head))
    return stop


def _split(cur: _Cursor, buf: bytes | bytearray, max_line: int, eof: bool) -> list[_Piece]:
    """Cut ``buf`` (the file's bytes from ``cur.at``) into pieces of whole lines.

    Advances ``cur``. A trailing partial line is left unconsumed unless ``eof``. A line longer
    than ``max_line`` is reported by its head and skipped, possibly across several calls.
    """
    out: list[_Piece] = []
    p = 0
    if cur.skip_head is not None:
        stop = _finish_skip(cur, buf, eof, out)
        if stop is None:
            return out
        p = stop
    start, n, window = p, len(buf), max_line + 1
    while True:
        # The last newline within max_line + 1 bytes: every line before it fits. Stepping by
        # windows instead of by lines keeps this at C speed for many short lines.
        q = buf.rfind(b"\n", p, p + window)
        if q >= 0:
            p = q + 1
            continue
        if p + window > n:
            break  # what is left is a partial line that may still fit
        # max_line + 1 bytes without a newline: the line starting at p is over-long.
        data = _take(buf, start, p)
        line_start, head = cur.offset + len(data), _take(buf, p, p + max_line)
        nl = buf.find(b"\n", p + window)
        if nl < 0 and not eof:
            # Its end is not here yet: hand out the lines before it, remember only its head.
            _emit(out, cur, data, line_start, None)
            cur.skip_head, cur.scan = head, line_start + n - p
            return out
        stop = nl + 1 if nl >= 0 else n
        _emit(out, cur, data, line_start + stop - p, (line_start, head))
        p = start = stop
    if eof:
        p = n  # a final line without newline is complete at EOF
    if p > start:
        _emit(out, cur, _take(buf, start, p), cur.offset + p - start, None)
    return out


def _chunks(path: str, key: Key, pieces: list[_Piece]) -> list[Chunk]:
    dev, ino = key
    return [Chunk(path, dev, ino, p.offset, p.data, p.end, tuple(p.oversized)) for p in pieces]


def _check_sizes(read_size: int, max_line: int) -> int:
    """Return the effective read size: it must hold a whole max_line line to make progress."""
    if read_size <= 0 or max_line <= 0:
        raise ValueError("read_size and max_line must be positive")
    return max(read_size, max_line + 1)


# ---------------------------------------------------------------------------------------------
# One-shot reading


def read_file(
    path: str, *, read_size: int = DEFAULT_READ_SIZE, max_line: int = DEFAULT_MAX_LINE
) -> Iterator[Chunk]:
    """Read a whole file (``"-"``: standard input, device = inode = 0) as chunks of lines.

    Unlike the tailer, a last line without newline is returned as-is: at EOF it is complete.
    """
    read_size = _check_sizes(read_size, max_line)
    if path == "-":
        stream: BinaryIO = getattr(sys.stdin, "buffer", sys.stdin)
        yield from _read_stream(stream, "-", (0, 0), read_size, max_line)
        return
    path = os.path.abspath(path)
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        yield from _read_stream(f, path, (st.st_dev, st.st_ino), read_size, max_line)


def _read_stream(
    stream: BinaryIO, path: str, key: Key, read_size: int, max_line: int
) -> Iterator[Chunk]:
    # read1 returns what a pipe has now instead of waiting for read_size bytes, so
    # `goflow2 | netmeta ingest -` is not delayed.
    read = getattr(stream, "read1", stream.read)
    cur = _Cursor()
    pending = bytearray()  # bytes from cur.at not consumed yet: a partial line (<= max_line)
    while True:
        data = read(read_size)
        eof = not data
        pending += data
        # Splitting only when a line may have ended (or grown too long) avoids rescanning a
        # partial line that arrives in many small reads.
        if eof or b"\n" in data or len(pending) > max_line:
            before = cur.at
            yield from _chunks(path, key, _split(cur, pending, max_line, eof))
            del pending[: cur.at - before]
        if eof:
            return


# ---------------------------------------------------------------------------------------------
# Tailing


@dataclass(slots=True)
class _Open:
    """A file being tailed, by its open descriptor (which survives renames and deletion)."""

    fd: int
    path: str  # last path the glob matched it under
    key: Key
    cur: _Cursor
    seen: int  # bytes known to be in the file; a size below this means it was truncated
    grew_at: float  # clock() when it last grew, for close_inactive
    matched: bool = True


class Tailer:
    """Follow every file matched by ``globs``; :meth:`poll` returns what is new.

    ``positions`` maps ``(device, inode)`` to the offset already durably stored; files without
    one are read from 0. A stored position beyond the file's size means the file was truncated
    while we were down: it is read from 0.

    Descriptors stay open while tailing so renamed or deleted files can be read to their end.
    A file the globs no longer match is closed once read to its end and either deleted or
    ``close_inactive`` seconds without growth; its identity then shows up in
    :meth:`forgotten` so the caller can delete its stored position (a later file reusing the
    inode must start at 0, not at the old offset).
    """

    def __init__(
        self,
        globs: Sequence[str],
        positions: Mapping[Key, int] | None = None,
        *,
        read_size: int = DEFAULT_READ_SIZE,
        max_line: int = DEFAULT_MAX_LINE,
        close_inactive: float = 300.0,
        exclude: Sequence[str] = ("*.gz",),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._globs = [os.path.abspath(os.path.expanduser(g)) for g in globs]
        self._exclude = tuple(exclude)  # fnmatch patterns; rotated .gz files are not lines
        self._stored: dict[Key, int] = dict(positions or {})
        self._read_size = _check_sizes(read_size, max_line)
        self._max_line = max_line
        self._close_inactive = close_inactive
        self._clock = clock
        self._open: dict[Key, _Open] = {}
        self._forgotten: list[Key] = []
        self._warned: set[str] = set()
        self.truncations = 0  # copytruncate or shrink events seen (lines may have been lost)
        self.behind = False  # the last poll left bytes unread (read_size): poll again at once

    def __enter__(self) -> Tailer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def open_files(self) -> dict[Key, str]:
        """Identities currently held open, with the path they were last matched under."""
        return {k: f.path for k, f in self._open.items()}

    def forgotten(self) -> list[Key]:
        """Identities closed for good since the last call (Filebeat's clean_removed).

        Apply the chunks of the same poll first: they may carry the file's last lines.
        """
        out, self._forgotten = self._forgotten, []
        return out

    def poll(self) -> list[Chunk]:
        """Read what is new in every file, at most read_size bytes per file. Never blocks."""
        now = self._clock()
        found = self._expand()
        for key, paths in found.items():
            f = self._open.get(key)
            if f is None:
                self._start(key, paths[0], now)
            elif f.path not in paths:
                f.path = paths[0]  # renamed to another matching name (goflow2.log.1)
        # A stored position whose file is nowhere to be found is stale.
        for key in [k for k in self._stored if k not in found]:
            del self._stored[key]
            self._forgotten.append(key)
        chunks: list[Chunk] = []
        self.behind = False
        for key, f in list(self._open.items()):
            f.matched = key in found
            chunks += self._follow(f, now)
        return chunks

    def close(self) -> None:
        for f in self._open.values():
            os.close(f.fd)
        self._open.clear()

    # -- internals -----------------------------------------------------------------------------

    def _expand(self) -> dict[Key, list[str]]:
        """Re-expand the globs: identity -> matched absolute paths, regular files only."""
        found: dict[Key, list[str]] = {}
        for pattern in self._globs:
            for path in sorted(glob.glob(pattern, recursive=True)):
                if any(fnmatch.fnmatch(path, x) for x in self._exclude):
                    continue
                try:
                    st = os.stat(path)
                except OSError:
                    continue  # vanished between listing and stat
                if stat.S_ISREG(st.st_mode):
                    found.setdefault((st.st_dev, st.st_ino), []).append(path)
        return found

    def _start(self, key: Key, path: str, now: float) -> None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError as e:
            if path not in self._warned:
                self._warned.add(path)
                log.warning("cannot open %s: %s", path, e)
            return
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != key:
            os.close(fd)  # replaced between stat and open; the next poll sees the new file
            return
        offset = self._stored.pop(key, 0)
        if st.st_size < offset:
            log.info("%s is shorter than its stored position: truncated, reading from 0", path)
            self.truncations += 1
            offset = 0
        self._warned.discard(path)
        self._open[key] = _Open(fd, path, key, _Cursor(offset), offset, now)

    def _follow(self, f: _Open, now: float) -> list[Chunk]:
        """Read the next bytes of one file; close it when it is finished."""
        st = os.fstat(f.fd)
        if st.st_size < f.seen:
            # copytruncate: the writer starts again at 0 in the same file.
            log.info("%s truncated (%d < %d), reading from 0", f.path, st.st_size, f.seen)
            self.truncations += 1
            f.cur, f.seen = _Cursor(), 0
        if st.st_size > f.seen:
            f.grew_at = now
            return self._read(f, st.st_size)
        if not f.matched and (st.st_nlink == 0 or now - f.grew_at >= self._close_inactive):
            return self._drop(f)
        return []

    def _read(self, f: _Open, size: int) -> list[Chunk]:
        at = f.cur.at
        buf = os.pread(f.fd, min(self._read_size, size - at), at)
        f.seen = at + len(buf)
        self.behind = self.behind or f.seen < size
        return _chunks(f.path, f.key, _split(f.cur, buf, self._max_line, eof=False))

    def _drop(self, f: _Open) -> list[Chunk]:
        """Close a finished file; a last line without newline will never be completed now."""
        at = f.cur.at
        rest = os.pread(f.fd, f.seen - at, at) if f.seen > at else b""
        chunks = _chunks(f.path, f.key, _split(f.cur, rest, self._max_line, eof=True))
        os.close(f.fd)
        del self._open[f.key]
        self._forgotten.append(f.key)
        return chunks
