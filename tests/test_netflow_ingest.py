"""NetFlow/IPFIX through the real pipeline: captures and .dat files, templates kept across
jobs in one worker process, malformed datagrams stored as failures."""

from __future__ import annotations

import json
import socket
import subprocess
from pathlib import Path

import dpkt

from netmeta.config import Config, Input
from netmeta.event import flatten
from netmeta.inputs import datagram_jobs
from netmeta.pipeline import Pipeline, build_store
from netmeta.query import search as q

from .conftest import PEER
from .servers import NETMETA

DAT = PEER / "netflow" / "beats" / "dat"
BARRACUDA = [DAT / "ipfix_test_barracuda_tpl.dat", DAT / "ipfix_test_barracuda_data256.dat"]


def _capture(path: Path, payloads: list[tuple[bytes, str, int]]) -> None:
    with path.open("wb") as f:
        w = dpkt.pcap.Writer(f)
        for i, (payload, src, sport) in enumerate(payloads):
            u = dpkt.udp.UDP(sport=sport, dport=2055, data=payload)
            u.ulen = 8 + len(payload)
            ip = dpkt.ip.IP(src=socket.inet_aton(src), dst=socket.inet_aton("192.0.2.9"), p=17,
                            data=u)
            ip.len = 20 + len(u)
            e = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip,
                                       type=dpkt.ethernet.ETH_TYPE_IP)
            w.writepkt(bytes(e), ts=1_700_000_000 + i)


def test_dat_files_print_ecs_documents() -> None:
    p = subprocess.run([NETMETA, "ingest", "--format", "netflow", "--stdout", "--exporter",
                        "192.0.2.1:4444", *map(str, BARRACUDA)], capture_output=True, check=True)
    docs = [flatten(json.loads(line)) for line in p.stdout.splitlines()]
    assert len(docs) == 8
    assert {d["netflow.exporter.address"] for d in docs} == {"192.0.2.1:4444"}
    assert all(d["event.action"] == "netflow_flow" and d["flow.id"] for d in docs)
    assert all(d["network.community_id"].startswith("1:") for d in docs)


def test_capture_with_templates_in_earlier_jobs_and_bad_datagrams(tmp_path: Path) -> None:
    tpl, data = (f.read_bytes() for f in BARRACUDA)
    dns = b"\x12\x34\x01\x00" + b"\x00" * 8  # not an export datagram: passed over
    bad = b"\x00\x0a\x00\x30" + b"\xff" * 12  # IPFIX header announcing more than there is
    capture = tmp_path / "flows.pcap"
    _capture(capture, [(tpl, "192.0.2.1", 4444), (dns, "192.0.2.53", 53),
                       (data, "192.0.2.1", 4444), (bad, "192.0.2.7", 9995)])
    cfg = Config(data_dir=str(tmp_path / "data"))
    cfg.pipeline.workers = 2
    cfg.inputs["netflow"] = Input(type="netflow", paths=[], enabled=False)
    store = build_store(cfg)
    pipe = Pipeline(cfg, store)
    # one datagram per job: the data set only decodes if its template, sent in an earlier
    # job, reached the same decoder state
    for job in datagram_jobs("netflow", "netflow", str(capture), "unused", batch=1):
        pipe.submit(job)
    pipe.close()
    assert q.count(store, q.Query("event.action:netflow_flow")) == 8
    assert q.count(store, q.Query("netflow.exporter.address:192.0.2.1\\:4444")) == 8
    fails = store.failures().to_pylist()
    assert len(fails) == 1
    assert fails[0]["error.message"].startswith("netflow: 192.0.2.7:9995: ")
    assert fails[0]["event.original"] == bad.hex()
    store.close()


def test_serve_receives_netflow_over_udp(tmp_path: Path) -> None:
    from .servers import Serve

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:  # a free UDP port
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    serve = Serve(tmp_path, [str(tmp_path / "none" / "*.log")],
                  inputs={"nf": {"type": "netflow", "listen": "127.0.0.1", "port": port}})
    with serve:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            tx.bind(("127.0.0.1", 0))
            for f in BARRACUDA:  # template first, then the data that needs it
                tx.sendto(f.read_bytes(), ("127.0.0.1", port))
                serve.wait_for(lambda: "netmeta_input_datagrams_total" in (
                    serve.get("/metrics") or ""), "the datagram to arrive")
            exporter = f"127.0.0.1:{tx.getsockname()[1]}"
        serve.wait_for(lambda: serve.total("event.action:netflow_flow") == 8, "8 flows")
        hits = serve.get("/api/search", q="flow.id:*", limit=10)["hits"]
        assert {h["netflow"]["exporter"]["address"] for h in hits} == {exporter}
        metrics = serve.get("/metrics")
        assert 'netmeta_input_datagrams_total{input="nf"} 2.0' in metrics
        assert 'netmeta_udp_kernel_drops{input="nf"}' in metrics
        assert "netmeta_udp_rcvbuf_errors " in metrics
        assert 'netmeta_stream_events_stored_total{stream="nf"} 8.0' in metrics


def test_templates_survive_a_restart(tmp_path: Path) -> None:
    """Templates learnt by one run decode the data of the next one (no blackout)."""
    data_dir = str(tmp_path / "data")
    for f in BARRACUDA:  # two processes: the template, then the data that needs it
        subprocess.run([NETMETA, "ingest", "--format", "netflow", "-d", data_dir,
                        "--exporter", "192.0.2.1:4444", str(f)], check=True,
                       capture_output=True)
    assert (tmp_path / "data" / "state" / "netflow-templates.json").is_file()
    p = subprocess.run([NETMETA, "search", "-d", data_dir, "--json", "--limit", "100",
                        "event.action:netflow_flow"], check=True, capture_output=True)
    assert len(p.stdout.splitlines()) == 8


def test_keys_handed_over_by_the_decoder_equal_parsed_keys() -> None:
    """The decoder and normalizer pass IPv4 keys on instead of parsing text: the stored key
    columns must be exactly what parsing the addresses gives."""
    import random
    import struct as st

    from netmeta import event
    from netmeta.decode import netflow
    from netmeta.decode.templates import TemplateState
    from netmeta.normalize import netflow as nf_normalize

    from .test_decode_netflow import a_set, specs, v9_datagram

    rnd = random.Random(5)
    layout = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1)]
    tpl = a_set(0, st.pack(">HH", 256, len(layout)) + specs(layout))
    hosts = [bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), bytes([192, 0, 2, 9])]
    rows = b"".join(st.pack(">4s4sHHB", rnd.choice(hosts), rnd.choice(hosts), 1, 2, 6)
                    for _ in range(400))  # same address on both sides sometimes
    decoded = netflow.decode_many([(v9_datagram(tpl, a_set(256, rows)), "192.0.2.1:2055")],
                                  TemplateState(), 0.0)
    table = event.add_ip_keys(nf_normalize.normalize(decoded, "nf"))
    handed = {k: table.column(k).to_pylist() for k in table.column_names if k.endswith("#b")}
    assert {"source.ip#b", "destination.ip#b", "related.ip#b"} <= handed.keys()
    event._KEY_MEMO.clear()
    parsed = event.add_ip_keys(table.drop_columns(list(handed)))
    for k, v in handed.items():
        assert parsed.column(k).to_pylist() == v, k
