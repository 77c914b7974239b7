"""Start and stop a real `netmeta serve` for tests (127.0.0.1 only, bounded waits)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from .conftest import free_port

NETMETA = str(Path(sys.executable).with_name("netmeta"))


class Serve:
    def __init__(self, tmp: Path, paths: list[str], inputs: dict[str, Any] | None = None,
                 **pipeline: Any) -> None:
        self.port = free_port()
        self.data = tmp / "data"
        self.config = tmp / "netmeta.yml"
        # auth: none keeps these tests about their inputs; tests/test_web_api.py covers tokens
        cfg = {"data_dir": str(self.data), "http": {"port": self.port, "auth": "none"},
               "pipeline": {"workers": 1, "batch_timeout": 0.2, **pipeline},
               "inputs": {"goflow2": {"type": "goflow2", "paths": paths,
                                      "poll_interval": 0.05}, **(inputs or {})}}
        self.config.write_text(yaml.safe_dump(cfg))
        self.log = tmp / "serve.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Serve:
        assert self.proc is None, "already started"
        out = self.log.open("ab")
        self.proc = subprocess.Popen([NETMETA, "serve", "--config", str(self.config)],
                                     stdout=out, stderr=out)
        self.wait_for(lambda: self.get("/healthz") is not None, "serve to answer")
        return self

    def get(self, path: str, **params: Any) -> Any:
        qs = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}?{qs}",
                                        timeout=5) as r:
                body = r.read()
        except OSError:
            return None
        return body.decode() if path == "/metrics" else json.loads(body)

    def stored(self) -> int:
        text = self.get("/metrics") or ""
        total = 0.0
        for line in text.splitlines():
            if line.startswith("netmeta_stream_events_stored_total"):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def total(self, kql: str = "") -> int:
        r = self.get("/api/search", q=kql, limit=1)
        return -1 if r is None else int(r["total"])

    def wait_for(self, cond: Any, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"serve exited ({self.proc.returncode}) waiting for {what}:"
                                     f"\n{self.log.read_text()[-3000:]}")
            if cond():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout=60)
        finally:
            self.proc = None

    def __enter__(self) -> Serve:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=30)
