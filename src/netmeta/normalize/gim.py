"""Graylog Information Model (GIM) categorization of Packetbeat events, as Graylog's
Illuminate Packetbeat pack does it for DNS, HTTP and flow events: ``gim_event_type_code``
and the four fields Illuminate derives from it (gim_event_types.csv), plus the GIM field
names beside the ECS ones (gim_fields.yml), so that Graylog searches and dashboards work.

Which code (GIM: digits 1-2 category, 3-4 subcategory, 5-6 type):

- DNS: 140000 a query without answer (``dns.type: query``), 140300 an answer whose
  response code is not NOERROR (NXDOMAIN, SERVFAIL, REFUSED ...: resolution failed),
  140200 any other answer; 149999 when neither is known.
- HTTP: 180200 a request with its response (request and response: communication), 180100 a
  request alone (Packetbeat could not match a response), 180000 otherwise.
- Flow: 120500 (Graylog's NetFlow pack uses the same code for flow records).

Other Packetbeat protocols (TLS, ICMP, MySQL ...) get the GIM field names but no code, as
in the pack, which categorizes only DNS, HTTP and flow events.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

EVENT_FIELDS = ("gim_event_type_code", "gim_event_class", "gim_event_category",
                "gim_event_subcategory", "gim_event_type")


@dataclass(frozen=True, slots=True)
class EventType:
    code: str
    klass: str  # gim_event_class, "" when the category has none
    category: str
    subcategory: str
    type: str


def _load_types() -> dict[str, EventType]:
    text = resources.files("netmeta.normalize").joinpath("gim_event_types.csv").read_text()
    rows = csv.DictReader(line for line in text.splitlines() if not line.startswith("#"))
    return {r["code"]: EventType(r["code"], r["class"], r["category"], r["subcategory"],
                                 r["type"]) for r in rows}


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    sources: tuple[tuple[str, ...], ...]  # ECS paths, first present wins
    case: str = ""
    table: dict[str, str] | None = None
    each: bool = False


def _load_rules() -> list[Rule]:
    text = resources.files("netmeta.normalize").joinpath("gim_fields.yml").read_text()
    spec = yaml.safe_load(text)
    maps = spec.get("maps", {})
    rules = []
    for name, r in spec["fields"].items():
        table = maps[r["map"]] if "map" in r else None
        rules.append(Rule(name, tuple(_path(p) for p in r["from"]), r.get("case", ""),
                          {str(k): str(v) for k, v in table.items()} if table else None,
                          bool(r.get("each"))))
    return rules


def _path(dotted: str) -> tuple[str, ...]:
    # a flattened field's key may hold a dot-free hyphen name (headers.content-type)
    return tuple(dotted.split("."))


EVENT_TYPES: dict[str, EventType] = _load_types()
RULES: list[Rule] = _load_rules()
_RULE_ROOTS = [(r, frozenset(path[0] for path in r.sources)) for r in RULES]
DERIVED = ("source_ipv6", "destination_ipv6", "http_bytes")  # computed in gim_fields
FIELD_NAMES: frozenset[str] = frozenset((*EVENT_FIELDS, *(r.name for r in RULES), *DERIVED))


def _lookup(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    cur: Any = doc
    for p in path:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def each_value(items: Any, last: str) -> list[Any] | None:
    """The ``last`` member of every object of the array ``items`` (an object alone counts
    as an array of one); None when there is none."""
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        return None
    out = [x.get(last) for x in items if isinstance(x, dict) and x.get(last) is not None]
    return out or None


def _each(doc: dict[str, Any], path: tuple[str, ...]) -> list[Any] | None:
    """``dns.answers.data``: the ``data`` of every element of the array ``dns.answers``."""
    return each_value(_lookup(doc, path[:-1]), path[-1])


def _value(doc: dict[str, Any], rule: Rule) -> Any:
    for path in rule.sources:
        v = _each(doc, path) if rule.each else _lookup(doc, path)
        if v is None or v == "" or v == []:
            continue
        if rule.case:
            v = _case(v, rule.case)
        if rule.table is not None:
            v = _translate(v, rule.table)
            if v is None:
                continue
        return v
    return None


def _case(v: Any, case: str) -> Any:
    if isinstance(v, list):
        return [_case(x, case) for x in v]
    if not isinstance(v, str):
        return v
    return v.lower() if case == "lower" else v.upper()


def _translate(v: Any, table: dict[str, str]) -> Any:
    if isinstance(v, list):
        out = [table[str(x)] for x in v if str(x) in table]
        return out or None
    return table.get(str(v))


def type_code(get: Callable[[str], Any]) -> str | None:
    """The GIM event type code of a Packetbeat event (None: not categorized), from a getter
    of its fields by dotted name: the nested document's (event_type_code) or the flat
    walk's (normalize/packetbeat_flat.py)."""
    kind = get("type")
    if not isinstance(kind, str):
        dataset = get("event.dataset")
        kind = dataset.rsplit(".", 1)[-1] if isinstance(dataset, str) else ""
    if kind == "dns":
        dns_type = get("dns.type")
        if dns_type == "query":
            return "140000"
        if dns_type == "answer":
            return "140200" if get("dns.response_code") in (None, "NOERROR") else "140300"
        return "149999"
    if kind == "http":
        if get("http.response.status_code") is not None:
            return "180200"
        if get("http.request.method") is not None:
            return "180100"
        return "180000"
    if kind == "flow":
        return "120500"
    return None


def event_type_code(doc: dict[str, Any]) -> str | None:
    """The GIM event type code of a nested Packetbeat event (None: not categorized)."""
    return type_code(lambda name: _lookup(doc, tuple(name.split("."))))


def gim_fields(doc: dict[str, Any]) -> dict[str, Any]:
    """GIM name → value for an ECS document (categorization included)."""
    out = event_fields(event_type_code(doc))
    keys = doc.keys()
    for rule, roots in _RULE_ROOTS:
        if roots.isdisjoint(keys):  # none of its sources can be there: most rules, per event
            continue
        v = _value(doc, rule)
        if v is not None:
            out[rule.name] = v
    return add_derived(out)


def event_fields(code: str | None) -> dict[str, Any]:
    """The code's gim_event_* fields (none for None)."""
    out: dict[str, Any] = {}
    if code is not None:
        t = EVENT_TYPES[code]
        out["gim_event_type_code"] = code
        if t.klass:
            out["gim_event_class"] = t.klass
        out["gim_event_category"] = t.category
        out["gim_event_subcategory"] = t.subcategory
        out["gim_event_type"] = t.type
    return out


def add_derived(out: dict[str, Any]) -> dict[str, Any]:
    """The GIM fields computed from other GIM fields (DERIVED), added to ``out``."""
    src = out.get("source_ip")
    dst = out.get("destination_ip")
    if isinstance(src, str) and ":" in src:
        out["source_ipv6"] = src
    if isinstance(dst, str) and ":" in dst:
        out["destination_ipv6"] = dst
    req, resp = out.get("http_request_bytes"), out.get("http_response_bytes")
    if isinstance(req, int) and isinstance(resp, int):
        out["http_bytes"] = req + resp
    return out


def categorize(doc: dict[str, Any]) -> dict[str, Any]:
    """Add the GIM fields to ``doc`` (in place; fields it already has are kept)."""
    for k, v in gim_fields(doc).items():
        doc.setdefault(k, v)
    return doc
