"""Compiled shapes: the walk and the split of packetbeat_flat.py, as straight-line Python
made once per event shape.

A shape is an event's structure: its keys at every level (as far as the field definitions
reach) and the Python type of every value. Packetbeat sends few shapes per protocol, so for
each one seen a function is generated that reads every value by its key, checks that the
event has exactly that structure (the length of every object, the type of every value),
coerces what needs it and builds the typed row and the rest as dict literals: no loop over
paths, no lookup of what a path is.

The integration's steps and GIM depend on values, not on the shape: they run on the flat
dict the function also returns (packetbeat_flat.integrate), and the few paths they may add
or change are placed afterwards. An event no compiled shape fits falls back to
packetbeat_flat.flat_row; a value the mapping would refuse raises :class:`Slow` as there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from netmeta.event import _PARENTS, FIELDS, parse_date
from netmeta.normalize import gim
from netmeta.normalize import packetbeat as ref
from netmeta.normalize.packetbeat import Leaf, NormalizeError, Objects
from netmeta.normalize.packetbeat_flat import (
    _AS_IS,
    _LONG,
    Slow,
    _has_dots,
    _leaf_value,
    _place,
    _Plan,
    _plan_for,
    _valid_ip,
    integrate,
)

# Paths the integration's steps may add or change: placed after them, not by the function.
WATCHED = frozenset({"@timestamp", "event", "event.dataset", "data_stream", "host.mac",
                     "related", "related.ip", "related.hosts", "data_stream.dataset",
                     "data_stream.namespace", "data_stream.type"})
MAX_PER_KEYS = 32  # compiled shapes tried for one set of top-level keys
MAX_SHAPES = 2048

if any(n in FIELDS or "." in n for n in gim.FIELD_NAMES):  # they go straight to the rest
    raise ValueError("a GIM field name is a typed field or dotted: update packetbeat_shapes")


class _Miss(Exception):
    """The event does not have this shape."""


class _Flat(Exception):
    """This event has the shape but a value the compiled code does not take: the flat path."""


class _NotCompiled(Exception):
    """A shape left to the flat path (dotted keys, values the reference refuses)."""


@lru_cache(maxsize=1 << 14)
def _date(v: str) -> Any:
    try:
        return parse_date(v)  # an event's start, end and @timestamp are often one time
    except ValueError:
        raise Slow from None


def _objects(children: dict[str, Any], v: Any, path: str) -> None:
    """An array of objects (dns.answers): each element coerced as the reference does."""
    for x in v if type(v) is list else [v]:
        if type(x) is not dict or _has_dots(x):
            raise Slow
        try:
            ref.coerce(x, children, path + ".")
        except NormalizeError:
            raise Slow from None


def _unknown_dict(v: dict[str, Any]) -> None:
    if _has_dots(v):
        raise Slow


_RUNTIME = {"_Miss": _Miss, "_Flat": _Flat, "Slow": Slow, "_STR": frozenset({str}),
            "map": map, "all": all, "_date": _date, "_objects": _objects,
            "_unknown_dict": _unknown_dict, "_valid_ip": _valid_ip,
            "_leaf_value": _leaf_value, "_place": _place, "dict": dict, "type": type,
            "len": len, "str": str, "float": float}


@dataclass(frozen=True, slots=True)
class Shape:
    run: Callable[[dict[str, Any]], tuple[dict[str, Any], dict[str, Any], dict[str, Any],
                                          bool]]
    plan: _Plan
    post: tuple[str, ...]  # watched paths to place after the integration's steps
    source: str


class _Gen:
    """Generates the function of one shape from an event of that shape."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.flat: list[tuple[str, str]] = []  # (path, expression)
        self.typed: list[tuple[str, str]] = []
        self.rest: dict[str, Any] = {}  # nested: part → expression or sub-dict
        self.late: list[str] = []  # generic placements, after the literals
        self.placed: set[str] = set()
        self.n = 0
        self.agent_type = "None"
        self.meta = "None"

    def var(self) -> str:
        self.n += 1
        return f"v{self.n}"

    def const(self, obj: Any) -> str:
        name = f"C{len(self.consts)}"
        self.consts[name] = obj
        return name

    def guard(self, v: str, t: type) -> None:
        if t is type(None):
            self.lines.append(f"if {v} is not None: raise _Miss")
        else:
            self.lines.append(f"if type({v}) is not {self.const(t)}: raise _Miss")

    def put_rest(self, path: str, expr: str) -> None:
        cur = self.rest
        *parents, last = path.split(".")
        for p in parents:
            nxt = cur.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise _NotCompiled
            cur = nxt
        if last in cur:
            raise _NotCompiled
        cur[last] = expr

    def place(self, path: str, expr: str, t: type | None, column: str | None = None,
              checked: bool = False) -> None:
        """Where the value goes; ``t`` None: its type is known only at run time."""
        if path in WATCHED:
            return
        self.placed.add(path)
        f = FIELDS.get(path)
        if t is list and f is not None and f.is_list and f.type in ("keyword", "ip"):
            self.typed.append((path, expr))  # the walk checked: strings (valid addresses)
        elif t is None or (f is not None and f.is_list):
            self.late.append(f"_place({path!r}, {expr}, typed, rest)")
        elif t is type(None) or f is None:
            self.put_rest(path, expr)
        elif (f.type, t) in (("keyword", str), ("boolean", bool), ("double", float)):
            self.typed.append((path, expr))
        elif f.type == "long" and t is int:
            if not checked:
                self.lines.append(f"if not {-_LONG} <= {expr} < {_LONG}: raise Slow")
            self.typed.append((path, expr))
        elif f.type == "date" and t is str and column is not None:
            self.typed.append((path, column))
        elif f.type == "ip" and t is str:
            self.typed.append((path, expr))
        elif f.type == "keyword" and t in (int, float):
            self.typed.append((path, f"str({expr})"))
        elif f.type == "keyword" and t is bool:
            self.typed.append((path, f"('true' if {expr} else 'false')"))
        elif f.type == "double" and t is int:
            self.typed.append((path, f"float({expr})"))
        else:
            self.late.append(f"_place({path!r}, {expr}, typed, rest)")

    def obj(self, x: str, d: dict[str, Any], node: dict[str, Any], prefix: str) -> None:
        self.lines.append(f"if type({x}) is not dict or len({x}) != {len(d)}: raise _Miss")
        for k, v in d.items():
            if "." in k:
                raise _NotCompiled
            path = prefix + k
            if not prefix and k == "@metadata":
                self.meta = self.var()
                self.lines.append(f"{self.meta} = {x}[{k!r}]")
                self.guard(self.meta, type(v))
                if type(v) is dict:
                    self.lines.append(f"_unknown_dict({self.meta})")
                continue
            child = node.get(k)
            if type(child) is dict and type(v) is dict and v:
                sub = self.var()
                self.lines.append(f"{sub} = {x}[{k!r}]")
                self.obj(sub, v, child, path + ".")
                continue
            val = self.var()
            self.lines.append(f"{val} = {x}[{k!r}]")
            self.guard(val, type(v))
            self.flat.append((path, val))
            if child is None:
                if type(v) is dict:
                    self.lines.append(f"_unknown_dict({val})")
                self.place(path, val, type(v))
            elif type(child) is Leaf:
                self.leaf(child, path, val, v)
            elif type(child) is Objects:
                self.lines.append(f"_objects({self.const(child.children)}, {val}, {path!r})")
                self.place(path, val, None)
            elif type(v) is dict:  # an empty object
                self.lines.append(f"if {val}: raise _Miss")
                if path + "." not in _PARENTS:
                    self.place(path, "{}", dict)
            elif v is None:
                self.place(path, val, type(None))
            else:
                raise _NotCompiled  # an object field with a scalar: the reference says why

    def leaf(self, leaf: Leaf, path: str, val: str, v: Any) -> None:
        t = type(v)
        if path == "agent.type":
            self.agent_type = val
        if (leaf.base, t) in _AS_IS:
            self.place(path, val, t)
        elif leaf.base == "long" and t is int:
            self.lines.append(f"if not {-_LONG} <= {val} < {_LONG}: raise Slow")
            self.place(path, val, t, checked=True)
        elif v is None:
            if leaf.base == "flattened":
                raise _NotCompiled
            self.place(path, val, t)
        elif leaf.base == "ip" and t is str:
            self.lines.append(f"if not _valid_ip({val}): raise Slow")
            self.place(path, val, t)
        elif leaf.base in ("keyword", "ip") and t is list:
            self.lines.append(f"if not _STR.issuperset(map(type, {val})): raise _Flat")
            if leaf.base == "ip":
                self.lines.append(f"if not all(map(_valid_ip, {val})): raise Slow")
            self.place(path, val, list)
        elif leaf.base == "date" and t is str:
            column = self.var()
            self.lines.append(f"{column} = _date({val})")
            self.place(path, val, t, column)
        else:
            self.lines.append(f"{val} = _leaf_value({self.const(leaf)}, {val}, {path!r})")
            self.place(path, val, None)

    def source(self) -> str:
        packetbeat = (f"({self.agent_type} == 'packetbeat' or (type({self.meta}) is dict "
                      f"and {self.meta}.get('beat') == 'packetbeat'))")
        body = [*self.lines,
                "flat = {" + ", ".join(f"{p!r}: {e}" for p, e in self.flat) + "}",
                "typed = {" + ", ".join(f"{p!r}: {e}" for p, e in self.typed) + "}",
                f"rest = {_literal(self.rest)}",
                *self.late,
                f"return flat, typed, rest, {packetbeat}"]
        return "def run(e):\n" + "".join(f"    {line}\n" for line in body)


def _literal(tree: dict[str, Any]) -> str:
    return "{" + ", ".join(f"{k!r}: {_literal(v) if isinstance(v, dict) else v}"
                           for k, v in tree.items()) + "}"


_BY_SOURCE: dict[str, Shape] = {}
_BY_KEYS: dict[tuple[str, ...], list[Shape]] = {}


def compile_shape(event: dict[str, Any]) -> Shape | None:
    """The compiled shape of this event (None: left to the flat path)."""
    gen = _Gen()
    try:
        gen.obj("e", event, ref.TREE, "")
    except _NotCompiled:
        return None
    source = gen.source()
    shape = _BY_SOURCE.get(source)
    if shape is None:
        names = dict(_RUNTIME, **gen.consts)
        exec(compile(source, "<packetbeat shape>", "exec"), names)  # noqa: S102 - our own
        keys = tuple(p for p, _ in gen.flat)
        post = tuple(sorted(WATCHED - gen.placed))
        shape = Shape(names["run"], _plan_for(keys), post, source)
        if len(_BY_SOURCE) >= MAX_SHAPES:
            _BY_SOURCE.clear()
            _BY_KEYS.clear()
        _BY_SOURCE[source] = shape
    return shape


def shaped_row(event: Any, now_iso: str) -> tuple[dict[str, Any], str | None] | None:
    """The row of one event by a compiled shape (None: no shape; raises Slow)."""
    if type(event) is not dict:
        return None
    keys = tuple(event)
    shapes = _BY_KEYS.get(keys)
    if shapes is None:
        shapes = _BY_KEYS[keys] = []
    for i, shape in enumerate(shapes):
        try:
            out = shape.run(event)
        except (_Miss, KeyError):
            continue
        except _Flat:
            return None
        if i > 3:  # the shapes seen most often come first
            shapes.insert(0, shapes.pop(i))
        return _finish(shape, *out, now_iso)
    if len(shapes) >= MAX_PER_KEYS:
        return None
    shape = compile_shape(event)
    if shape is None:
        return None
    if shape not in shapes:
        shapes.append(shape)
    try:
        out = shape.run(event)
    except (_Miss, KeyError, _Flat):
        return None  # _Miss and KeyError are not expected: the shape was made from it
    return _finish(shape, *out, now_iso)


def _finish(shape: Shape, flat: dict[str, Any], typed: dict[str, Any], rest: dict[str, Any],
            packetbeat: bool, now_iso: str) -> tuple[dict[str, Any], str | None] | None:
    if packetbeat and "host" in shape.plan.parents:
        tags = flat.get("tags")
        if isinstance(tags, list) and "forwarded" in tags:
            return None  # the integration drops host.*, placed already: the flat path
    rest.update(integrate(flat, shape.plan, packetbeat, now_iso))
    for path in shape.post:
        if path in flat:
            _place(path, flat[path], typed, rest)
    return typed, orjson.dumps(rest).decode() if rest else None

