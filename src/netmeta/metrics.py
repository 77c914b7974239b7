"""Prometheus metrics of one netmeta process (served on /metrics)."""

from __future__ import annotations

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


def exposition() -> bytes:
    return generate_latest(REGISTRY)
