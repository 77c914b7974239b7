"""The netmeta command as a user runs it (real subprocesses, real store files)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from .conftest import PEER, goflow2_line
from .servers import NETMETA

SAMPLE = PEER / "goflow2" / "pipeline" / "test-goflow2-sflow-sample.log"


def run(*args: str, input: bytes | None = None, ok: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run([NETMETA, *args], input=input, capture_output=True)
    if ok:
        assert p.returncode == 0, p.stderr.decode()
    return p


def test_ingest_stdout_prints_nested_ecs_documents_in_file_order(tmp_path: Path):
    p = run("ingest", "--format", "goflow2", "--stdout", "-d", str(tmp_path), str(SAMPLE))
    docs = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(docs) == 12
    assert [d["event"]["original"] for d in docs] == SAMPLE.read_text().splitlines()
    assert docs[0]["observer"]["ingress"]["interface"]["id"] == "563"
    assert docs[0]["network"]["bytes"] == 70000 and docs[0]["sflow"]["sample_rate"] == 1000
    assert b"12 events printed, 0 failures" in p.stderr
    assert not (tmp_path / "netmeta.duckdb").exists()  # a dry run stores nothing


def test_ingest_from_stdin(tmp_path: Path):
    data = "".join(goflow2_line(i) + "\n" for i in range(5)).encode()
    p = run("ingest", "--format", "goflow2", "--stdout", "-", input=data)
    docs = [json.loads(line) for line in p.stdout.splitlines()]
    assert [d["sflow"]["sequence_num"] for d in docs] == [0, 1, 2, 3, 4]
    assert all(d["input"]["type"] == "stdin" and "file" not in d["log"] for d in docs)


def test_ingest_search_top_and_failures(tmp_path: Path):
    data = tmp_path / "d"
    bad = tmp_path / "bad.log"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary\xff\n" + b"{" * (10 << 20) + b"\n"
                    + goflow2_line(1).encode() + b"\n" + b'{"src_addr": 5, "dst_port": []}\n')
    run("ingest", "--format", "goflow2", "-d", str(data), str(SAMPLE), str(bad))
    p = run("search", "-d", str(data), "--json", "--limit", "100",
            'destination.port:443 and not source.ip:216.160.83.0/24')
    docs = [json.loads(line) for line in p.stdout.splitlines()]
    # Kibana semantics: `not source.ip:...` also matches the event without a source.ip
    assert sorted(d["source"].get("ip", "-") for d in docs) == \
        ["-", "10.0.0.1"] + ["81.2.69.193"] * 5
    p = run("search", "-d", str(data), "--fields", "source.ip,network.bytes", "--json",
            "network.transport:esp")
    assert json.loads(p.stdout) == {"source.ip": "216.160.83.59", "network.bytes": 71000}
    p = run("search", "-d", str(data), "--limit", "3", "source.address:81.2.69.193")
    assert b"3 of 6 events" in p.stdout
    p = run("top", "-d", str(data), "source.ip", "--by", "network.bytes", "--json",
            "--query", "observer.ip:*")
    top = [json.loads(line) for line in p.stdout.splitlines()]
    assert top[0] == {"key": "81.2.69.193", "value": 9248000}
    p = run("search", "-d", str(data), "--failures", "--json")
    fails = [json.loads(line) for line in p.stdout.splitlines()]
    assert len(fails) == 5  # 3 binary lines, the 10 MB line, the line of wrong types
    assert {f["log.file.path"] for f in fails} == {str(bad)}
    msgs = sorted(f["error.message"] for f in fails)
    assert any("longer than" in m for m in msgs)
    assert any("invalid JSON" in m for m in msgs)
    assert "goflow2: field 'dst_port' expects an integer, got []" in msgs
    # time range: the sample's flows are from 2024-07-31 00:00:59.314 to .483
    p = run("search", "-d", str(data), "--from", "now-1h", "--limit", "1")
    assert b"0 of 0 events" in p.stdout
    p = run("search", "-d", str(data), "--from", "2024-07-31T00:00:59.400Z", "--to",
            "2024-07-31T00:01:00Z", "--limit", "1")
    assert b"1 of 9 events" in p.stdout
    p = run("search", "-d", str(data), "destination.port:abc", ok=False)
    assert p.returncode == 1 and b"destination.port expects a number" in p.stderr


def test_data_dir_overrides_config_and_instances_are_independent(tmp_path: Path):
    cfg = tmp_path / "netmeta.yml"
    cfg.write_text(f"data_dir: {tmp_path / 'from_config'}\n")
    run("ingest", "--format", "goflow2", "-c", str(cfg), str(SAMPLE))
    run("ingest", "--format", "goflow2", "-c", str(cfg), "-d", str(tmp_path / "other"),
        str(SAMPLE))
    run("ingest", "--format", "goflow2", "-c", str(cfg), "-d", str(tmp_path / "other"),
        str(SAMPLE))
    one = run("search", "-c", str(cfg), "--limit", "1").stdout
    two = run("search", "-c", str(cfg), "-d", str(tmp_path / "other"), "--limit", "1").stdout
    assert b"1 of 12 events" in one and b"1 of 24 events" in two


def test_check_config_names_the_key(tmp_path: Path):
    repo_cfg = Path(__file__).resolve().parents[1] / "netmeta.yml"
    assert b"configuration OK" in run("check-config", "-c", str(repo_cfg)).stdout
    cases = {
        "pipeline:\n  workers: many\n": "key pipeline.workers: Expected `int`, got `str`",
        "pipeline:\n  wrokers: 2\n": "key pipeline: Object contains unknown field `wrokers`",
        "inputs:\n  g:\n    type: goflow2\n    paths: [x]\n    index_set: nope\n":
            "key inputs.g.index_set: no index set 'nope'",
        "streams:\n  - name: s\n    rule: 'destination.port >= abc'\n":
            "key streams[0].rule: invalid KQL",
        "enrich:\n  geoip:\n    city_db: /nonexistent.mmdb\n":
            "key enrich.geoip.city_db: no such file: /nonexistent.mmdb",
        "http:\n  port: 70000\n": "key http.port: 70000 is not a TCP port",
        "enrich:\n  internal_networks: [10.0.0.0/33]\n": "key enrich.internal_networks",
    }
    for text, message in cases.items():
        cfg = tmp_path / "bad.yml"
        cfg.write_text(text)
        p = run("check-config", "-c", str(cfg), ok=False)
        assert p.returncode == 1 and message in p.stderr.decode(), (text, p.stderr)
