"""GELF messages → ECS documents; Packetbeat events in Graylog's form → the Packetbeat
event they were.

Graylog's Beats input flattens an event into GELF additional fields: ``packetbeat_`` (the
Beat's name) before every key, '.' and array indexes turned into '_', lists into "[a, b]"
strings, booleans into "true"/"false". The flattening cannot be undone by splitting on '_'
(``dns_response_code`` is dns.response_code, ``dns_answers_0_name`` dns.answers[0].name), so
each key is resolved against the known field names (ECS + network_traffic,
packetbeat_fields.yml): the longest known name first at each level, with the rest of a
flattened field's key (http.request.headers.*) kept whole. Values are typed per the field
resolved. A key that resolves to no known field is not guessed: it is kept under
``gelf.<key>`` as it came.

GELF's own fields: ``timestamp`` → ``@timestamp`` (unless the event has its own),
``host`` → ``host.name`` (when the event has none), ``short_message`` → ``message`` (but not
"-", Graylog's placeholder for an event without a message), ``level`` →
``log.syslog.severity.*``, ``facility`` → ``log.syslog.facility.name``, ``file``/``line`` →
``log.origin.file.*``; ``full_message`` is kept as ``gelf.full_message``, ``version`` dropped.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from netmeta.decode import gelf as gelf_decode
from netmeta.normalize import packetbeat
from netmeta.normalize.packetbeat import Leaf, Normalized, NormalizeError, Objects

BEAT_PREFIX = "packetbeat"
SEVERITIES = ("emergency", "alert", "critical", "error", "warning", "notice",
              "informational", "debug")  # syslog severity names, as ECS log.syslog uses
FAILED_HEAD = 65536  # bytes of a message that failed normalization kept as event.original
_LIST = re.compile(r"^\[(.*)\]$", re.S)

Path = tuple[str | int, ...]


@lru_cache(maxsize=8192)
def resolve(key: str) -> tuple[Path, Leaf | None] | None:
    """``dns_answers_0_name`` → (("dns", "answers", 0, "name"), its Leaf); None when the key
    is no known field. The Leaf is None for a whole array of objects."""
    tokens = key.split("_")
    if not all(tokens):
        return None  # "a__b", "_a": no field name has an empty part
    return _resolve(tokens, 0, packetbeat.TREE)


def _resolve(tokens: list[str], i: int, node: dict[str, Any]
             ) -> tuple[Path, Leaf | None] | None:
    for j in range(len(tokens), i, -1):  # longest name first: answers_count before answers
        name = "_".join(tokens[i:j])
        child = node.get(name)
        if child is None:
            continue
        found = _below(tokens, j, child)
        if found is not None:
            return (name, *found[0]), found[1]
    return None


def _below(tokens: list[str], j: int, child: Any) -> tuple[Path, Leaf | None] | None:
    end = j == len(tokens)
    if isinstance(child, Leaf):
        if end:
            return (), child
        if child.base == "flattened":  # arbitrary keys below: the rest is one key
            return ("_".join(tokens[j:]),), None
        return None
    if isinstance(child, Objects):
        if end:
            return (), None
        if not tokens[j].isdigit():
            return None
        rest = _resolve(tokens, j + 1, child.children) if j + 1 < len(tokens) else None
        return None if rest is None else ((int(tokens[j]), *rest[0]), rest[1])
    if end:
        return None  # a group is not a value
    return _resolve(tokens, j, child)


def typed(value: Any, leaf: Leaf | None) -> Any:
    """A flattened value back in its field's type; left as it is when it does not fit (the
    Packetbeat normalizer then says why)."""
    if leaf is None or leaf.base == "flattened":
        return value
    if isinstance(value, str) and leaf.is_list:
        m = _LIST.match(value)
        if m:
            inner = m.group(1)
            items = inner.split(", ") if inner.strip() else []
            return [_scalar(x, leaf.base) for x in items]
    return _scalar(value, leaf.base)


def _scalar(value: Any, base: str) -> Any:
    if base == "keyword":
        return value
    try:
        return packetbeat._coerce_scalar(base, value, "")
    except NormalizeError:
        return value


def _put(doc: dict[str, Any], path: Path, value: Any) -> None:
    cur: Any = doc
    for i, p in enumerate(path):
        last = i == len(path) - 1
        nxt_container: Any = [] if not last and isinstance(path[i + 1], int) else {}
        if isinstance(p, int):
            while len(cur) <= p:
                cur.append(None)
            if last:
                cur[p] = value
                return
            if not isinstance(cur[p], dict | list):
                cur[p] = nxt_container
            cur = cur[p]
            continue
        if last:
            cur[p] = value
            return
        if not isinstance(cur.get(p), dict | list):
            cur[p] = nxt_container
        cur = cur[p]


def _compact(v: Any) -> Any:
    """Arrays rebuilt from indexes lose the holes of indexes that never came."""
    if isinstance(v, dict):
        return {k: _compact(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_compact(x) for x in v if x is not None]
    return v


def to_ecs(msg: dict[str, Any]) -> dict[str, Any]:
    """One GELF message (JSON object) → an ECS document."""
    doc = unflatten(msg)
    _gelf_fields(msg, doc)
    return doc


def unflatten(msg: dict[str, Any]) -> dict[str, Any]:
    """The additional fields (``_...``) of a GELF message as a nested document; those of no
    known field under ``gelf``."""
    doc: dict[str, Any] = {}
    loose: dict[str, Any] = {}
    beats = msg.get("_beats_type")  # Graylog's Beats input without its type prefix
    for key, value in msg.items():
        if not key.startswith("_") or key == "_id":  # _id is reserved by GELF
            continue
        name = key[1:]
        flat = None
        if name.startswith(BEAT_PREFIX):
            # "packetbeat_dns_..." (and, as in Graylog's own example, "packetbeatdns_...")
            flat = name[len(BEAT_PREFIX):].removeprefix("_")
        elif beats == BEAT_PREFIX and name != "beats_type":
            flat = name
        found = resolve(flat) if flat else None
        if found is None:
            loose[name] = value
            continue
        path, leaf = found
        _put(doc, path, typed(value, leaf))
    doc = _compact(doc)
    if loose:
        doc["gelf"] = loose
    return doc


def _gelf_fields(msg: dict[str, Any], doc: dict[str, Any]) -> None:
    ts = msg.get("timestamp")
    if "@timestamp" not in doc and isinstance(ts, int | float) and not isinstance(ts, bool):
        try:
            doc["@timestamp"] = _iso(dt.datetime.fromtimestamp(ts, dt.UTC))
        except (OverflowError, OSError, ValueError):
            doc.setdefault("gelf", {})["timestamp"] = ts
    host = msg.get("host")
    if isinstance(host, str) and host:
        h = doc.get("host")
        if not isinstance(h, dict):
            doc["host"] = {"name": host}
        elif "name" not in h:
            h["name"] = host
        elif h["name"] != host:
            doc.setdefault("gelf", {})["host"] = host
    short = msg.get("short_message")
    if isinstance(short, str) and short and short != "-" and "message" not in doc:
        doc["message"] = short
    full = msg.get("full_message")
    if full is not None:
        doc.setdefault("gelf", {})["full_message"] = full
    log: dict[str, Any] = {}
    level = msg.get("level")
    if isinstance(level, int) and not isinstance(level, bool) and 0 <= level <= 7:
        log["syslog"] = {"severity": {"code": level, "name": SEVERITIES[level]}}
    if isinstance(msg.get("facility"), str):
        log.setdefault("syslog", {})["facility"] = {"name": msg["facility"]}
    origin: dict[str, Any] = {}
    if isinstance(msg.get("file"), str):
        origin["name"] = msg["file"]
    if isinstance(msg.get("line"), int) and not isinstance(msg.get("line"), bool):
        origin["line"] = msg["line"]
    if origin:
        log["origin"] = {"file": origin}
    if log:
        existing = doc.get("log")
        if isinstance(existing, dict):
            for k, v in log.items():
                existing.setdefault(k, v)
        else:
            doc["log"] = log


def _iso(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def normalize_messages(messages: Sequence[tuple[bytes, str]], times: Sequence[float] = (),
                       max_message: int = gelf_decode.DEFAULT_MAX_MESSAGE) -> Normalized:
    """The worker's "gelf" format: complete GELF payloads (zlib, gzip or plain) with their
    sender; each becomes a document or a failure."""
    out = Normalized()
    for i, (payload, peer) in enumerate(messages):
        at = times[i] if i < len(times) else None
        now = dt.datetime.fromtimestamp(at, dt.UTC) if at else None
        text = payload
        try:
            text = gelf_decode.inflate(payload, max_message)
            doc = to_ecs(gelf_decode.parse(text, max_message))
            out.docs.append(packetbeat.normalize_event(doc, now))
        except gelf_decode.GelfError as e:
            out.failures.append((f"{peer}: {e.reason}", e.head or payload[:gelf_decode.HEAD]))
            continue
        except NormalizeError as e:  # the message as it came, uncompressed
            out.failures.append((f"{peer}: {e}", text[:FAILED_HEAD]))
            continue
        out.index.append(i)
    return out
