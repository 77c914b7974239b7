"""Reading and tailing JSON-lines files: real files in tmp_path, bounded loops only."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path

import pytest

from netmeta.sources import files
from netmeta.sources.files import Chunk, Tailer, read_file

Key = tuple[int, int]


class Clock:
    """A hand-driven clock so close_inactive is tested without sleeping."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def key_of(path: Path) -> Key:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def lines_of(chunks: Iterable[Chunk]) -> list[bytes]:
    """Lines split on b"\\n" only (bytes.splitlines would also split on \\r)."""
    *whole, last = b"".join(c.data for c in chunks).split(b"\n")
    return [line + b"\n" for line in whole] + ([last] if last else [])


def check_chunk(c: Chunk, final: bool = False) -> None:
    """Invariants every chunk keeps: whole lines, end after data, over-long lines after data."""
    assert c.data == b"" or c.data.endswith(b"\n") or final
    assert c.end == c.offset + len(c.data) or c.oversized
    at = c.offset + len(c.data)
    for off, _head in c.oversized:
        assert off >= at
        at = off
    assert c.end > at or not c.oversized


def drain(t: Tailer, limit: int = 50, final: bool = False) -> list[Chunk]:
    """Poll until nothing new comes (a bounded number of times)."""
    out: list[Chunk] = []
    for _ in range(limit):
        got = t.poll()
        for c in got:
            check_chunk(c, final)
        if not got and not t.behind:
            return out
        out += got
    raise AssertionError("tailer did not settle")


def opened(path: Path) -> int:
    """A writer's descriptor (like goflow2's), kept across renames."""
    return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


# ---------------------------------------------------------------------------------------------
# Tailing


def test_partial_lines_wait_for_their_newline(tmp_path: Path) -> None:
    log = tmp_path / "goflow2.log"
    log.write_bytes(b"")
    with Tailer([str(log)]) as t:
        assert drain(t) == []
        append(log, b'{"a":1}\n{"b"')
        (c,) = drain(t)
        assert (c.path, c.offset, c.data, c.end) == (str(log), 0, b'{"a":1}\n', 8)
        assert (c.device, c.inode) == key_of(log)
        append(log, b":2")
        assert drain(t) == []  # still partial: the offset does not move past it
        append(log, b"}\n{")
        (c,) = drain(t)
        assert (c.offset, c.data, c.end) == (8, b'{"b":2}\n', 16)
        append(log, b'"c":3}\n\n')
        (c,) = drain(t)
        assert (c.offset, c.data) == (16, b'{"c":3}\n\n')  # an empty line is a line


def test_many_files_by_glob(tmp_path: Path) -> None:
    for i in range(5):
        (tmp_path / f"f{i}.log").write_bytes(b"".join(b"%d-%d\n" % (i, j) for j in range(3)))
    (tmp_path / "other.txt").write_bytes(b"not matched\n")
    (tmp_path / "old.log.gz").write_bytes(b"\x1f\x8b compressed\n")
    (tmp_path / "dir.log").mkdir()  # a directory matching the glob is ignored
    with Tailer([str(tmp_path / "*.log*")]) as t:
        got = drain(t)
        want = [b"%d-%d\n" % (i, j) for i in range(5) for j in range(3)]
        assert sorted(lines_of(got)) == want
        assert {c.path for c in got} == {str(tmp_path / f"f{i}.log") for i in range(5)}
        (tmp_path / "f9.log").write_bytes(b"late\n")  # appears later: picked up by the next poll
        append(tmp_path / "f0.log", b"more\n")
        assert sorted(lines_of(drain(t))) == [b"late\n", b"more\n"]


def test_read_size_bounds_each_poll(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes((b"x" * 99 + b"\n") * 100)
    with Tailer([str(log)], read_size=1000, max_line=200) as t:
        sizes = [len(c.data) for c in drain(t)]
    assert sizes == [1000] * 10


def test_rename_rotation_reads_both_files(tmp_path: Path) -> None:
    log, old = tmp_path / "goflow2.log", tmp_path / "goflow2.log.1"
    clock = Clock()
    writer = opened(log)
    try:
        os.write(writer, b"a1\na2\na3-par")
        with Tailer([str(log)], close_inactive=60, clock=clock) as t:
            assert lines_of(drain(t)) == [b"a1\n", b"a2\n"]
            old_key = key_of(log)
            os.rename(log, old)
            new = opened(log)
            # Lines keep arriving in the old file (the writer has not reopened yet) and the new.
            os.write(writer, b"tial\na4\n")
            os.write(new, b"b1\nb2\n")
            got = drain(t)
            by_file = {(c.device, c.inode): c for c in got}
            assert lines_of([by_file[old_key]]) == [b"a3-partial\n", b"a4\n"]
            assert by_file[old_key].path == str(log)  # last matched name: .1 is not matched
            assert lines_of([by_file[key_of(log)]]) == [b"b1\n", b"b2\n"]
            assert by_file[key_of(log)].offset == 0
            # The renamed file stays open while it may still grow ...
            os.write(writer, b"a5\n")
            clock.now = 59
            assert lines_of(drain(t)) == [b"a5\n"]
            clock.now = 100
            assert drain(t) == []
            assert old_key in t.open_files
            # ... and is closed after close_inactive without growth.
            clock.now = 160
            assert drain(t) == []
            assert list(t.open_files) == [key_of(log)]
            assert t.forgotten() == [old_key]
            os.write(new, b"b3\n")
            assert lines_of(drain(t)) == [b"b3\n"]
            os.close(new)
    finally:
        os.close(writer)


def test_rename_to_a_matched_name_updates_the_path(tmp_path: Path) -> None:
    log = tmp_path / "goflow2.log"
    log.write_bytes(b"a1\n")
    with Tailer([str(tmp_path / "goflow2.log*")], close_inactive=0) as t:
        drain(t)
        key = key_of(log)
        log.rename(tmp_path / "goflow2.log.1")
        append(tmp_path / "goflow2.log.1", b"a2\n")
        (c,) = drain(t)
        assert (c.path, c.data, c.offset) == (str(tmp_path / "goflow2.log.1"), b"a2\n", 3)
        assert key in t.open_files  # still matched: not closed even with close_inactive=0


def test_deleted_file_is_read_to_its_end_then_closed(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"1\n")
    with Tailer([str(log)]) as t:  # close_inactive is long: deletion alone closes it
        drain(t)
        key = key_of(log)
        with open(log, "ab") as w:
            w.write(b"2\n3")
            log.unlink()
            w.write(b"\n4-no-newline")
        got = drain(t, final=True)
        # Nobody can finish the last line of a deleted file: it is handed out as complete.
        assert lines_of(got) == [b"2\n", b"3\n", b"4-no-newline"]
        assert got[-1].end == 18
        assert t.open_files == {}
        assert t.forgotten() == [key]


def test_copytruncate_reads_again_from_zero(tmp_path: Path) -> None:
    log = tmp_path / "goflow2.log"
    log.write_bytes(b"old-1\nold-2\nold-3\n")
    with Tailer([str(log)]) as t:
        drain(t)
        with open(log, "r+b") as f:  # logrotate copytruncate
            (tmp_path / "goflow2.log.1").write_bytes(f.read())
            f.truncate(0)
        append(log, b"new-1\n")
        got = drain(t)
        assert [(c.offset, c.data) for c in got] == [(0, b"new-1\n")]
        assert t.truncations == 1
        append(log, b"new-2\n")
        assert [(c.offset, c.data) for c in drain(t)] == [(6, b"new-2\n")]


def test_truncation_of_a_partial_line_is_detected(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"1\n22222")  # seen up to 7 bytes, consumed 2
    with Tailer([str(log)]) as t:
        drain(t)
        log.write_bytes(b"333\n")  # 4 bytes: above the consumed offset, below what was seen
        assert [(c.offset, c.data) for c in drain(t)] == [(0, b"333\n")]


def test_stored_position_beyond_the_size_means_truncated(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"x\ny\n")
    with Tailer([str(log)], {key_of(log): 100}) as t:
        got = drain(t)
        assert [(c.offset, c.data) for c in got] == [(0, b"x\ny\n")]
        assert t.truncations == 1


def test_stale_positions_are_forgotten(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"x\n")
    with Tailer([str(log)], {key_of(log): 2, (1, 2): 5}) as t:
        assert drain(t) == []
        assert t.forgotten() == [(1, 2)]


def test_restart_from_positions_is_exactly_once(tmp_path: Path) -> None:
    """Restarts, crashes before commit, rotations: every line comes out exactly once."""
    rng = random.Random(7)
    log = tmp_path / "goflow2.log"
    pattern = str(tmp_path / "goflow2.log*")  # rotated names too, so a restart finds their tail
    written: list[bytes] = []
    received: list[bytes] = []
    store: dict[Key, int] = {}  # what the caller committed together with its events
    seq, pending = 0, b""
    writer = opened(log)
    try:
        for restart in range(15):
            t = Tailer([pattern], dict(store), read_size=300, max_line=100)
            for step in range(rng.randint(1, 8)):
                out = pending  # the writer emits lines, maybe stopping halfway through one
                for _ in range(rng.randint(0, 6)):
                    line = b'{"seq":%d,"pad":"%s"}\n' % (seq, b"p" * rng.randint(0, 40))
                    written.append(line)
                    out += line
                    seq += 1
                cut = rng.randint(0, len(out))
                os.write(writer, out[:cut])
                pending = out[cut:]
                if restart % 3 == 2 and step == 0:
                    # Rename rotation: the writer finishes its line in the old file first.
                    os.rename(log, tmp_path / f"goflow2.log.{restart}")
                    os.write(writer, pending)
                    os.close(writer)
                    writer, pending = opened(log), b""
                chunks = t.poll()
                if rng.random() < 0.25:
                    break  # crash: this poll's events and positions are never committed
                for c in chunks:
                    check_chunk(c)
                    store[(c.device, c.inode)] = c.end
                received += lines_of(chunks)
                for key in t.forgotten():
                    store.pop(key, None)
            t.close()
        os.write(writer, pending)
        with Tailer([pattern], dict(store), read_size=300, max_line=100) as t:
            received += lines_of(drain(t))
    finally:
        os.close(writer)
    assert len(list(tmp_path.glob("goflow2.log.*"))) == 5
    assert sorted(received) == sorted(written)
    assert len(received) == len(set(received)) == seq > 50


# ---------------------------------------------------------------------------------------------
# Over-long lines and binary data


def test_ten_megabyte_line_is_skipped_with_bounded_reads(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    big = b"{" + b"y" * (10 << 20) + b"}\n"
    content = b"first\n" + big + b"last\n"
    log.write_bytes(content)
    with Tailer([str(log)]) as t:  # default sizes: 4 MiB reads, 1 MiB lines
        polls = [t.poll() for _ in range(6)]
    got = [c for p in polls for c in p]
    assert lines_of(got) == [b"first\n", b"last\n"]
    assert max(len(c.data) for c in got) <= 4 << 20
    oversized = [o for c in got for o in c.oversized]
    assert oversized == [(6, big[: 1 << 20])]
    assert sum(len(p) for p in polls[3:]) == 0  # 12 MiB in 4 MiB polls: done in three
    assert got[-1].end == len(content)


def test_oversized_line_growing_across_polls_and_restart(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_bytes(b"ok\n" + b"z" * 250)
    store: dict[Key, int] = {}
    with Tailer([str(log)], read_size=100, max_line=64) as t:
        for c in drain(t):
            store[(c.device, c.inode)] = c.end
        assert store == {key_of(log): 3}  # the over-long line is not committed until it ends
    append(log, b"z" * 100 + b"\nafter\n")
    with Tailer([str(log)], store, read_size=100, max_line=64) as t:
        got = drain(t)
    assert [o for c in got for o in c.oversized] == [(3, b"z" * 64)]  # once, after the restart
    assert lines_of(got) == [b"after\n"]
    assert got[-1].end == log.stat().st_size


def test_random_lines_against_a_naive_splitter(tmp_path: Path) -> None:
    rng = random.Random(3)
    max_line = 50
    sizes = [rng.choice([0, 5, 49, 50, 51, 300]) for _ in range(300)]
    lines = [rng.randbytes(n).replace(b"\n", b"-") + b"\n" for n in sizes]
    content = b"".join(lines)
    expected_ok, expected_big, at = [], [], 0
    for line in lines:
        if len(line) - 1 > max_line:
            expected_big.append((at, line[:max_line]))
        else:
            expected_ok.append(line)
        at += len(line)
    log = tmp_path / "r.log"
    log.write_bytes(b"")
    got: list[Chunk] = []
    with Tailer([str(log)], read_size=64, max_line=max_line) as t:
        pos = 0
        while pos < len(content):
            step = rng.randint(1, 400)
            append(log, content[pos : pos + step])
            pos += step
            got += drain(t, limit=100)
    for chunks in (got, list(read_file(str(log), read_size=64, max_line=max_line))):
        for c in chunks:
            check_chunk(c)
        assert lines_of(chunks) == expected_ok
        assert [o for c in chunks for o in c.oversized] == expected_big
        assert [c.offset for c in chunks[1:]] == [c.end for c in chunks[:-1]]  # no gap


def test_binary_file_is_just_bytes(tmp_path: Path) -> None:
    rng = random.Random(5)
    blob = bytes(rng.getrandbits(8) for _ in range(200_000)) + b"\n"
    path = tmp_path / "garbage.log"
    path.write_bytes(blob)
    with Tailer([str(path)], max_line=1 << 20) as t:
        tailed = drain(t)
    read = list(read_file(str(path)))
    for chunks in (tailed, read):
        assert b"".join(c.data for c in chunks) == blob  # every byte handed on, none lost


# ---------------------------------------------------------------------------------------------
# One-shot reading


def test_read_file_returns_a_final_line_without_newline(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"1\n2\n3")
    chunks = list(read_file(str(path)))
    assert b"".join(c.data for c in chunks) == b"1\n2\n3"
    assert (chunks[0].offset, chunks[-1].end) == (0, 5)
    assert {(c.path, c.device, c.inode) for c in chunks} == {(str(path), *key_of(path))}
    path.write_bytes(b"")
    assert list(read_file(str(path))) == []


def test_read_file_ten_megabyte_final_line(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"a\n" + b"q" * (10 << 20))
    chunks = list(read_file(str(path)))
    assert lines_of(chunks) == [b"a\n"]
    assert [o for c in chunks for o in c.oversized] == [(2, b"q" * (1 << 20))]
    assert chunks[-1].end == 2 + (10 << 20)


def test_read_stdin_from_a_real_pipe(monkeypatch: pytest.MonkeyPatch) -> None:
    r, w = os.pipe()
    payload = b"".join(b'{"n":%d}\n' % i for i in range(20_000)) + b"tail"  # > a pipe buffer

    def feed() -> None:
        with os.fdopen(w, "wb") as f:
            for i in range(0, len(payload), 7000):
                f.write(payload[i : i + 7000])
                f.flush()

    writer = threading.Thread(target=feed)
    writer.start()
    with os.fdopen(r, "r") as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        chunks = list(read_file("-", read_size=4096, max_line=1024))
    writer.join(timeout=10)
    assert {(c.path, c.device, c.inode) for c in chunks} == {("-", 0, 0)}
    assert b"".join(c.data for c in chunks) == payload
    assert [c.offset for c in chunks[1:]] == [c.end for c in chunks[:-1]]


def test_read_stdin_in_a_subprocess(tmp_path: Path) -> None:
    code = (
        "import json\n"
        "from netmeta.sources.files import read_file\n"
        "print(json.dumps([[c.offset, c.end, c.data.decode()] for c in read_file('-')]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], input=b"x\ny\nz", capture_output=True, timeout=15, check=True
    )
    assert json.loads(proc.stdout) == [[0, 4, "x\ny\n"], [4, 5, "z"]]


def test_sizes_are_validated() -> None:
    with pytest.raises(ValueError):
        Tailer([], max_line=0)
    assert files._check_sizes(10, 100) == 101  # a read must hold a whole line
