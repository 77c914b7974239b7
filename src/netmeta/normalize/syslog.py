"""Syslog messages → events: CEF inside them as Elastic does it (decode_cef, then for
Gigamon's metadata the gigamon.ami pipeline), anything else as a plain syslog event with
``log.syslog.*``. Nothing is a failure for not being CEF; only empty messages are."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from netmeta.decode import cef, syslog
from netmeta.event import Failure
from netmeta.normalize import gigamon
from netmeta.normalize.gigamon_hex import decode_ssl_hex

GIGAMON = "Gigamon"


def _cef_event(message: str) -> dict[str, Any] | None:
    if "CEF:" not in message:
        return None
    try:
        doc = cef.decode(message)
    except cef.CEFError:
        return None
    if doc.get("cef", {}).get("device", {}).get("vendor") == GIGAMON:
        event = gigamon.normalize_cef_event(doc)
        decode_ssl_hex(event)
        return event
    return doc


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalize(messages: Sequence[tuple[bytes, str]], times: Sequence[float], input_name: str,
              transport: str) -> tuple[list[dict[str, Any]], list[str], list[Failure]]:
    """Documents, their ids and failures for messages (payload, sender "ip:port") that
    arrived at ``times``."""
    docs: list[dict[str, Any]] = []
    ids: list[str] = []
    fails: list[Failure] = []
    for i, (payload, peer) in enumerate(messages):
        text = payload.decode("utf-8", "replace").rstrip("\r\n\x00")
        if not text.strip():
            fails.append(Failure(input_name, f"syslog: empty message from {peer}", payload))
            continue
        received = times[i] if i < len(times) else dt.datetime.now(dt.UTC).timestamp()
        m = syslog.parse(text)
        plain = m.to_ecs()
        doc = _cef_event(text)  # a 3164 parser may take "CEF:" for the tag: look at it all
        if doc is None:
            doc = plain
        else:  # the CEF event keeps what the syslog header said
            header = plain.get("log", {}).get("syslog")
            if header:
                doc.setdefault("log", {})["syslog"] = header
            if "@timestamp" in plain:
                doc.setdefault("@timestamp", plain["@timestamp"])
        doc.setdefault("@timestamp", _iso(received))
        doc.setdefault("event", {})["original"] = text  # the udp/tcp input's message
        doc.setdefault("log", {})["source"] = {"address": peer}
        doc["input"] = {"type": transport}
        docs.append(doc)
        ids.append(f"{input_name}:{peer}:{received:.6f}:{i}")
    return docs, ids, fails
