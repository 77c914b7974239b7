from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PEER = SHARED / "peer"
GEOIP = PEER / "geoip" / "maxmind-test-data"


@pytest.fixture(scope="session")
def peer() -> Path:
    assert PEER.is_dir(), f"conformance data missing: {PEER} (shared/ must sit beside the repo)"
    return PEER


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def goflow2_line(i: int, **over: object) -> str:
    import json
    rec = {"type": "SFLOW_5", "time_flow_start_ns": 1722384059314899647 + i * 1000,
           "sampler_address": "192.0.2.1", "sequence_num": i, "in_if": 1, "out_if": 2,
           "src_addr": f"10.0.{i // 250 % 250}.{i % 250}", "dst_addr": "81.2.69.194",
           "etype": "IPv4", "proto": "TCP", "src_port": 1024 + i % 60000, "dst_port": 443,
           "src_vlan": 0, "dst_vlan": 0, "sampling_rate": 100, "bytes": 60 + i % 1400}
    rec.update(over)
    return json.dumps(rec, separators=(",", ":"))


def wait_until(cond: Callable[[], object], what: str = "the condition",
               timeout: float = 15.0) -> None:
    """Poll ``cond`` until it holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")
