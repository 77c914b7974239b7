"""Packetbeat events (ECS already) → the documents Elastic's network_traffic integration
stores in ``logs-network_traffic.<protocol>-*``, with Graylog's GIM fields beside them.

Packetbeat does the protocol work; what is left is what the integration's pipeline and
Elasticsearch's mapping do: types checked and coerced per the field definitions
(packetbeat_fields.yml and ../ecs_fields.yml; a value that cannot take its field's type is
what Elasticsearch would reject, so the event becomes a failure), ``@metadata`` dropped,
``event.dataset`` / ``data_stream.*`` as the integration names them, ``host.mac`` in ECS form,
``related.ip`` / ``related.hosts`` where Packetbeat left them out, and GIM categorization
(gim.py). GeoIP, ASN, community id (only where missing) and locality are netmeta's enrich
stage, run on the batch afterwards.

Events of other Beats arriving on the same inputs only lose ``@metadata`` and have their
types checked: they are not network_traffic documents.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson
import yaml

from netmeta.event import FIELDS, ip_key, parse_date
from netmeta.normalize import gim

PACKETBEAT = "packetbeat"
DATASET_PREFIX = "network_traffic."


class NormalizeError(ValueError):
    """An event that cannot be stored as it is (Elasticsearch would reject it too)."""


# ---------------------------------------------------------------- field types

@dataclass(frozen=True, slots=True)
class Leaf:
    base: str  # keyword, long, double, boolean, date, ip, flattened
    is_list: bool


@dataclass(frozen=True, slots=True)
class Objects:
    """An array of objects (dns.answers): each element has the fields of ``children``."""

    children: dict[str, Any]


def _load_types() -> dict[str, str]:
    types = {name: f.type + ("[]" if f.is_list else "") for name, f in FIELDS.items()}
    text = resources.files("netmeta.normalize").joinpath("packetbeat_fields.yml").read_text()
    types.update({str(k): str(v) for k, v in yaml.safe_load(text).items()})
    return types


TYPES: dict[str, str] = _load_types()  # dotted name → "keyword", "ip[]", "object[]" ...


def _tree(types: dict[str, str]) -> dict[str, Any]:
    """Nested lookup: name part → sub-tree, Leaf or Objects (one dict walk per event)."""
    root: dict[str, Any] = {}
    for name in sorted(types, key=lambda n: n.count(".")):  # parents before children
        spec = types[name]
        node = root
        *parents, last = name.split(".")
        for p in parents:
            nxt = node.setdefault(p, {})
            node = nxt.children if isinstance(nxt, Objects) else nxt
            if isinstance(node, Leaf):
                raise ValueError(f"packetbeat_fields.yml: {name} is below the leaf {p}")
        if spec == "object[]":
            node[last] = Objects(node.get(last) if isinstance(node.get(last), dict) else {})
        else:
            node[last] = Leaf(spec.removesuffix("[]"), spec.endswith("[]"))
    return root


TREE: dict[str, Any] = _tree(TYPES)

_SCALARS = (str, int, float, bool)


def _coerce_leaf(leaf: Leaf, v: Any, name: str) -> Any:
    """The value as Elasticsearch's mapping takes it (``_source`` keeps numbers in keyword
    fields: so do we); raise NormalizeError when the mapping would refuse it."""
    if leaf.base == "flattened":
        if not isinstance(v, dict):
            raise NormalizeError(f"{name}: expected an object, got {_kind(v)}")
        return v
    if isinstance(v, list):  # every Elasticsearch field takes an array of its type
        return [_coerce_scalar(leaf.base, x, name) for x in v]
    return _coerce_scalar(leaf.base, v, name)


def _coerce_scalar(base: str, v: Any, name: str) -> Any:
    t = type(v)
    if v is None:
        return v
    if base == "keyword":
        if t is str or t is int or t is float or t is bool:
            return v
    elif base == "long":
        if t is int:
            if -(2**63) <= v < 2**63:
                return v
            raise NormalizeError(f"{name}: {v} is out of the range of a long")
        if t is float and v.is_integer():
            return int(v)
        if t is str and re.fullmatch(r"\s*[-+]?\d+\s*", v):
            return int(v)
        if t is float or t is str:  # Elasticsearch's coercion truncates "5.7" and 5.7
            try:
                f = float(v)
                if f == f and abs(f) < 2**63:
                    return int(f)
            except ValueError:
                pass
    elif base == "double":
        if (t is int or t is float) and t is not bool:
            return v
        if t is str:
            try:
                return float(v)
            except ValueError:
                pass
    elif base == "boolean":
        if t is bool:
            return v
        if t is str and v in ("true", "false"):
            return v == "true"
    elif base == "ip":
        if t is str and ip_key(v) is not None:
            return v
    elif base == "date":
        if t is str:
            try:
                parse_date(v)
                return v
            except ValueError:
                pass
        elif (t is int or t is float) and t is not bool:
            return v  # epoch milliseconds, as Elasticsearch's default date format takes it
    raise NormalizeError(f"{name}: {v!r} is not a valid {base}")


def _kind(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            type(None): "null"}.get(type(v), "a number")


def coerce(doc: dict[str, Any], tree: dict[str, Any] = TREE, prefix: str = "") -> None:
    """Check and coerce, in place, every field of ``doc`` that has a type; fields without
    one are kept as they are (Elastic's dynamic mapping would store them too)."""
    for k, v in doc.items():
        node = tree.get(k)
        if node is None:
            continue
        if isinstance(node, Leaf):
            doc[k] = _coerce_leaf(node, v, prefix + k)
        elif isinstance(node, Objects):
            items = v if isinstance(v, list) else [v]
            for x in items:
                if not isinstance(x, dict):
                    raise NormalizeError(f"{prefix}{k}: expected objects, got {_kind(x)}")
                coerce(x, node.children, f"{prefix}{k}.")
        elif isinstance(v, dict):
            coerce(v, node, f"{prefix}{k}.")
        elif v is not None:
            raise NormalizeError(f"{prefix}{k}: expected an object, got {_kind(v)}")


def expand_dots(doc: dict[str, Any]) -> dict[str, Any]:
    """``{"source.ip": x}`` as ``{"source": {"ip": x}}`` (Elasticsearch treats them alike);
    objects of flattened fields keep their keys."""
    return _expand(doc, TREE) if _dotted(doc, TREE) else doc


def _dotted(doc: dict[str, Any], tree: Any) -> bool:
    for k, v in doc.items():
        if "." in k:
            return True
        if isinstance(v, dict):
            node = _child(tree, k)
            if not isinstance(node, Leaf) and _dotted(v, node):
                return True
    return False


def _expand(doc: dict[str, Any], tree: dict[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in doc.items():
        parts = k.split(".") if "." in k else [k]
        cur, node = out, tree
        for p in parts[:-1]:
            node = _child(node, p)
            if isinstance(node, Leaf):  # a flattened field: the rest is one key
                break
            nxt = cur.get(p)
            if not isinstance(nxt, dict):
                nxt = cur[p] = {}
            cur = nxt
        else:
            last = parts[-1]
            node = _child(node, last)
            if isinstance(v, dict) and not isinstance(node, Leaf):
                sub = _expand(v, node if isinstance(node, dict) else None)
                if isinstance(cur.get(last), dict):
                    cur[last].update(sub)
                else:
                    cur[last] = sub
            else:
                cur[last] = v
            continue
        cur[k] = v  # under a flattened prefix: kept with its dotted key
    return out


def _child(node: Any, part: str) -> Any:
    if isinstance(node, Objects):
        node = node.children
    return node.get(part) if isinstance(node, dict) else None


# ---------------------------------------------------------------- normalization

def is_packetbeat(doc: dict[str, Any]) -> bool:
    agent = doc.get("agent")
    if isinstance(agent, dict) and agent.get("type") == PACKETBEAT:
        return True
    meta = doc.get("@metadata")
    return isinstance(meta, dict) and meta.get("beat") == PACKETBEAT


def normalize_event(event: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    """One Beats event as shipped (ECS plus ``@metadata``, ``agent.*``, ``host.*``) → the
    stored document; raises NormalizeError."""
    if not isinstance(event, dict):
        raise NormalizeError(f"an event is a JSON object, got {_kind(event)}")
    doc = expand_dots(event)
    packetbeat = is_packetbeat(doc)
    doc.pop("@metadata", None)  # Beats' routing metadata: Elasticsearch does not store it
    coerce(doc)
    if doc.get("@timestamp") is None:
        doc["@timestamp"] = _iso(now or dt.datetime.now(dt.UTC))
    if packetbeat:
        _network_traffic(doc)
        gim.categorize(doc)
    return doc


def _network_traffic(doc: dict[str, Any]) -> None:
    """What the network_traffic integration adds to what Packetbeat sent."""
    protocol = doc.get("type")
    event = doc.get("event") if isinstance(doc.get("event"), dict) else None
    if event is None:
        event = doc["event"] = {}
    dataset = event.get("dataset")
    if not isinstance(protocol, str) or not protocol:
        # no transaction type: the dataset of a standalone Packetbeat says it ("dns")
        protocol = dataset.removeprefix(DATASET_PREFIX) if isinstance(dataset, str) else ""
    if protocol:
        name = DATASET_PREFIX + protocol
        if not (isinstance(dataset, str) and dataset.startswith(DATASET_PREFIX)):
            event["dataset"] = name
        ds = doc.get("data_stream")
        if not isinstance(ds, dict):
            doc["data_stream"] = {"dataset": event["dataset"], "namespace": "default",
                                  "type": "logs"}
    host = doc.get("host")
    tags = doc.get("tags")
    if isinstance(host, dict):
        if isinstance(tags, list) and "forwarded" in tags:
            del doc["host"]  # the pipeline: a forwarded event's host is not the sender's
        elif "mac" in host:
            host["mac"] = _macs(host["mac"])
    _related(doc)


def _macs(v: Any) -> Any:
    """ECS form of MAC addresses: upper case, dash separated (the pipeline's gsubs)."""
    def one(m: Any) -> Any:
        if not isinstance(m, str):
            return m
        hexes = re.sub(r"[-:.]", "", m)
        return "-".join(hexes[i:i + 2] for i in range(0, len(hexes), 2)).upper()
    return [one(m) for m in v] if isinstance(v, list) else one(v)


_IP_FIELDS = (("source", "ip"), ("destination", "ip"), ("client", "ip"), ("server", "ip"))
_HOST_FIELDS = (("source", "domain"), ("destination", "domain"), ("client", "domain"),
                ("server", "domain"), ("url", "domain"))


def _related(doc: dict[str, Any]) -> None:
    related = doc.get("related")
    if not isinstance(related, dict):
        related = {}
    if "ip" not in related:
        ips = [_get(doc, a, b) for a, b in _IP_FIELDS]
        resolved = _get(doc, "dns", "resolved_ip")
        ips += resolved if isinstance(resolved, list) else [resolved]
        if found := _unique(x for x in ips if isinstance(x, str) and _is_ip(x)):
            related["ip"] = found
    hosts = [x for x in (_get(doc, a, b) for a, b in _HOST_FIELDS) if isinstance(x, str) and x]
    if "hosts" not in related and hosts:
        related["hosts"] = _unique(hosts)
    observer = doc.get("observer")
    if isinstance(observer, dict):  # the pipeline appends the observer, without duplicates
        name = observer.get("hostname")
        if isinstance(name, str) and name:
            related["hosts"] = _unique([*_listed(related.get("hosts")), name])
        ips = observer.get("ip")
        if isinstance(ips, list):
            related["ip"] = _unique([*_listed(related.get("ip")), *ips])
    if related:
        doc["related"] = related


def _listed(v: Any) -> list[Any]:
    """A field's values as the append processor sees them: none, one, or an array."""
    return [] if v is None else v if isinstance(v, list) else [v]


def _get(doc: dict[str, Any], a: str, b: str) -> Any:
    sub = doc.get(a)
    return sub.get(b) if isinstance(sub, dict) else None


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.split("%", 1)[0])
        return True
    except ValueError:
        return False


def _unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------- batches

@dataclass(slots=True)
class Normalized:
    docs: list[dict[str, Any]] = field(default_factory=list)
    index: list[int] = field(default_factory=list)  # position of each doc in the batch
    failures: list[tuple[str, bytes]] = field(default_factory=list)  # (why, original)


def normalize_batch(events: Any, now: dt.datetime | None = None) -> Normalized:
    """A decoded JSON array of Beats events; one bad event costs only itself."""
    out = Normalized()
    if not isinstance(events, list):
        out.failures.append((f"expected a JSON array of events, got {_kind(events)}",
                             orjson.dumps(events)))
        return out
    now = now or dt.datetime.now(dt.UTC)
    for i, event in enumerate(events):
        try:
            out.docs.append(normalize_event(event, now))
        except NormalizeError as e:
            out.failures.append((f"event {i + 1} of the batch: {e}", orjson.dumps(event)))
            continue
        out.index.append(i)
    return out


def normalize_json(data: bytes, now: dt.datetime | None = None) -> Normalized:
    """The worker's "packetbeat" format: the JSON array of a batch of Beats events."""
    try:
        events = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        return Normalized(failures=[(f"not a JSON array of events: {e}", data)])
    return normalize_batch(events, now)
