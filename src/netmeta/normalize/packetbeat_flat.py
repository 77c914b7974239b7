"""Packetbeat events → event rows through a flat dict of dotted paths.

:func:`netmeta.normalize.packetbeat.normalize_event` is the reference: it expands dotted
keys, coerces the nested document field by field, adds what the network_traffic
integration adds and the GIM fields, and :func:`netmeta.event.split_document` then walks the
result again to split it into typed columns and the JSON of the rest: three walks of a deep
document per event.

Here an event is walked once, into a flat dict of dotted paths (leaf values coerced on the
way), and every later step works on that dict: the integration's additions, GIM (whose rule
sources are resolved once per *shape*, the tuple of an event's paths: a batch holds few),
and the split, which puts each path in its typed column or at its place in the rest.
packetbeat_shapes.py compiles the walk and the split of frequent shapes; it uses the steps
in between from here.

Anything unusual (a dotted key, a value the mapping would refuse) raises :class:`Slow`: the
event then goes through the reference, so that every path gives the same rows and the same
failures (tests/test_packetbeat_batch.py compares them).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from netmeta.event import _PARENTS, FIELDS, Field, _coerce, ip_key, parse_date
from netmeta.normalize import gim
from netmeta.normalize import packetbeat as ref
from netmeta.normalize.packetbeat import Leaf, NormalizeError, Objects


class Slow(Exception):
    """The event needs the reference normalizer."""


# ---------------------------------------------------------------- the walk

# (mapping type, Python type) pairs the mapping takes as they are
_AS_IS = frozenset({("keyword", str), ("keyword", int), ("keyword", float), ("keyword", bool),
                    ("double", int), ("double", float), ("boolean", bool), ("flattened", dict)})
_LONG = 2**63

_valid_ip = lru_cache(maxsize=1 << 16)(lambda text: ip_key(text) is not None)
_is_ip = lru_cache(maxsize=1 << 16)(ref._is_ip)  # related.ip's test, remembered
_mac = lru_cache(maxsize=1 << 12)(lambda m: ref._macs(m))


def _leaf_value(leaf: Leaf, v: Any, path: str) -> Any:
    t = type(v)
    if (leaf.base, t) in _AS_IS or (v is None and leaf.base != "flattened"):
        return v
    if t is int and leaf.base == "long":
        if -_LONG <= v < _LONG:
            return v
        raise Slow
    if leaf.base == "ip" and t is str:
        if _valid_ip(v):
            return v
        raise Slow
    try:
        return ref._coerce_leaf(leaf, v, path)  # lists, strings to numbers, dates ...
    except NormalizeError:
        raise Slow from None


def _has_dots(d: dict[str, Any]) -> bool:
    """A dotted key anywhere in an object no field definition covers (the reference
    expands those)."""
    return any("." in k or (type(v) is dict and _has_dots(v)) for k, v in d.items())


def _walk(d: dict[str, Any], node: dict[str, Any], prefix: str, flat: dict[str, Any]) -> None:
    for k, v in d.items():
        if "." in k:
            raise Slow
        path = prefix + k
        child = node.get(k)
        if child is None:  # no definition: kept as it is, whole
            if type(v) is dict and _has_dots(v):
                raise Slow
            flat[path] = v
        elif type(child) is Leaf:
            flat[path] = _leaf_value(child, v, path)
        elif type(child) is Objects:
            if type(v) is dict and _has_dots(v):
                raise Slow
            for x in v if type(v) is list else [v]:
                if type(x) is not dict:
                    raise Slow
                try:
                    ref.coerce(x, child.children, path + ".")
                except NormalizeError:
                    raise Slow from None
            flat[path] = v
        elif type(v) is dict:
            if v:
                _walk(v, child, path + ".", flat)
            else:
                flat[path] = v  # an empty object: it still counts as one (data_stream ...)
        elif v is None:
            flat[path] = v
        else:
            raise Slow  # an object field with a scalar: the reference says why


def _flatten(event: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the event's paths → coerced values without ``@metadata``, is it Packetbeat's)."""
    flat: dict[str, Any] = {}
    meta = event.get("@metadata")
    if "@metadata" in event:
        if type(meta) is dict and _has_dots(meta):
            raise Slow
        event = {k: v for k, v in event.items() if k != "@metadata"}
    _walk(event, ref.TREE, "", flat)
    packetbeat = flat.get("agent.type") == ref.PACKETBEAT or (
        type(meta) is dict and meta.get("beat") == ref.PACKETBEAT)
    return flat, packetbeat


# ---------------------------------------------------------------- plans


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one shape (the tuple of an event's paths) needs, found once."""

    parents: frozenset[str]  # objects with paths below them
    roots: frozenset[str]  # first parts of every path


# where a GIM rule's source is in the flat dict: (flat path, the rest of the path, last part)
_Where = tuple[str, tuple[str, ...], str]


def _source(keys: frozenset[str], path: tuple[str, ...]) -> tuple[str, tuple[str, ...]] | None:
    """The path of the flat dict that holds ``path`` (itself, or an object kept whole above
    it: a flattened field's keys), and what is left to look up inside its value."""
    for i in range(len(path), 0, -1):
        head = ".".join(path[:i])
        if head in keys:
            return head, path[i:]
    return None


@lru_cache(maxsize=4096)
def _plan_for(keys: tuple[str, ...]) -> _Plan:
    parents = {k.rsplit(".", 1)[0] for k in keys if "." in k}
    parents |= {p.rsplit(".", i)[0] for p in parents for i in range(1, p.count(".") + 1)}
    return _Plan(frozenset(parents), frozenset(k.split(".", 1)[0] for k in keys))


@lru_cache(maxsize=4096)
def _rules_for(keys: tuple[str, ...]) -> tuple[tuple[gim.Rule, tuple[_Where, ...]], ...]:
    """The GIM rules with a source that can be in events of this shape (after the
    integration's steps), and where each source is."""
    have = frozenset(keys)
    rules = []
    for rule in gim.RULES:
        found = []
        for path in rule.sources:
            src = _source(have, path[:-1] if rule.each else path)
            if src is not None:
                found.append((*src, path[-1]))
        if found:
            rules.append((rule, tuple(found)))
    return tuple(rules)


def _is_object(flat: dict[str, Any], plan: _Plan, name: str) -> bool:
    return name in plan.parents or type(flat.get(name)) is dict


# ---------------------------------------------------------------- the integration's steps


def _network_traffic(flat: dict[str, Any], plan: _Plan) -> None:
    """packetbeat._network_traffic on the flat dict."""
    protocol = flat.get("type")
    if not _is_object(flat, plan, "event"):
        flat.pop("event", None)  # null: the reference makes it an object
    dataset = flat.get("event.dataset")
    if not isinstance(protocol, str) or not protocol:
        protocol = dataset.removeprefix(ref.DATASET_PREFIX) if isinstance(dataset, str) else ""
    if protocol:
        if not (isinstance(dataset, str) and dataset.startswith(ref.DATASET_PREFIX)):
            flat["event.dataset"] = ref.DATASET_PREFIX + protocol
        if not _is_object(flat, plan, "data_stream"):
            flat.pop("data_stream", None)
            flat["data_stream.dataset"] = flat["event.dataset"]
            flat["data_stream.namespace"] = "default"
            flat["data_stream.type"] = "logs"
    if _is_object(flat, plan, "host"):
        tags = flat.get("tags")
        if isinstance(tags, list) and "forwarded" in tags:
            for k in [k for k in flat if k == "host" or k.startswith("host.")]:
                del flat[k]
        elif "host.mac" in flat:
            macs = flat["host.mac"]
            flat["host.mac"] = ([_mac(m) if type(m) is str else m for m in macs]
                                if type(macs) is list else ref._macs(macs))
    _related(flat, plan)


def _related(flat: dict[str, Any], plan: _Plan) -> None:
    related_object = _is_object(flat, plan, "related")
    ips_now = flat.get("related.ip") if related_object else None
    hosts_now = flat.get("related.hosts") if related_object else None
    has_ip = related_object and "related.ip" in flat
    has_hosts = related_object and "related.hosts" in flat
    ips, hosts = ips_now, hosts_now
    if not has_ip:
        found = [flat.get(a + "." + b) for a, b in ref._IP_FIELDS]
        resolved = flat.get("dns.resolved_ip")
        found += resolved if isinstance(resolved, list) else [resolved]
        unique = ref._unique(x for x in found if isinstance(x, str) and _is_ip(x))
        if unique:
            ips, has_ip = unique, True
    names = [x for x in (flat.get(a + "." + b) for a, b in ref._HOST_FIELDS)
             if isinstance(x, str) and x]
    if not has_hosts and names:
        hosts, has_hosts = ref._unique(names), True
    if _is_object(flat, plan, "observer"):
        name = flat.get("observer.hostname")
        if isinstance(name, str) and name:
            hosts, has_hosts = ref._unique([*ref._listed(hosts), name]), True
        observed = flat.get("observer.ip")
        if isinstance(observed, list):
            ips, has_ip = ref._unique([*ref._listed(ips), *observed]), True
    if not related_object and (has_ip or has_hosts):
        flat.pop("related", None)
    if has_ip:
        flat["related.ip"] = ips
    if has_hosts:
        flat["related.hosts"] = hosts


def _lookup(flat: dict[str, Any], where: _Where) -> Any:
    cur = flat.get(where[0])
    for p in where[1]:
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def _each(flat: dict[str, Any], where: _Where) -> Any:
    return gim.each_value(_lookup(flat, where), where[2])


def _gim(flat: dict[str, Any]) -> dict[str, Any]:
    """gim.gim_fields on the flat dict."""
    out = gim.event_fields(gim.type_code(flat.get))
    out.update(_gim_function(tuple(flat))(flat))
    return gim.add_derived(out)


@lru_cache(maxsize=4096)
def _gim_function(keys: tuple[str, ...]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The GIM rules of one shape as straight-line code: each rule takes its first source
    with a value (gim._value), in the rules' order."""
    consts: dict[str, Any] = {"_lookup": _lookup, "_each": _each, "_case": gim._case,
                              "_translate": gim._translate, "type": type, "str": str}
    lines = ["def gim(flat):", "    out = {}"]
    for rule, sources in _rules_for(keys):
        lines.append("    done = False")
        for where in sources:
            c = f"C{len(consts)}"
            consts[c] = where
            if rule.each:
                fetch = f"_each(flat, {c})"
            elif where[1]:
                fetch = f"_lookup(flat, {c})"
            else:
                fetch = f"flat.get({where[0]!r})"
            lines += ["    if not done:", f"        x = {fetch}",
                      "        if x is not None and x != '' and x != []:"]
            if rule.case:
                method = "lower" if rule.case == "lower" else "upper"
                lines.append(f"            x = x.{method}() if type(x) is str "
                             f"else _case(x, {rule.case!r})")
            if rule.table is not None:
                t = f"C{len(consts)}"
                consts[t] = rule.table
                lines += [f"            x = _translate(x, {t})", "            if x is not None:",
                          f"                out[{rule.name!r}] = x", "                done = True"]
            else:
                lines += [f"            out[{rule.name!r}] = x", "            done = True"]
    lines.append("    return out")
    exec(compile("\n".join(lines) + "\n", "<gim rules>", "exec"), consts)  # noqa: S102
    return consts["gim"]  # type: ignore[no-any-return]


# ---------------------------------------------------------------- the split

# How each path goes into the row: its column (when its value takes the column's form)
# or its place in the rest.
_Dest = tuple[Field | None, tuple[str, ...], bool]
_DESTS: dict[str, _Dest] = {}


def _dest(path: str) -> _Dest:
    d = _DESTS[path] = (FIELDS.get(path), tuple(path.split(".")), path + "." in _PARENTS)
    return d


_COLUMN_AS_IS = frozenset({("keyword", str), ("long", int), ("double", float),
                           ("boolean", bool)})


def _place(path: str, v: Any, typed: dict[str, Any], rest: dict[str, Any]) -> None:
    """Put one path's (coerced) value in its column, or at its place in the rest."""
    f, parts, parent = _DESTS.get(path) or _dest(path)
    if f is not None and v is not None:
        t = type(v)
        if not f.is_list and (f.type, t) in _COLUMN_AS_IS:
            if t is not int or -_LONG <= v < _LONG:
                typed[path] = v
                return
        elif f.type == "date" and t is str and not f.is_list:
            typed[path] = parse_date(v)  # valid: the walk checked it
            return
        elif f.type == "ip" and t is str and not f.is_list:
            typed[path] = v  # valid: the walk checked it
            return
        else:
            try:
                typed[path] = _coerce(f, v)
                return
            except (ValueError, TypeError, OverflowError):
                pass
    elif parent and type(v) is dict and not v:
        return  # an empty object with typed fields below: nothing left of it
    cur = rest
    for p in parts[:-1]:
        nxt = cur.get(p)
        if type(nxt) is not dict:
            nxt = cur[p] = {}
        cur = nxt
    cur[parts[-1]] = {} if type(v) is dict and not v else v  # never the event's own


def _row(flat: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    typed: dict[str, Any] = {}
    rest: dict[str, Any] = {}
    for path, v in flat.items():
        _place(path, v, typed, rest)
    return typed, orjson.dumps(rest).decode() if rest else None


# ---------------------------------------------------------------- an event


def integrate(flat: dict[str, Any], plan: _Plan, packetbeat: bool, now_iso: str
              ) -> dict[str, Any]:
    """``@timestamp`` where missing and, for Packetbeat's events, the integration's steps on
    the flat dict; returns the GIM fields to add beside it (those the event lacks)."""
    if flat.get("@timestamp") is None:
        flat["@timestamp"] = now_iso
    if not packetbeat:
        return {}
    _network_traffic(flat, plan)
    return {k: v for k, v in _gim(flat).items() if k not in plan.roots and k not in flat}


def flat_row(event: Any, now_iso: str) -> tuple[dict[str, Any], str | None]:
    """The row of one event (raises :class:`Slow` for one that needs the reference)."""
    if type(event) is not dict:
        raise Slow
    flat, packetbeat = _flatten(event)
    plan = _plan_for(tuple(flat))
    flat.update(integrate(flat, plan, packetbeat, now_iso))
    return _row(flat)
