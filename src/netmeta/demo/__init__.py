"""``netmeta demo``: a fresh data dir filled with a synthetic day of mixed traffic.

Every record is made in its wire form — NetFlow v5/v9 and IPFIX datagrams, sFlow v5
datagrams, GoFlow2 JSON lines, Gigamon AMI JSON batches, Gigamon CEF over syslog, Packetbeat
events as Beats ship them — and handed to the same pipeline ``serve`` runs, so decoding,
normalization, enrichment (GeoIP when databases are known, community id) and routing are
the real ones. A few broken records show what the Failures page is for.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

from netmeta.config import Config, Input
from netmeta.demo import traffic, wire
from netmeta.demo.traffic import Session
from netmeta.event import Origin

EXPORTERS = {"netflow_v5": "192.0.2.10", "netflow_v9": "192.0.2.11", "ipfix": "192.0.2.12",
             "sflow": "192.0.2.20", "goflow2": "192.0.2.21"}
SFLOW_RATE = 512
GEOIP_TEST = Path("maxmind-test-data")


def _geoip_test_dbs() -> tuple[str, str] | None:
    """MaxMind's test databases when the conformance data sits beside the checkout."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        d = base.parent / "shared" / "peer" / "geoip" / GEOIP_TEST
        if (d / "GeoLite2-City-Test.mmdb").is_file():
            return str(d / "GeoLite2-City-Test.mmdb"), str(d / "GeoLite2-ASN-Test.mmdb")
    return None


def prepare(cfg: Config) -> Config:
    """The demo's inputs (not listening: the demo feeds the pipeline itself)."""
    for name, typ in (("netflow", "netflow"), ("sflow", "sflow"), ("goflow2", "goflow2"),
                      ("gigamon_ami", "gigamon_ami"), ("syslog", "syslog"),
                      ("packetbeat", "beats")):
        cfg.inputs.setdefault(name, Input(type=typ, enabled=False))  # type: ignore[arg-type]
    if not cfg.enrich.geoip.city_db:
        dbs = _geoip_test_dbs()
        if dbs:
            cfg.enrich.geoip.city_db, cfg.enrich.geoip.asn_db = dbs
    return cfg


def _flow(s: Session) -> wire.Flow:
    return wire.Flow(s.start, s.end, s.client, s.server, s.sport, s.dport, s.proto,
                     s.out_bytes + s.in_bytes, s.out_packets + s.in_packets)


def _flow_jobs(by_site: dict[str, list[Session]], boot: float) -> list[Any]:
    from netmeta.worker import Job

    jobs = []
    v5 = by_site["netflow_v5"]
    datagrams = []
    seq = 0
    for i in range(0, len(v5), 30):
        chunk = v5[i:i + 30]
        if i == 60:
            seq += 60  # two datagrams lost on the way: the exporters page shows the gap
        export = max(s.end for s in chunk) + 1
        datagrams.append((wire.netflow_v5([_flow(s) for s in chunk], export, boot, seq, 100),
                          f"{EXPORTERS['netflow_v5']}:2055", export))
        seq += len(chunk)
    v9 = by_site["netflow_v9"]
    for n, i in enumerate(range(0, len(v9), 24)):
        chunk = v9[i:i + 24]
        export = max(s.end for s in chunk) + 1
        datagrams.append((wire.netflow_v9([_flow(s) for s in chunk], export, boot, n,
                                          template=n % 20 == 0, sampling=10),
                          f"{EXPORTERS['netflow_v9']}:2055", export))
    fx = by_site["ipfix"]
    seq = 0
    for n, i in enumerate(range(0, len(fx), 20)):
        chunk = fx[i:i + 20]
        export = max(s.end for s in chunk) + 1
        datagrams.append((wire.ipfix([_flow(s) for s in chunk], export, seq,
                                     template=n % 20 == 0),
                          f"{EXPORTERS['ipfix']}:4739", export))
        seq += len(chunk)
    datagrams.sort(key=lambda d: d[2])
    for i in range(0, len(datagrams), 256):
        part = datagrams[i:i + 256]
        jobs.append(Job("netflow", "netflow", Origin("netflow"), b"",
                        datagrams=tuple((d, e) for d, e, _ in part), received=part[0][2],
                        times=tuple(t for _, _, t in part)))
    # sFlow: one sampled packet per session (the session stands for many more)
    sf = by_site["sflow"]
    sdg = []
    for n, i in enumerate(range(0, len(sf), 8)):
        chunk = sf[i:i + 8]
        at = chunk[-1].start + 0.5
        samples = [(_flow(s), min(1500, max(64, (s.out_bytes + s.in_bytes)
                                            // (s.out_packets + s.in_packets)))) for s in chunk]
        counters = [(1, int(at * 1000) % 10**9, int(at * 3000) % 10**9)] if n % 10 == 0 else []
        sdg.append((wire.sflow(EXPORTERS["sflow"], samples, int((at - boot) * 1000), n, i,
                               SFLOW_RATE, counters), f"{EXPORTERS['sflow']}:6343", at))
    for i in range(0, len(sdg), 256):
        part = sdg[i:i + 256]
        jobs.append(Job("sflow", "sflow", Origin("sflow"), b"",
                        datagrams=tuple((d, e) for d, e, _ in part), received=part[0][2],
                        times=tuple(t for _, _, t in part)))
    return jobs


def _goflow2_lines(sessions: list[Session]) -> bytes:
    lines = []
    for i, s in enumerate(sessions):
        lines.append(orjson.dumps({
            "type": "SFLOW_5", "time_received_ns": int(s.start * 1e9) + 400_000_000,
            "time_flow_start_ns": int(s.start * 1e9), "time_flow_end_ns": int(s.start * 1e9),
            "sequence_num": i, "sampling_rate": SFLOW_RATE,
            "sampler_address": EXPORTERS["goflow2"], "in_if": 3, "out_if": 4,
            "src_addr": s.client, "dst_addr": s.server, "etype": "IPv4",
            "proto": {6: "TCP", 17: "UDP"}[s.proto], "src_port": s.sport, "dst_port": s.dport,
            "bytes": min(1500, s.out_bytes), "packets": 1, "src_vlan": 10, "dst_vlan": 10}))
    lines.append(b'{"type": "SFLOW_5", "src_port": "not a port"')  # a broken line
    return b"\n".join(lines) + b"\n"


def _ami_time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y:%m:%d %H:%M:%S.%f")[:-3]


def _ami_record(s: Session, seq: int) -> dict[str, str]:
    ts = dt.datetime.fromtimestamp(s.end, dt.UTC).strftime("%a %b %d %H:%M:%S %Y")
    r = {"ts": ts, "vendor": "Gigamon", "version": "6.5.00", "generator": "gs_apps_demo",
         "src_ip": s.client, "dst_ip": s.server, "protocol": str(s.proto),
         "src_port": str(s.sport), "dst_port": str(s.dport), "app_name": s.app,
         "app_id": str(abs(hash_int(s.app)) % 1000), "ip_version": "4",
         "src_bytes": str(s.out_bytes), "dst_bytes": str(s.in_bytes),
         "src_packets": str(s.out_packets), "dst_packets": str(s.in_packets),
         "start_time": _ami_time(s.start), "end_time": _ami_time(s.end),
         "end_reason": "3", "id": str(10**17 + seq), "seq_num": str(seq)}
    d = s.detail
    if s.app == "http":
        r.update({"http_host": str(d["host"]), "http_uri_path": str(d["path"]),
                  "http_method": str(d["method"]), "http_code": str(d["status"]),
                  "http_user_agent": str(d["agent"]), "http_version": "1.1"})
    elif s.app == "dns":
        r.update({"dns_query": str(d["name"]), "dns_query_type": str(d["qtype_id"]),
                  "dns_reply_code": {"NOERROR": "0", "NXDOMAIN": "3",
                                     "SERVFAIL": "2"}[str(d["rcode"])]})
    elif "sni" in d:
        r.update({"ssl_common_name": str(d["sni"]), "ssl_cipher_suite_id": str(d["cipher_id"]),
                  "ssl_protocol_version": str(d["version_id"])})
    return r


def hash_int(text: str) -> int:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:4], "big")


def _cef_line(s: Session, seq: int) -> bytes:
    at = dt.datetime.fromtimestamp(s.end, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    ext = (f"GigamonApplicationName={s.app} sourceAddress={s.client} "
           f"destinationAddress={s.server} sourcePort={s.sport} destinationPort={s.dport} "
           f"transportProtocol={s.proto} GigamonInitiatorOctets={s.out_bytes} "
           f"GigamonResponderOctets={s.in_bytes} GigamonInitiatorPackets={s.out_packets} "
           f"GigamonResponderPackets={s.in_packets} "
           f"GigamonMdataFlowStartMsec={_ami_time(s.start)} "
           f"GigamonMdataFlowEndMsec={_ami_time(s.end)} GigamonMdataSeqNum={seq}")
    return (f"<134>1 {at} gigamon-ami-1 - - - - CEF:0|Gigamon|GigaVUE|6.5.00|metadata|"
            f"metadata generation|6|{ext}").encode()


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _packetbeat(s: Session) -> dict[str, Any]:
    d = s.detail
    kind = "http" if s.app == "http" else "dns" if s.app == "dns" else "tls"
    transport = {6: "tcp", 17: "udp"}[s.proto]
    rtt = float(d.get("rtt", 0.02))  # type: ignore[arg-type]
    ev: dict[str, Any] = {
        "@timestamp": _iso(s.start), "type": kind, "status": "OK",
        "agent": {"type": "packetbeat", "name": "pb-office", "version": "8.19.0"},
        "host": {"name": "pb-office"},
        "event": {"kind": "event", "category": ["network"], "type": ["connection", "protocol"],
                  "start": _iso(s.start), "end": _iso(s.start + rtt),
                  "duration": int(rtt * 1e9), "dataset": kind},
        "source": {"ip": s.client, "port": s.sport, "bytes": s.out_bytes},
        "destination": {"ip": s.server, "port": s.dport, "bytes": s.in_bytes},
        "client": {"ip": s.client, "port": s.sport, "bytes": s.out_bytes},
        "server": {"ip": s.server, "port": s.dport, "bytes": s.in_bytes},
        "network": {"transport": transport, "type": "ipv4", "protocol": kind,
                    "bytes": s.out_bytes + s.in_bytes, "direction": "egress"},
    }
    if kind == "http":
        ev["destination"]["domain"] = d["host"]
        ev["url"] = {"domain": d["host"], "path": d["path"], "scheme": "http",
                     "full": f"http://{d['host']}{d['path']}"}
        ev["http"] = {"version": "1.1", "request": {"method": d["method"], "bytes": s.out_bytes},
                      "response": {"status_code": d["status"], "bytes": s.in_bytes}}
        ev["user_agent"] = {"original": d["agent"]}
        ev["method"] = d["method"]
    elif kind == "dns":
        ev["dns"] = {"type": "answer", "op_code": "QUERY", "response_code": d["rcode"],
                     "question": {"name": d["name"], "type": d["qtype"], "class": "IN"},
                     "header_flags": ["RD", "RA"]}
    else:
        expires = s.start + float(d["expires_days"]) * 86400  # type: ignore[arg-type]
        ev["tls"] = {"version": d["version"], "version_protocol": "tls", "cipher": d["cipher"],
                     "established": True,
                     "client": {"ja3": d["ja3"], "server_name": d["sni"]},
                     "server": {"ja3s": d["ja3s"], "subject": f"CN={d['sni']}",
                                "issuer": "CN=Demo CA,O=netmeta demo",
                                "not_before": _iso(expires - 365 * 86400),
                                "not_after": _iso(expires)}}
    return ev


def run(cfg: Config, n_sessions: int = 8000, now: float | None = None) -> dict[str, int]:
    """Fill ``cfg.data_dir``; returns events and failures stored."""
    from netmeta.inputs import events_job
    from netmeta.pipeline import Pipeline, build_store
    from netmeta.worker import Job

    prepare(cfg)
    now = now or time.time()
    day_start = now - 86400
    sessions = traffic.sessions(n_sessions, day_start)
    by_site: dict[str, list[Session]] = defaultdict(list)
    for s in sessions:
        by_site[s.site].append(s)
    store = build_store(cfg)
    pipeline = Pipeline(cfg, store)
    try:
        for job in _flow_jobs(by_site, boot=day_start - 3600):
            pipeline.submit(job)
        data = _goflow2_lines(by_site["goflow2"])
        pipeline.submit(Job("goflow2", "goflow2", Origin("goflow2", "demo/goflow2.log"), data))
        # the probe and Packetbeat see the application sessions, whatever exporter saw them
        ami = [s for i, s in enumerate(sessions) if i % 3 == 0]
        for i in range(0, len(ami), 500):
            records = [_ami_record(s, i + k) for k, s in enumerate(ami[i:i + 500])]
            if i == 0:
                records.append({"ts": "yesterday-ish", "src_port": "http"})  # broken
            body = orjson.dumps(records)
            pipeline.submit(Job("gigamon_ami", "gigamon_ami", Origin("gigamon_ami"), body,
                                digest=hashlib.sha256(body).hexdigest()))
        cef = [s for i, s in enumerate(sessions) if i % 10 == 5]
        for i in range(0, len(cef), 1000):
            part = cef[i:i + 1000]
            pipeline.submit(Job("syslog", "syslog", Origin("syslog"), b"", datagrams=tuple(
                (_cef_line(s, i + k), "192.0.2.30:514") for k, s in enumerate(part)),
                times=tuple(s.end for s in part), transport="udp"))
        pb = [s for s in sessions if s.app in ("http", "dns", "https", "office365")
              and hash_int(f"{s.client}{s.sport}") % 2 == 0]
        for i in range(0, len(pb), 1000):
            docs = [orjson.dumps(_packetbeat(s)) for s in pb[i:i + 1000]]
            pipeline.submit(events_job("packetbeat", docs, []))
        pipeline.close()
        store.wait_compacted()
    finally:
        store.close()
    return {"events": pipeline.stats.events, "failures": pipeline.stats.failures}
