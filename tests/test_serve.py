"""`netmeta serve` end to end: real process, real files, real HTTP, real DuckDB file."""

from __future__ import annotations

import signal
from pathlib import Path

import duckdb

from .conftest import goflow2_line
from .servers import Serve


def _stored_offsets(data: Path) -> tuple[int, int, int]:
    """Events stored, distinct (inode, offset) among them, failures: read from the files the
    DuckDB catalog lists."""
    con = duckdb.connect(str(data / "netmeta.duckdb"), read_only=True)
    try:
        files = [str(data / p) for p, in con.execute("SELECT path FROM event_files").fetchall()]
        n, distinct = con.execute(
            'SELECT count(*), count(DISTINCT ("log.file.inode", "log.offset")) '
            "FROM read_parquet(?)", [files]).fetchone()
        fails = con.execute("SELECT count(*) FROM failures").fetchone()[0]
        return int(n), int(distinct), int(fails)
    finally:
        con.close()


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def test_sigkill_during_ingest_then_restart_stores_every_line_exactly_once(tmp_path: Path):
    n = 60_000
    log = tmp_path / "flows" / "goflow2.log"
    log.parent.mkdir()
    log.write_text("".join(goflow2_line(i) + "\n" for i in range(n)))
    serve = Serve(tmp_path, [str(log.parent / "*.log*")], batch_size=2000, read_size=65536,
                  queue_size=2)
    with serve:
        serve.wait_for(lambda: serve.stored() > 0, "a first batch to be stored")
        before = serve.stored()
        assert before < n, "ingest finished before the kill; make the file bigger"
        workers = _children(serve.proc.pid)
        assert workers, "serve runs its pipeline workers as child processes"
        assert serve.stop(signal.SIGKILL) == -signal.SIGKILL
        # orphaned workers notice and exit instead of waiting for work forever
        serve.wait_for(lambda: not any(Path(f"/proc/{w}").exists() for w in workers),
                       "the killed serve's workers to exit", timeout=15)
    with serve:
        serve.wait_for(lambda: serve.total() == n, f"{n} events", timeout=120)
        assert serve.stop(signal.SIGTERM) == 0
    stored, distinct, fails = _stored_offsets(serve.data)
    assert (stored, distinct, fails) == (n, n, 0)


def test_tail_follows_rotation_and_counts_bad_lines(tmp_path: Path):
    logdir = tmp_path / "flows"
    logdir.mkdir()
    log = logdir / "goflow2.log"
    log.write_text("".join(goflow2_line(i) + "\n" for i in range(100)))
    with Serve(tmp_path, [str(logdir / "goflow2.log*")]) as serve:
        serve.wait_for(lambda: serve.total() == 100, "the first 100 lines")
        with log.open("a") as f:  # writer still has the old file open during rotation
            f.write("".join(goflow2_line(i) + "\n" for i in range(100, 150)))
            log.rename(logdir / "goflow2.log.1")
            f.write("".join(goflow2_line(i) + "\n" for i in range(150, 160)))
        bad = ["not json", '{"src_port": "abc"}', "x" * (2 << 20), "\x00\x01\xff".encode(
            "latin-1").decode("latin-1")]
        with log.open("w") as f:
            f.write("".join(goflow2_line(i) + "\n" for i in range(160, 200)))
            f.write("\n".join(bad) + "\n")
            f.write(goflow2_line(200) + "\n")
        serve.wait_for(lambda: serve.total() == 201, "all 201 good lines")
        failures = serve.get("/api/failures")["failures"]
        assert len(failures) == 4
        messages = " | ".join(f["error.message"] for f in failures)
        assert "invalid JSON" in messages and "src_port" in messages
        assert "longer than" in messages
        metrics = serve.get("/metrics")
        assert 'netmeta_input_failures_total{input="goflow2"} 4.0' in metrics
        assert 'netmeta_input_events_total{input="goflow2"} 201.0' in metrics
        assert 'netmeta_stream_events_stored_total{stream="goflow2"} 201.0' in metrics
        assert "netmeta_queue_depth" in metrics
        # search and top through the CLI while serve owns the store (answered over HTTP)
        import subprocess

        from .servers import NETMETA
        out = subprocess.run([NETMETA, "search", "--config", str(serve.config), "--json",
                              "--limit", "1000", "source.ip:10.0.0.0/24 and sflow.bytes < 100"],
                             capture_output=True, text=True, check=True).stdout
        assert len(out.splitlines()) == 40  # bytes 60..99 among 0..200 -> i in 0..39
        out = subprocess.run([NETMETA, "top", "--config", str(serve.config), "--json",
                              "destination.ip"], capture_output=True, text=True,
                             check=True).stdout
        assert out.strip() == '{"key":"81.2.69.194","value":201}'
        p = subprocess.run([NETMETA, "ingest", "--config", str(serve.config), "--format",
                            "goflow2", str(logdir / "goflow2.log.1")], capture_output=True)
        assert p.returncode == 1
        assert f"in use by netmeta serve (pid {serve.proc.pid})" in p.stderr.decode()
        assert serve.stop(signal.SIGTERM) == 0
    stored, distinct, fails = _stored_offsets(serve.data)
    assert stored == distinct == 201 and fails == 4


def test_a_port_in_use_is_a_clear_error(tmp_path: Path):
    import socket
    import subprocess

    from .servers import NETMETA
    serve = Serve(tmp_path, [str(tmp_path / "*.log")])
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", serve.port))
        busy.listen()
        p = subprocess.run([NETMETA, "serve", "--config", str(serve.config)],
                           capture_output=True, timeout=60)
    assert p.returncode == 1
    assert f"cannot listen on 127.0.0.1:{serve.port}" in p.stderr.decode()
