"""User definitions of NetFlow v9 / IPFIX information elements (Filebeat ``custom_definitions``).

The files are YAML in the format of Logstash's netflow codec definitions, as Filebeat's netflow
input reads them:

- NetFlow v9: ``id: [type, name]``, the fields of enterprise number 0;
- IPFIX: ``pen: {id: [type, name]}``, fields per Private Enterprise Number;
- ``id: [:skip]`` defines nothing for that id (Filebeat ignores the entry; the built-in
  definition, or ``field_<id>``, stays).

Types and names may carry Ruby's leading colon (``:uint16``, ``:username``). A type is a
Logstash type name (``_TYPES``) or a byte count (``4``: uint32; ``0``: 4 bytes). The template
field length still decides the width, the type only the rendering, as for built-in elements.

``load`` reads and checks one file; ``register`` installs definitions process-wide so that
``templates.element`` returns them ahead of the built-in registry (custom definitions override
built-ins, as in Filebeat; later registrations override earlier ones). Registering clears the
cache of compiled templates, so templates compiled before take the new names on their next
use. ``unregister`` restores the built-in registry. Call ``register`` before decoding starts:
a batch being decoded in another thread at that moment may see either definition.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from netmeta.decode import templates
from netmeta.decode.templates import Element

Key = tuple[int, int]  # (enterprise number, element id)

# Logstash / Filebeat type name -> RFC 7012 abstract data type
_TYPES: dict[str, str] = {
    "uint8": "unsigned8", "uint15": "unsigned16", "uint16": "unsigned16",
    "uint24": "unsigned32", "uint32": "unsigned32", "uint64": "unsigned64",
    "int8": "signed8", "int15": "signed16", "int16": "signed16",
    "int24": "signed32", "int32": "signed32", "int64": "signed64",
    "float": "float32", "float32": "float32", "double": "float64", "float64": "float64",
    "ip4_addr": "ipv4Address", "ip4addr": "ipv4Address",
    "ip6_addr": "ipv6Address", "ip6addr": "ipv6Address",
    "mac_addr": "macAddress", "macaddr": "macAddress",
    "string": "string",
    "octet_array": "octetArray", "octetarray": "octetArray",
    # vendor structures Filebeat keeps as raw bytes or does not decode: kept as bytes
    "acl_id_asa": "octetArray", "mpls_label_stack_octets": "octetArray",
    "application_id": "octetArray",
    "forwarding_status": "unsigned8",  # as the built-in forwardingStatus (IE 89)
}
SKIP = "skip"

_saved: dict[Key, Element | None] = {}  # built-in definition of each overridden key


def load(path: str | Path) -> dict[Key, Element]:
    """The definitions of one file; ValueError naming the file and entry when it is wrong."""
    path = Path(path)
    try:
        tree = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: cannot read custom definitions: {e}") from e
    if not isinstance(tree, dict):
        raise ValueError(f"{path}: expected a mapping of field ids (NetFlow v9) or of "
                         f"enterprise numbers (IPFIX), got {type(tree).__name__}")
    kinds = {type(v) for v in tree.values()}
    if not kinds <= {list, dict} or len(kinds) > 1:
        raise ValueError(f"{path}: every value must be a [type, name] list (NetFlow v9) or "
                         f"every value a mapping of field ids (IPFIX), got "
                         f"{', '.join(sorted(k.__name__ for k in kinds))}")
    out: dict[Key, Element] = {}
    if kinds == {list}:
        _fields(path, 0, tree, out)
    for pen, fields in tree.items() if kinds == {dict} else ():
        _fields(path, _int(path, pen, "enterprise number", 0xFFFFFFFF), fields, out)
    return out


def load_all(paths: Iterable[str | Path]) -> dict[Key, Element]:
    """The definitions of several files; a later file overrides an earlier one."""
    out: dict[Key, Element] = {}
    for p in paths:
        out.update(load(p))
    return out


def register(defs: Mapping[Key, Element]) -> None:
    """Make ``templates.element`` return these definitions (idempotent)."""
    registry = templates._registry()
    for key, el in defs.items():
        if key not in _saved:
            _saved[key] = registry.get(key)
        registry[key] = el
    templates.compile_template.cache_clear()


def unregister() -> None:
    """Restore the built-in definitions of every key ``register`` overrode."""
    registry = templates._registry()
    for key, el in _saved.items():
        if el is None:
            registry.pop(key, None)
        else:
            registry[key] = el
    _saved.clear()
    templates.compile_template.cache_clear()


def registered() -> dict[Key, Element]:
    """The custom definitions in force."""
    registry = templates._registry()
    return {key: registry[key] for key in _saved if key in registry}


def _fields(path: Path, pen: int, fields: Mapping[Any, Any], out: dict[Key, Element]) -> None:
    where = f"enterprise {pen} " if pen else ""
    for raw_id, entry in fields.items():
        eid = _int(path, raw_id, f"{where}field id", 0xFFFF)
        what = f"{path}: {where}field {eid}"
        if (pen, eid) in out:
            raise ValueError(f"{what}: defined twice")
        if not isinstance(entry, list) or not 1 <= len(entry) <= 2:
            raise ValueError(f"{what}: expected [type, name] or [:skip], got {entry!r}")
        etype = _type(what, entry[0])
        if etype == SKIP:
            if len(entry) != 1:
                raise ValueError(f"{what}: :skip takes no name, got {entry!r}")
            continue
        if len(entry) != 2 or not isinstance(entry[1], str) or not entry[1].lstrip(":"):
            raise ValueError(f"{what}: expected [type, name] with a non-empty name, "
                             f"got {entry!r}")
        out[(pen, eid)] = Element(entry[1].removeprefix(":"), etype)


def _type(what: str, raw: Any) -> str:
    if isinstance(raw, int) and not isinstance(raw, bool):
        name = f"uint{(raw or 4) * 8}"  # a byte count; 0 means 4 (Logstash)
    elif isinstance(raw, str):
        name = raw.removeprefix(":")
    else:
        raise ValueError(f"{what}: type must be a name or a byte count, got {raw!r}")
    if name == SKIP:
        return SKIP
    if name not in _TYPES:
        raise ValueError(f"{what}: unknown type {raw!r} (known: :skip, "
                         f"{', '.join(':' + t for t in sorted(_TYPES))})")
    return _TYPES[name]


def _int(path: Path, raw: Any, what: str, top: int) -> int:
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = raw if isinstance(raw, int) else int(str(raw), 0)
    except ValueError:
        raise ValueError(f"{path}: {what} {raw!r} is not an integer") from None
    if not 0 <= value <= top:
        raise ValueError(f"{path}: {what} {value} is out of range 0..{top}")
    return value
