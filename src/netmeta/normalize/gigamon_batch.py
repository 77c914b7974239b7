"""Gigamon AMI records → event rows, a whole POSTed batch at a time.

:func:`netmeta.normalize.gigamon.normalize_record` follows Elastic's pipeline processor by
processor on a nested document and is the reference. A batch holds few record shapes (the
same attribute names, in the same order), so here each shape gets a plan made once: which
renames, dates, converts and copies apply to it, in the pipeline's order. A record of a
known shape then runs straight through its plan on flat dicts and comes out as the row the
store takes (typed column values and the JSON of the rest), with no nested document to
build and split again.

The plan's steps only take values as they usually come: every attribute a string, dates in
the layouts AMI uses, integers as plain digits, nothing the pipeline would fail on. Any
other record raises :class:`_Slow` and goes through the reference instead, so both paths
give the same rows (tests/test_gigamon_batch.py compares them on the peer cases and on
generated records).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import orjson

from netmeta.event import FIELDS, _coerce, ip_key, split_document
from netmeta.normalize import gigamon as ref
from netmeta.normalize import java_dates

_STR = {str}


class _Slow(Exception):
    """The record needs the reference pipeline."""


# ---------------------------------------------------------------- numbers


@lru_cache(maxsize=1 << 14)
def _number(kind: str, text: str) -> float:
    """double/float converts (and their rounding) as the reference does them, remembered:
    these attributes repeat."""
    try:
        return ref._CONVERTERS[kind](text)
    except ref._StepError:
        raise _Slow from None


@lru_cache(maxsize=1 << 14)
def _duration(value: float) -> float:
    """event.duration = seconds * 1000000000L in Java float arithmetic (gigamon._scaled)."""
    return float(str(np.float32(value) * np.float32(1_000_000_000)))


_is_ip = lru_cache(maxsize=1 << 16)(ref._is_ip)


# ---------------------------------------------------------------- plans

# ---------------------------------------------------------------- plans


@dataclass(frozen=True, slots=True)
class _Plan:
    """The steps of the reference pipeline that can apply to one record shape, in order."""

    renames: tuple[tuple[str, str], ...]
    lookups: bool  # the lookup script has something to read
    dates: tuple[tuple[str, tuple[str, ...], bool], ...]  # name, formats, ASN.1 UTCTime
    date_copies: tuple[tuple[str, str], ...]  # target path, date attribute
    longs: tuple[str, ...]
    numbers: tuple[tuple[str, str], ...]  # name, converter kind (double, float, ip)
    copies_dns: tuple[tuple[str, str], ...]  # target path, attribute
    appends: tuple[tuple[str, str], ...]
    http_rtt: bool
    copies: tuple[tuple[str, str], ...]
    copies_after_geoip: tuple[tuple[str, str], ...]


# what the lookup script (gigamon._lookups_script) reads, and the attributes it may add
_LOOKUPS = {name: (f"{name}_value",) for name in (
    "end_reason", "http_uri_path", "smb_version", "ssl_protocol_version",
    "ssl_ext_sig_algorithm_hash", "ssl_ext_sig_algorithm_scheme", "dns_query_type",
    "dns_reply_code")}
_LOOKUPS["ssl_cipher_suite_id"] = ("ssl_cipher_suite_id_value", "ssl_cipher_suite_id_protocol")
_LOOKUPS["tcp_flags"] = ("tcp_flag_reset",)


@lru_cache(maxsize=4096)
def _plan_for(keys: tuple[str, ...]) -> _Plan | None:
    """The plan of records with these attribute names (None: the shape itself needs the
    reference, e.g. a rename onto an attribute that is there already)."""
    fields = ref._fields()
    have = set(keys)
    if not keys or "" in have:
        return None
    renames = []
    for old, new in fields["renames_json"].items():
        if old in have:
            if new in have:
                return None  # the rename processor fails
            renames.append((old, new))
    have = (have - {o for o, _ in renames}) | {n for _, n in renames}
    dates = tuple((n, tuple(f), n.startswith("ssl_validity_"))
                  for n, f in fields["dates"].items() if n in have)
    converts = [(n, k) for n, k in fields["converts"].items() if n in have]
    looked_up = {added for name, adds in _LOOKUPS.items() if name in have for added in adds}
    readable = have | looked_up
    groups = {g: tuple((t, n) for t, n in fields[g] if n in readable)
              for g in ("copies_dns", "appends", "copies", "copies_after_geoip")}
    date_names = {n for n, _, _ in dates}
    date_copies = tuple((t, n) for g in ("copies_dns", "copies", "copies_after_geoip")
                        for t, n in groups[g] if n in date_names)
    targets = [t for g in groups.values() for t, _ in g]
    if any(targets.count(t) > 1 for t, _ in date_copies):
        return None  # a date field another copy may overwrite: not worth a special case
    late = fields["late_converts"]
    if set(late) != {"http_rtt"} or late["http_rtt"] != "float":
        raise ValueError("gigamon_fields.yml: late_converts changed; update gigamon_batch")
    return _Plan(
        renames=tuple(renames), lookups=bool(looked_up), dates=dates, date_copies=date_copies,
        longs=tuple(n for n, k in converts if k == "long"),
        numbers=tuple((n, k) for n, k in converts if k != "long"),
        copies_dns=groups["copies_dns"], appends=groups["appends"],
        http_rtt="http_rtt" in have, copies=groups["copies"],
        copies_after_geoip=groups["copies_after_geoip"])


# ---------------------------------------------------------------- one record


def _copy(ami: dict[str, Any], out: dict[str, Any], pairs: tuple[tuple[str, str], ...]) -> None:
    """set processors with copy_from: a later copy to the same field wins."""
    for target, name in pairs:
        value = ami.get(name)
        if value is not None:
            out[target] = value


def _steps(record: dict[str, Any], plan: _Plan) -> tuple[dict[str, Any], dict[str, Any]]:
    """(gigamon.ami, the other fields by dotted path) of one record; date attributes keep
    their text (the batch's dates are read together, then :func:`_dated` puts them in)."""
    ami = dict(record)
    for old, new in plan.renames:
        ami[new] = ami.pop(old)
    for name, _, asn1 in plan.dates:
        value = ami[name]
        if asn1 and len(value) == 13 and value[12] == "Z":
            # ASN.1 UTCTime: the pipeline's script adds the century (RFC 5280 pivot)
            head = value[:2]
            if not (head.isascii() and head.isdigit()):
                raise _Slow
            ami[name] = ("19" if int(head) >= 50 else "20") + value
    for name in plan.longs:
        value = ami[name]
        if value.isdecimal() and len(value) < 19:
            ami[name] = int(value)
        else:
            try:
                ami[name] = ref._to_long(value)
            except ref._StepError:
                raise _Slow from None
    for name, kind in plan.numbers:
        ami[name] = _number(kind, ami[name])
    if plan.lookups:
        try:
            ref._lookups_script(ami)
        except ref._Failure:
            raise _Slow from None
    out: dict[str, Any] = {}
    seconds = ami.get("dns_response_time")
    if seconds is not None:
        out["event.duration"] = _duration(seconds)
    _copy(ami, out, plan.copies_dns)
    question = out.get("dns.question.name")
    if question is not None:
        dot = question.rfind(".")
        if dot >= 0:
            out["dns.question.top_level_domain"] = question[dot + 1:]
            second = question.rfind(".", 0, dot)
            if second >= 0:
                out["dns.question.subdomain"] = question[:second]
    for target, name in plan.appends:
        value = ami.get(name)
        if value is not None:
            out[target] = [value]
    if plan.http_rtt:
        ami["http_rtt"] = _number("float", ami["http_rtt"])
        out["event.duration"] = _duration(ami["http_rtt"])
    _copy(ami, out, plan.copies)
    for path in ("source.ip", "destination.ip"):
        value = out.get(path)
        if value is not None and not _is_ip(value):
            raise _Slow  # the geoip processor fails
    _copy(ami, out, plan.copies_after_geoip)
    mac = ami.get("src_mac")
    if mac is not None:
        out["source.mac"] = mac.replace(":", "-").upper()
    mac = ami.get("dst_mac")
    if mac is not None:
        out["destination.mac"] = mac.replace(":", "-").upper()
    return ami, out


@dataclass(slots=True)
class _Pending:
    """A record through its plan's steps, waiting for the batch's dates."""

    index: int
    plan: _Plan
    ami: dict[str, Any]
    out: dict[str, Any]
    micros: dict[str, int]  # typed date fields: microseconds since the epoch


def _dated(pending: list[_Pending]) -> list[_Pending]:
    """The date step for every record at once (netmeta.normalize.java_dates); returns the
    records whose dates need the reference."""
    columns: dict[tuple[str, tuple[str, ...]], list[_Pending]] = {}
    for p in pending:
        for name, formats, _ in p.plan.dates:
            columns.setdefault((name, formats), []).append(p)
    unsure: dict[int, _Pending] = {}
    for (name, formats), records in columns.items():
        parsed = java_dates.parse([p.ami[name] for p in records], formats)
        micros = parsed.micros.tolist()
        for p, text, ok, us in zip(records, parsed.iso, parsed.ok.tolist(), micros,
                                   strict=True):
            if not ok:
                unsure[p.index] = p
                continue
            p.ami[name] = text
            if name == "ts":
                p.out["@timestamp"] = text
                p.micros["@timestamp"] = us
            for target, source in p.plan.date_copies:
                if source == name:
                    p.out[target] = text
                    p.micros[target] = us
    return list(unsure.values())


# Where each field a plan can set goes: its typed column (and how that column takes the
# usual Python type of the value) or the JSON of the rest.
_KEYWORD, _LONG, _IP, _DATE, _OTHER, _EXTRA = range(6)
_KINDS = {"keyword": _KEYWORD, "long": _LONG, "ip": _IP, "date": _DATE}


def _dest(path: str) -> tuple[int, tuple[str, ...], str]:
    f = FIELDS.get(path)
    kind = _EXTRA if f is None else _OTHER if f.is_list else _KINDS.get(f.type, _OTHER)
    _DESTS[path] = dest = (kind, *ref._parts(path))
    return dest


_DESTS: dict[str, tuple[int, tuple[str, ...], str]] = {}  # paths come from the plans: few


_AMI_TYPED = tuple((name.removeprefix("gigamon.ami."), f) for name, f in FIELDS.items()
                   if name.startswith("gigamon.ami.") and name.count(".") == 2)

_CONSTANT_TYPED: dict[str, Any] = {"ecs.version": ref.ECS_VERSION, "event.kind": "event",
                                   "event.category": ["network"], "event.type": ["info"]}


def _finish(p: _Pending) -> tuple[dict[str, Any], str | None]:
    """The row of a record whose steps and dates are done: typed values, JSON of the rest."""
    ami = p.ami
    if "" in ami.values() or None in ami.values():  # painless_remove_null
        ami = {k: v for k, v in ami.items() if v is not None and v != ""}
        if not ami:
            raise _Slow  # the pipeline drops gigamon.ami as a whole
    typed: dict[str, Any] = dict(_CONSTANT_TYPED)
    for leaf, f in _AMI_TYPED:  # gigamon.ami fields with a column (ecs_fields.yml)
        if leaf in ami:
            try:
                value = _coerce(f, ami[leaf])
            except (ValueError, TypeError, OverflowError):
                continue  # kept in the JSON, as the reference keeps it
            if ami is p.ami:
                ami = dict(ami)
            del ami[leaf]
            typed[f.name] = value
    extra: dict[str, Any] = {"gigamon": {"ami": ami}} if ami else {}
    for path, value in p.out.items():
        if value == "" or value == [""]:
            continue
        kind, parents, leaf = _DESTS.get(path) or _dest(path)
        if kind != _EXTRA:
            vt = type(value)
            if kind == _KEYWORD and vt is str or kind == _LONG and vt is int \
                    and -(2**63) <= value < 2**63:
                typed[path] = value
                continue
            if kind == _LONG and vt is float and value.is_integer() and abs(value) < 2**63:
                typed[path] = int(value)
                continue
            if kind == _IP and vt is str and ip_key(value) is not None:
                typed[path] = value
                continue
            if kind == _DATE and path in p.micros:
                typed[path] = p.micros[path]
                continue
            cell, rest = split_document({path: value})  # lists, other types: the generic way
            if rest is None:
                typed.update(cell)
                continue
        cur = extra
        for part in parents:
            cur = cur.setdefault(part, {})
        cur[leaf] = value
    return typed, orjson.dumps(extra).decode() if extra else None


# ---------------------------------------------------------------- a batch


def labels_to_ecs(doc: dict[str, Any]) -> dict[str, Any]:
    """Key/value labels an AMX exporter attaches (its Labels option) are ECS ``labels.*``,
    not AMI attributes."""
    ami = doc.get("gigamon", {}).get("ami")
    labels = ami.pop("labels", None) if isinstance(ami, dict) else None
    if isinstance(labels, dict):
        doc.setdefault("labels", {}).update({str(k): str(v) for k, v in labels.items()})
    elif labels is not None:
        ami["labels"] = labels  # not key/value: an attribute like any other
    return doc


def reference_row(record: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """The row of one record through the reference pipeline."""
    return split_document(labels_to_ecs(ref.normalize_record(record)))


@dataclass(slots=True)
class Rows:
    typed: list[dict[str, Any]]
    extras: list[str | None]
    index: list[int]  # each row's record number in the batch
    errors: list[tuple[int, str]]  # (record number, why) of records that failed
    slow: int = 0  # rows made by the reference pipeline


def normalize_batch(records: list[Any]) -> Rows:
    """The rows of a batch of AMI records, in order; a record that fails is reported, not
    raised (one bad record must not cost the batch)."""
    rows: list[tuple[dict[str, Any], str | None] | None] = [None] * len(records)
    pending: list[_Pending] = []
    slow: list[int] = []
    for i, record in enumerate(records):
        if type(record) is dict and _STR.issuperset(map(type, record.values())):
            plan = _plan_for(tuple(record))
            if plan is not None:
                try:
                    pending.append(_Pending(i, plan, *_steps(record, plan), {}))
                    continue
                except _Slow:
                    pass
        slow.append(i)
    slow += [p.index for p in _dated(pending)]
    unsure = set(slow)
    for p in pending:
        if p.index not in unsure:
            try:
                rows[p.index] = _finish(p)
            except _Slow:
                slow.append(p.index)
    out = Rows([], [], [], [], slow=len(slow))
    errors: dict[int, str] = {}
    for i in slow:
        try:
            record = records[i]
            if type(record) is not dict:
                raise TypeError(f"an AMI record is a JSON object, not {type(record).__name__}")
            rows[i] = reference_row(record)
        except Exception as e:  # noqa: BLE001 - one bad record must not cost the batch
            errors[i] = f"{type(e).__name__}: {e}"
    for i, row in enumerate(rows):
        if row is None:
            if i in errors:
                out.errors.append((i, errors[i]))
            continue
        out.typed.append(row[0])
        out.extras.append(row[1])
        out.index.append(i)
    return out
