"""`netmeta ingest --format packetbeat|gelf` on real files, through the Beats and GELF
worker formats: printed or stored, bad lines stored as failures with their original."""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from .test_beats_input import packetbeat_events
from .test_cli import run
from .test_gelf import seed_message


def _packetbeat_file(tmp: Path) -> Path:
    """As Packetbeat's file output writes it (one event a line, @metadata included), with
    a blank line and two bad ones among them."""
    events = packetbeat_events()
    path = tmp / "packetbeat.ndjson"
    path.write_bytes(orjson.dumps(events[0]) + b"\n\n" + b'{"type": "dns", "trunc\n'
                     + orjson.dumps(events[1]) + b"\n[1, 2]\n" + orjson.dumps(events[2]))
    return path


def test_ingest_packetbeat_stdout(tmp_path: Path) -> None:
    path = _packetbeat_file(tmp_path)
    p = run("ingest", "--format", "packetbeat", "--stdout", "-d", str(tmp_path / "d"),
            str(path))
    docs = [json.loads(line) for line in p.stdout.splitlines()]
    assert [d["event"]["dataset"] for d in docs] == [
        "network_traffic.dns", "network_traffic.flow", "network_traffic.http"]
    assert all(d["_index"] == "packetbeat-8.17.0" and "@metadata" not in d for d in docs)
    assert b"3 events printed, 2 failures" in p.stderr
    assert not (tmp_path / "d" / "netmeta.duckdb").exists()


def test_ingest_packetbeat_stored_with_failures(tmp_path: Path) -> None:
    path = _packetbeat_file(tmp_path)
    data = str(tmp_path / "d")
    p = run("ingest", "--format", "packetbeat", "-d", data, str(path))
    assert b"3 events stored, 2 failures" in p.stderr
    p = run("search", "-d", data, "--json", "--limit", "10",
            "_input:packetbeat and _index:packetbeat-8.17.0")
    docs = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(docs) == 3 and {d["agent"]["type"] for d in docs} == {"packetbeat"}
    assert len(run("search", "-d", data, "--json", "gim_event_type_code:120500"
                   ).stdout.splitlines()) == 1  # categorized as the Beats input's events
    fails = [json.loads(line) for line in
             run("search", "-d", data, "--failures", "--json").stdout.splitlines()]
    assert sorted(f["event.original"] for f in fails) == ['[1, 2]', '{"type": "dns", "trunc']
    offset = len(orjson.dumps(packetbeat_events()[0])) + 2
    assert any(f"{path} at byte {offset}: not JSON" in f["error.message"] for f in fails)


def test_ingest_gelf(tmp_path: Path) -> None:
    path = tmp_path / "gelf.log"
    bad = b'{"version": "1.1", "short_message": 5}'
    path.write_bytes(seed_message() + b"\n" + bad + b"\nnot json at all\n")
    p = run("ingest", "--format", "gelf", "--stdout", str(path))
    docs = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(docs) == 1 and docs[0]["dns"]["question"]["name"]
    assert b"1 events printed, 2 failures" in p.stderr
    data = str(tmp_path / "d")
    run("ingest", "--format", "gelf", "-d", data, str(path))
    p = run("search", "-d", data, "--json", "_input:gelf and dns.question.name:*")
    assert len(p.stdout.splitlines()) == 1
    fails = [json.loads(line) for line in
             run("search", "-d", data, "--failures", "--json").stdout.splitlines()]
    assert sorted(f["event.original"] for f in fails) == sorted([bad.decode(), "not json at all"])
    assert all(f"{path} at byte" in f["error.message"] for f in fails)
    # stdin is not a GELF file here, but it is allowed, as for goflow2
    p = run("ingest", "--format", "gelf", "--stdout", "-", input=seed_message() + b"\n")
    assert len(p.stdout.splitlines()) == 1
