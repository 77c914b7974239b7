"""The index a Beat addressed, kept on each event as ``_index`` — as Logstash's beats input
exposes it (``%{[@metadata][beat]}-%{[@metadata][version]}``, e.g. ``packetbeat-8.17.0``;
``@metadata.raw_index`` / ``@metadata.index`` when an index was configured) — and the
byte-level member insertion both the Beats and the _bulk inputs use to add it.

Events stay the bytes they were sent as: the one check every event already gets (is it a
JSON object?) decodes ``@metadata`` on the way, which costs next to nothing, and the
``_index`` member is spliced in front of the event's own members.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

from netmeta.decode.jsondocs import check_object


class _Event(msgspec.Struct):
    """A Beats event as far as its index goes: every other member is skipped (but checked)."""

    metadata: Any = msgspec.field(name="@metadata", default=None)


_ONE = msgspec.json.Decoder(_Event)
_MANY = msgspec.json.Decoder(list[_Event])


def with_prefix(doc: bytes, prefix: bytes) -> bytes:
    """``doc`` (a JSON object) with ``prefix`` members first; later duplicates win."""
    if not prefix:
        return doc
    start = doc.index(b"{") + 1
    i = start
    while i < len(doc) and doc[i] in b" \t\r\n":
        i += 1
    if doc[i:i + 1] == b"}":
        return b"{" + prefix + b"}"
    return b"".join((b"{", prefix, b",", memoryview(doc)[start:]))


def index_of(metadata: Any) -> str | None:
    """The index name Logstash's beats input would give an event with this ``@metadata``."""
    if not isinstance(metadata, dict):
        return None
    for key in ("raw_index", "index"):
        if isinstance(metadata.get(key), str) and metadata[key]:
            return str(metadata[key])
    beat, version = metadata.get("beat"), metadata.get("version")
    if not isinstance(beat, str) or not beat:
        return None
    return f"{beat}-{version}" if isinstance(version, str) and version else beat


def split_tagged(docs: list[bytes]) -> tuple[list[bytes], list[tuple[int, str]]]:
    """As :func:`netmeta.decode.jsondocs.split_objects` — the documents that are JSON
    objects, and (index, why) of those that are not — with ``_index`` added to those whose
    ``@metadata`` names one."""
    if not docs:
        return [], []
    joined = b"[" + b",".join(docs) + b"]"
    events: list[_Event] | None = None
    try:
        joined.decode("utf-8")
        events = _MANY.decode(joined)
    except (UnicodeDecodeError, msgspec.DecodeError):
        pass
    if events is not None and len(events) == len(docs):
        return _tag(docs, [e.metadata for e in events]), []
    good: list[bytes] = []
    metas: list[Any] = []
    bad: list[tuple[int, str]] = []
    for i, d in enumerate(docs):
        why = check_object(d)
        if why is None:
            good.append(d)
            try:
                metas.append(_ONE.decode(d).metadata)
            except msgspec.DecodeError:
                metas.append(None)
        else:
            bad.append((i, why))
    return _tag(good, metas), bad


def _tag(docs: list[bytes], metas: list[Any]) -> list[bytes]:
    prefixes: dict[str, bytes] = {}
    out = []
    for doc, meta in zip(docs, metas, strict=True):
        name = index_of(meta)
        if name is None:
            out.append(doc)
            continue
        prefix = prefixes.get(name)
        if prefix is None:
            prefix = prefixes[name] = b'"_index":' + orjson.dumps(name)
        out.append(with_prefix(doc, prefix))
    return out
