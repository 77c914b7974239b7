"""Packetbeat events → event rows, a whole batch at a time, by the fastest path that takes
each event: a compiled shape (packetbeat_shapes.py), else the flat walk
(packetbeat_flat.py), else the reference (packetbeat.normalize_event, then
event.split_document), which also says why an event cannot be stored. All three give the
same rows: tests/test_packetbeat_batch.py compares them.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import orjson

from netmeta.event import split_document
from netmeta.normalize import packetbeat as ref
from netmeta.normalize.packetbeat import NormalizeError
from netmeta.normalize.packetbeat_flat import Slow, flat_row
from netmeta.normalize.packetbeat_shapes import shaped_row


def reference_row(event: Any, now: dt.datetime) -> tuple[dict[str, Any], str | None]:
    """The row of one event through the reference normalizer (raises NormalizeError)."""
    doc = ref.normalize_event(copy.deepcopy(event), now)
    try:
        return split_document(doc)
    except TypeError as e:  # orjson: an integer beyond 64 bits where no field says long
        raise NormalizeError(f"cannot be stored: {e}") from None


def _original(event: Any) -> bytes:
    try:
        return orjson.dumps(event)
    except TypeError:  # an integer beyond 64 bits: the standard library writes it
        return json.dumps(event, default=str).encode()


@dataclass(slots=True)
class Rows:
    typed: list[dict[str, Any]] = field(default_factory=list)
    extras: list[str | None] = field(default_factory=list)
    index: list[int] = field(default_factory=list)  # each row's event number in the batch
    failures: list[tuple[str, bytes]] = field(default_factory=list)  # (why, original)
    flat: int = 0  # rows made by the flat walk
    slow: int = 0  # rows (and failures) made by the reference


def normalize_rows(events: Any, now: dt.datetime | None = None) -> Rows:
    """The rows of a decoded JSON array of Beats events; one bad event costs only itself."""
    out = Rows()
    if not isinstance(events, list):
        out.failures.append((f"expected a JSON array of events, got {ref._kind(events)}",
                             orjson.dumps(events)))
        return out
    now = now or dt.datetime.now(dt.UTC)
    now_iso = ref._iso(now)
    for i, event in enumerate(events):
        try:
            row = shaped_row(event, now_iso)
            if row is None:
                out.flat += 1
                row = flat_row(event, now_iso)
        except (Slow, TypeError):  # TypeError: orjson's, the reference says why
            out.slow += 1
            try:
                row = reference_row(event, now)
            except NormalizeError as e:
                out.failures.append((f"event {i + 1} of the batch: {e}", _original(event)))
                continue
        out.typed.append(row[0])
        out.extras.append(row[1])
        out.index.append(i)
    return out


def normalize_json(data: bytes, now: dt.datetime | None = None) -> Rows:
    """The worker's "packetbeat" format: the JSON array of a batch of Beats events."""
    try:
        events = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        return Rows(failures=[(f"not a JSON array of events: {e}", data)])
    return normalize_rows(events, now)
