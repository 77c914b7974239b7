"""Options data (interface names, sampling interval) applied to an exporter's flows."""

from __future__ import annotations

import struct

from netmeta.decode import netflow
from netmeta.decode.templates import TemplateState
from netmeta.event import exporter_ip, to_documents
from netmeta.normalize import netflow as normalize
from netmeta.normalize.exporters import Exporters

from .test_decode_netflow import a_set, specs, v9_datagram

EXPORTER = "192.0.2.7:2055"
FLOW = [(8, 4), (12, 4), (10, 4), (14, 4), (1, 4), (2, 4)]  # ..., in/out interface, bytes, pkts


def options_template() -> bytes:
    scope, fields = specs([(2, 4)]), specs([(82, 16), (34, 4)])  # Interface; name, interval
    return a_set(1, struct.pack(">HHH", 257, len(scope), len(fields)) + scope + fields)


def options_data(ifindex: int, name: str, interval: int) -> bytes:
    return a_set(257, struct.pack(">I16sI", ifindex, name.encode(), interval))


def flows() -> bytes:
    rows = struct.pack(">4s4sIIII", bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 5, 7, 1500, 3)
    return a_set(256, rows)


def run(exporters: Exporters, renormalize: bool) -> list[dict]:
    state = TemplateState()
    template = a_set(0, struct.pack(">HH", 256, len(FLOW)) + specs(FLOW))
    payloads = [v9_datagram(template, options_template(), options_data(5, "eth0", 100),
                            sequence=1),
                v9_datagram(flows(), sequence=2)]
    decoded = netflow.decode_many([(p, EXPORTER) for p in payloads], state, 0.0)
    assert not decoded.errors
    table = normalize.normalize(decoded, "nf", None, exporters, renormalize)
    return [d for d in to_documents(table) if d["event"]["action"] == "netflow_flow"]


def test_interface_names_and_sampling_from_options() -> None:
    ex = Exporters()
    flow = run(ex, renormalize=True)[0]
    assert ex.sampling == {"192.0.2.7": 100}
    assert ex.interfaces == {("192.0.2.7", 5): "eth0"}
    assert flow["observer"]["ingress"]["interface"]["name"] == "eth0"
    assert "name" not in flow["observer"].get("egress", {}).get("interface", {})
    assert flow["network"]["bytes"] == 150_000 and flow["network"]["packets"] == 300
    assert flow["netflow"]["octet_delta_count"] == 1500  # the counter as sent


def test_renormalize_off_keeps_counters_and_configured_rate_wins() -> None:
    flow = run(Exporters(), renormalize=False)[0]
    assert flow["network"]["bytes"] == 1500 and flow["network"]["packets"] == 3
    flow = run(Exporters({"192.0.2.7": 10}), renormalize=True)[0]
    assert flow["network"]["bytes"] == 15_000


def test_exporter_ip() -> None:
    assert exporter_ip("192.0.2.1:2055") == "192.0.2.1"
    assert exporter_ip("[2001:db8::1]:2055") == "2001:db8::1"
    assert exporter_ip("2001:db8::1") == "2001:db8::1"
    assert exporter_ip("192.0.2.1") == "192.0.2.1"
