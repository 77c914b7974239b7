from __future__ import annotations

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
