"""Metrics of one netmeta process: Prometheus (served on /metrics) and the live exporter
counters the exporters page shows."""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)

received = Counter("netmeta_input_records", "Records read by an input (events + failures)",
                   ["input"], registry=REGISTRY)
received_bytes = Counter("netmeta_input_bytes", "Bytes read by an input", ["input"],
                         registry=REGISTRY)
events = Counter("netmeta_input_events", "Events an input produced", ["input"],
                 registry=REGISTRY)
failed = Counter("netmeta_input_failures", "Records of an input that failed to decode or "
                 "normalize (stored in the failure store)", ["input"], registry=REGISTRY)
stored = Counter("netmeta_stream_events_stored", "Events stored per stream", ["stream"],
                 registry=REGISTRY)
dropped = Counter("netmeta_dropped", "Records dropped (e.g. UDP datagrams on a full queue)",
                  ["input", "reason"], registry=REGISTRY)
queue_depth = Gauge("netmeta_queue_depth", "Items waiting in a pipeline queue", ["queue"],
                    registry=REGISTRY)
append_seconds = Histogram("netmeta_store_append_seconds", "Time of one store transaction",
                           registry=REGISTRY,
                           buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
received_datagrams = Counter("netmeta_input_datagrams", "UDP datagrams an input received",
                             ["input"], registry=REGISTRY)
kernel_drops = Gauge("netmeta_udp_kernel_drops", "Datagrams the kernel dropped for an input's "
                     "socket (receive buffer full), from /proc/net/udp", ["input"],
                     registry=REGISTRY)
rcvbuf_errors = Gauge("netmeta_udp_rcvbuf_errors", "Host-wide UDP datagrams dropped for a full "
                      "receive buffer (RcvbufErrors of /proc/net/snmp and snmp6)",
                      registry=REGISTRY)
truncations = Counter("netmeta_file_truncations", "Tailed files seen truncated", ["input"],
                      registry=REGISTRY)

_EXPORTER = ["input", "exporter", "protocol"]
exporter_datagrams = Counter("netmeta_exporter_datagrams", "Datagrams decoded per exporter",
                             _EXPORTER, registry=REGISTRY)
exporter_records = Counter("netmeta_exporter_records", "Flow records / samples decoded per "
                           "exporter", _EXPORTER, registry=REGISTRY)
exporter_lost = Gauge("netmeta_exporter_lost", "Lost since start per the exporter's sequence "
                      "numbers, in the protocol's unit: flows (netflow_v5), export packets "
                      "(netflow_v9), data records (ipfix), datagrams (sflow)", _EXPORTER,
                      registry=REGISTRY)
exporter_resets = Gauge("netmeta_exporter_sequence_resets", "Exporter restarts and sequence "
                        "resets seen since start (not counted as loss)", _EXPORTER,
                        registry=REGISTRY)

push_refused = Counter("netmeta_push_refused", "HTTP push requests refused (auth, size, "
                       "encoding, JSON, not stored), by reason", ["input", "reason"],
                       registry=REGISTRY)
push_duplicates = Counter("netmeta_push_duplicates", "HTTP push batches recognized as "
                          "retries of stored ones (answered 200, not stored again)", ["input"],
                          registry=REGISTRY)

beats_errors = Counter("netmeta_beats_protocol_errors", "Beats (Lumberjack) connections closed "
                       "for a protocol error (bad version or frame, over a size limit), by "
                       "reason", ["input", "reason"], registry=REGISTRY)
beats_connections = Gauge("netmeta_beats_connections", "Beats (Lumberjack) connections open",
                          ["input"], registry=REGISTRY)
beats_resent = Counter("netmeta_beats_resent_events", "Beats (Lumberjack) events a Beat sent "
                       "again after a connection broke before it had their ACK, recognized as "
                       "stored (or being stored) and not stored again", ["input"],
                       registry=REGISTRY)


def exposition() -> bytes:
    return generate_latest(REGISTRY)


# ---------------------------------------------------------------- live exporter counters
# What the exporters page shows beside the store: kept by the pipeline of this process.

LIVE_WINDOW = 60.0  # seconds of live records/s


class LiveExporters:
    """Counters of this process since start, per (input, exporter, protocol)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._recent: dict[tuple[str, str, str], collections.deque[tuple[float, int]]] = {}

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._recent.clear()

    def observe(self, input_name: str, counts: Any, now: float | None = None) -> None:
        """``counts``: the ExporterCount list of one decoded batch."""
        now = now or time.time()
        with self._lock:
            for c in counts:
                key = (input_name, c.exporter, c.protocol)
                r = self._rows.setdefault(key, {"datagrams": 0, "records": 0, "lost": 0,
                                                "resets": 0, "first_seen": now})
                r["datagrams"] += c.datagrams
                r["records"] += c.records
                r["lost"], r["resets"], r["last_seen"] = c.lost, c.resets, now
                q = self._recent.setdefault(key, collections.deque())
                q.append((now, c.records))
                while q and q[0][0] < now - LIVE_WINDOW:
                    q.popleft()

    def snapshot(self, now: float | None = None) -> dict[tuple[str, str, str], dict[str, Any]]:
        now = now or time.time()
        with self._lock:
            out = {}
            for key, r in self._rows.items():
                recent = sum(n for t, n in self._recent.get(key, ()) if t >= now - LIVE_WINDOW)
                span = min(LIVE_WINDOW, max(now - r["first_seen"], 1.0))
                out[key] = {**r, "records_per_s": recent / span}
            return out


LIVE = LiveExporters()
