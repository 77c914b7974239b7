"""UDP inputs end to end: NetFlow v9 from several exporters over several ordered workers,
sFlow, loss accounting, options data (interface names, sampling) and input defaults."""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import zlib
from pathlib import Path

import orjson
import pytest

from netmeta.config import ConfigError, load

from .servers import NETMETA, Serve
from .test_decode_netflow import a_set, specs, v9_datagram
from .test_decode_sflow import IF_COUNTER_NAMES as IF_NAMES
from .test_decode_sflow import (
    counters_sample,
    datagram,
    extended_switch,
    flow_sample,
    if_counters,
    sampled_ip,
)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric(text: str, name: str, **labels: str) -> float | None:
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


# Two layouts under the same template id: an exporter's data decoded with another's
# template would come out wrong (ports in the address columns), not fail.
LAYOUT_A = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (1, 4)]
LAYOUT_B = [(7, 2), (11, 2), (8, 4), (12, 4), (4, 1), (1, 4)]


def v9_template(layout: list[tuple[int, int]]) -> bytes:
    return a_set(0, struct.pack(">HH", 256, len(layout)) + specs(layout))


def v9_data(layout: list[tuple[int, int]], host: int, n: int) -> bytes:
    rows = b""
    for i in range(n):
        src, dst = bytes([10, 1, host, i]), bytes([192, 0, 2, host])
        if layout is LAYOUT_A:
            rows += struct.pack(">4s4sHHBI", src, dst, 2000 + i, 443, 6, 1000 + i)
        else:
            rows += struct.pack(">HH4s4sBI", 2000 + i, 443, src, dst, 6, 1000 + i)
    return a_set(256, rows)


EXPORTERS = ["127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]


def test_netflow_exporters_over_two_ordered_workers_with_loss(tmp_path: Path) -> None:
    port = free_udp_port()
    # the exporters land on both workers (the same rule as Pipeline.shard_of)
    assert {zlib.crc32(e.encode()) % 2 for e in EXPORTERS} == {0, 1}
    serve = Serve(tmp_path, [str(tmp_path / "none" / "*.log")], workers=2,
                  inputs={"nf": {"type": "netflow", "listen": "127.0.0.1", "port": port}})
    sent = 0
    with serve:
        socks = []
        for k, host in enumerate(EXPORTERS):
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            tx.bind((host, 0))
            socks.append(tx)
            layout = LAYOUT_A if k % 2 == 0 else LAYOUT_B
            tx.sendto(v9_datagram(v9_template(layout), sequence=0), ("127.0.0.1", port))
        serve.wait_for(lambda: (metric(serve.get("/metrics") or "", "netmeta_input_datagrams_total",
                                       input="nf") or 0) >= 4, "the templates to arrive")
        for k, tx in enumerate(socks):
            layout = LAYOUT_A if k % 2 == 0 else LAYOUT_B
            for seq in range(1, 6):
                if k == 0 and seq == 3:
                    continue  # exporter 0 loses export packet 3
                tx.sendto(v9_datagram(v9_data(layout, k + 2, 3), sequence=seq),
                          ("127.0.0.1", port))
                sent += 3
        serve.wait_for(lambda: serve.total("event.action:netflow_flow") == sent, f"{sent} flows")
        # every flow decoded with its own exporter's template
        assert serve.total("destination.port:443 and source.ip:10.1.0.0/16") == sent
        for k in range(len(EXPORTERS)):
            assert serve.total(f"destination.ip:192.0.2.{k + 2}") == (12 if k == 0 else 15)
        text = serve.get("/metrics")
        for host in EXPORTERS:
            labels = {"input": "nf", "exporter": host, "protocol": "netflow_v9"}
            assert metric(text, "netmeta_exporter_datagrams_total", **labels) == (
                5 if host == EXPORTERS[0] else 6)
            assert metric(text, "netmeta_exporter_lost", **labels) == (
                1 if host == EXPORTERS[0] else 0)
        for tx in socks:
            tx.close()
    state = tmp_path / "data" / "state"
    assert (state / "netflow-templates.json").is_file()
    assert (state / "netflow-templates-1.json").is_file()


def _sflow_datagram(seq: int, rate: int = 512) -> bytes:
    flow = flow_sample([sampled_ip(100, 17, "10.9.0.1", "10.9.0.2", 5353, 53, 0, 0),
                        extended_switch(20, 0, 30, 0)], seq=seq, rate=rate)
    values = {k: i for i, k in enumerate(IF_NAMES)}
    values["if_index"] = 4
    counters = counters_sample([if_counters(values)], seq=seq)
    return datagram("10.9.9.9", [flow, counters], seq=seq)


def test_sflow_over_udp_with_counters_and_loss(tmp_path: Path) -> None:
    port = free_udp_port()
    serve = Serve(tmp_path, [str(tmp_path / "none" / "*.log")],
                  inputs={"sf": {"type": "sflow", "listen": "127.0.0.1", "port": port,
                                 "sampling": {"rates": {"10.9.9.9": 1000}}}})
    with serve, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        tx.bind(("127.0.0.1", 0))
        for seq in (1, 2, 4, 5):  # datagram 3 lost
            tx.sendto(_sflow_datagram(seq), ("127.0.0.1", port))
        serve.wait_for(lambda: serve.total("input.type:sflow") == 8, "4 flows and 4 counters")
        flows = serve.get("/api/search", q="event.action:SFLOW_5", limit=10)["hits"]
        assert len(flows) == 4
        f = flows[0]
        # the configured rate replaced the agent's 512; Elastic's renormalization
        assert f["sflow"]["sample_rate"] == 1000 and f["network"]["packets"] == 1000
        assert f["network"]["bytes"] == 100_000 and f["network"]["transport"] == "udp"
        assert f["observer"]["ingress"]["vlan"]["id"] == "20"
        assert f["network"]["community_id"].startswith("1:")
        counters = serve.get("/api/search", q="event.kind:metric", limit=10)["hits"]
        assert {c["observer"]["ingress"]["interface"]["id"] for c in counters} == {"4"}
        text = serve.get("/metrics")
        labels = {"input": "sf", "exporter": "10.9.9.9", "protocol": "sflow"}
        assert metric(text, "netmeta_exporter_lost", **labels) == 1
        assert metric(text, "netmeta_exporter_records_total", **labels) == 8


def test_sflow_capture_ingest_and_renormalize_off(tmp_path: Path) -> None:
    raw = tmp_path / "one.dat"
    raw.write_bytes(_sflow_datagram(1))
    cfg = tmp_path / "netmeta.yml"
    cfg.write_text("inputs:\n  sf:\n    type: sflow\n    sampling: {renormalize: false}\n")
    p = subprocess.run([NETMETA, "ingest", "--format", "sflow", "--input", "sf", "-c", str(cfg),
                        "--stdout", "--exporter", "192.0.2.1:6343", str(raw)],
                       check=True, capture_output=True)
    docs = [orjson.loads(x) for x in p.stdout.splitlines()]
    assert [d["event"]["kind"] for d in docs] == ["event", "metric"]
    assert docs[0]["network"]["bytes"] == 100 and docs[0]["network"]["packets"] == 1
    assert docs[0]["sflow"]["sample_rate"] == 512


def test_input_defaults_and_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "netmeta.yml"
    cfg.write_text("inputs:\n  a: {type: netflow}\n  b: {type: ipfix}\n  c: {type: sflow}\n"
                   "  d: {type: goflow2, paths: [x]}\n")
    c = load(cfg)
    assert [c.inputs[k].listen_port for k in "abc"] == [2055, 4739, 6343]
    assert c.inputs["a"].tag_list == [] and "forwarded" in c.inputs["d"].tag_list
    for body, key in [
        ("  a: {type: sflow, sampling: {rates: {nohost: 10}}}\n", "inputs.a.sampling.rates"),
        ("  a: {type: sflow, sampling: {rates: {10.0.0.1: 0}}}\n", "inputs.a.sampling.rates"),
        ("  a: {type: netflow, rcvbuf: 10}\n", "inputs.a.rcvbuf"),
        ("  a: {type: netflow, custom_definitions: [/nonexistent.yml]}\n",
         "inputs.a.custom_definitions[0]"),
        ("  a: {type: netflow, port: 70000}\n", "inputs.a.port"),
        ("  a: {type: syslog, tls: {cert: /etc/hostname, key: /etc/hostname}}\n",
         "inputs.a.tls"),  # TLS over UDP
        ("  a: {type: syslog, protocol: tcp, tls: {cert: /etc/hostname}}\n", "inputs.a.tls"),
        ("  a: {type: gigamon_ami, http: {tls: {cert: /nonexistent, key: /nonexistent}}}\n",
         "inputs.a.http.tls.cert"),
        ("  a: {type: gigamon_ami, http: {secret: {header: X-S}}}\n", "inputs.a.http.secret"),
        ("  a: {type: gigamon_ami, http: {path: ami}}\n", "inputs.a.http.path"),
    ]:
        cfg.write_text("inputs:\n" + body)
        with pytest.raises(ConfigError, match=re.escape(key)):
            load(cfg)


def test_custom_definitions_from_the_input_config(tmp_path: Path) -> None:
    from .conftest import PEER

    beats = PEER / "netflow" / "beats"
    cfg = tmp_path / "netmeta.yml"
    cfg.write_text("inputs:\n  asa:\n    type: netflow\n    custom_definitions: ["
                   f"{beats / 'fields' / 'netflow9_cisco_asa_custom.yaml'}]\n")
    files = [beats / "dat" / "netflow9_test_cisco_asa_1_tpl.dat",
             beats / "dat" / "netflow9_test_cisco_asa_1_data.dat"]
    p = subprocess.run([NETMETA, "ingest", "--format", "netflow", "--input", "asa", "-c",
                        str(cfg), "--stdout", "--exporter", "192.0.2.1:4444",
                        *map(str, files)], check=True, capture_output=True)
    docs = [orjson.loads(x) for x in p.stdout.splitlines()]
    flows = [d for d in docs if d["event"]["action"] == "netflow_flow"]
    assert flows and all("xlate_src_addr_ipv4" in d["netflow"] for d in flows)
    assert all("field_40001" not in d["netflow"] for d in flows)


def test_udp_source_holds_datagrams_while_the_pipeline_is_full(tmp_path: Path) -> None:
    """A full queue makes datagrams wait (jobs grow); only beyond MAX_PENDING bytes are the
    oldest dropped, and counted."""
    import threading

    import pyarrow as pa

    from netmeta import metrics
    from netmeta.config import Input
    from netmeta.inputs import UdpSource
    from netmeta.pipeline import Pipeline
    from netmeta.sources.udp import Datagrams

    cfg = load(None, data_dir=str(tmp_path / "data"))
    cfg.pipeline.workers = 0
    cfg.inputs["sf"] = Input(type="sflow", listen="127.0.0.1", port=0)
    out: list[pa.Table] = []
    pipeline = Pipeline(cfg, None, out.append)
    src = UdpSource("sf", cfg.inputs["sf"], pipeline, threading.Event())
    src.MAX_PENDING = 3000  # bytes, for the test
    src.MAX_JOB = 5  # datagrams
    full = True
    real = pipeline.try_submit
    pipeline.try_submit = lambda job: False if full else real(job)  # type: ignore[method-assign]
    before = metrics.dropped.labels("sf", "queue_full")._value.get()
    one = _sflow_datagram(1)
    for seq in range(1, 41):
        src.deliver(Datagrams([_sflow_datagram(seq)], [("10.9.9.9", 6343)], 1.0, len(one)))
    src.flush(10**9)  # long past FLUSH_AGE: everything is due, the queue still full
    assert src._pending_bytes <= src.MAX_PENDING
    dropped = metrics.dropped.labels("sf", "queue_full")._value.get() - before
    kept = sum(len(d) for d, *_ in src._pending.values())
    assert dropped > 0 and kept > 0 and dropped + kept == 40
    full = False
    src.flush(10**9)
    assert src._pending == {} and src._pending_bytes == 0
    pipeline.close()
    src.close()
    rows = sum(t.num_rows for t in out)
    assert rows == 2 * kept  # a flow and a counter sample per datagram


def test_sflow_from_a_pcap_capture(tmp_path: Path) -> None:
    from .test_netflow_ingest import _capture

    capture = tmp_path / "sflow.pcap"
    _capture(capture, [(_sflow_datagram(seq), "192.0.2.50", 6343) for seq in (1, 2, 3)]
             + [(b"\x12\x34 not sflow", "192.0.2.51", 5353)])  # other UDP: passed over
    p = subprocess.run([NETMETA, "ingest", "--format", "sflow", "--stdout", str(capture)],
                       check=True, capture_output=True)
    docs = [orjson.loads(x) for x in p.stdout.splitlines()]
    assert sorted(d["event"]["action"] for d in docs) == ["SFLOW_5"] * 3 + ["sflow_counters"] * 3
    assert {d["sflow"]["sequence_num"] for d in docs} == {1, 2, 3}
