"""Exporter health: per NetFlow/IPFIX/sFlow exporter, what the store, the decoders' saved
templates and the live counters of this process say.

- the store (one aggregate query): flows stored per exporter (``observer.ip``) and input in
  the range, first/last event time, records/s over the range, the sampling rate events carry;
- the live counters (fed by the pipeline for every decoded batch): datagrams and records
  since start, records/s over the last minute, last datagram time, sequence loss and resets;
- the templates each ordered worker saved under ``<data dir>/state/``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson

from netmeta.event import META_EXTRA, META_INPUT, format_date
from netmeta.metrics import LIVE
from netmeta.query.search import Query, _number, _run
from netmeta.store.duckdb import Store


def templates(data_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Templates saved by the decoders, per exporter address."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted((Path(data_dir) / "state").glob("netflow-templates*.json")):
        try:
            saved = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            continue  # being replaced right now: the next look sees it
        for t in saved.get("templates", []):
            host = str(t.get("exporter", "")).rsplit(":", 1)[0].strip("[]")
            out.setdefault(host, []).append({
                "domain": t.get("domain"), "id": t.get("id"), "options": t.get("options"),
                "fields": len(t.get("fields", []))})
    for ts in out.values():
        ts.sort(key=lambda t: (t["domain"] or 0, t["id"] or 0))
    return out


_STORED_SQL = (
    f'SELECT "observer.ip"[1] AS exporter, "{META_INPUT}" AS input, count(*) AS events, '
    'min("@timestamp") AS first, max("@timestamp") AS last, '
    "max(COALESCE(TRY_CAST(json_extract_string(\"{x}\", '$.sflow.sample_rate') AS BIGINT), "
    "TRY_CAST(json_extract_string(\"{x}\", '$.netflow.sampling_interval') AS BIGINT), "
    "TRY_CAST(json_extract_string(\"{x}\", '$.sflow.sampling_rate') AS BIGINT))) AS sampling, "
    "count(*) FILTER (WHERE \"event.kind\" = 'metric') AS counters "
    "FROM ({rel}) WHERE {where} AND len(\"observer.ip\") > 0 AND "
    "\"event.action\" IN ('netflow_flow', 'netflow_options', 'SFLOW_5', 'sflow_counters', "
    "'NETFLOW_V5', 'NETFLOW_V9', 'IPFIX') GROUP BY ALL ORDER BY exporter, input")


def exporters(store: Store, q: Query) -> list[dict[str, Any]]:
    where, params = q.where()
    table = _run(store, q, lambda rel: (
        _STORED_SQL.replace("{x}", META_EXTRA).replace("{rel}", rel).replace("{where}", where),
        params))
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for r in table.to_pylist() if table is not None else []:
        span = max(((q.end or r["last"]) - (q.start or r["first"])).total_seconds(), 1.0)
        rows[(r["input"], r["exporter"])] = {
            "exporter": r["exporter"], "input": r["input"], "events": int(r["events"]),
            "counter_samples": int(r["counters"]), "first_event": format_date(r["first"]),
            "last_event": format_date(r["last"]), "events_per_s": r["events"] / span,
            "sampling_rate": _number(r["sampling"]), "protocols": [], "live": None}
    for (inp, exporter, protocol), live in LIVE.snapshot().items():
        row = rows.setdefault((inp, exporter), {
            "exporter": exporter, "input": inp, "events": 0, "counter_samples": 0,
            "first_event": None, "last_event": None, "events_per_s": 0.0,
            "sampling_rate": None, "protocols": [], "live": None})
        row["protocols"].append(protocol)
        agg = row["live"] or {"datagrams": 0, "records": 0, "lost": 0, "resets": 0,
                              "records_per_s": 0.0, "last_datagram": None}
        agg["datagrams"] += live["datagrams"]
        agg["records"] += live["records"]
        agg["lost"] += live["lost"]
        agg["resets"] += live["resets"]
        agg["records_per_s"] += live["records_per_s"]
        last = dt.datetime.fromtimestamp(live["last_seen"], dt.UTC).replace(tzinfo=None)
        agg["last_datagram"] = max(filter(None, [agg["last_datagram"], format_date(last)]))
        row["live"] = agg
    saved = templates(store.root)
    out = []
    for row in rows.values():
        row["templates"] = saved.get(row["exporter"], [])
        out.append(row)
    out.sort(key=lambda r: (r["exporter"] or "", r["input"] or ""))
    return out
