"""Gigamon's CEF export writes some SSL certificate attributes as hex (Gigamon's NetFlow/CEF
format guide): the issuer and subject distinguished names as hex of their text
("/C=US/O=DigiCert Inc/..."), and the validity dates as hex of an ASN.1 UTCTime
("170106000000Z"). Decoded here into readable fields beside the values as sent."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

# CEF key -> (gigamon.ami name of the JSON path, tls.server field)
_NAMES = {
    "GigamonMdataSslIssuer": ("ssl_certificate_dn_issuer", "issuer"),
    "GigamonMdataSslSub": ("ssl_certificate_dn_subject", "subject"),
}
_DATES = {
    "GigamonMdataSslValidNotBefore": ("ssl_validity_not_before", "not_before"),
    "GigamonMdataSslValidNotAfter": ("ssl_validity_not_after", "not_after"),
}
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")


def _unhex(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = "".join(value.split())  # the guide's examples wrap long values
    if not _HEX.match(text):
        return None
    try:
        return bytes.fromhex(text).decode("utf-8")
    except UnicodeDecodeError:
        return None


def asn1_time(text: str) -> str | None:
    """UTCTime (YYMMDDHHMM[SS]Z, years 50-99 are 19xx) or GeneralizedTime
    (YYYYMMDDHHMM[SS]Z) → RFC 3339 UTC."""
    m = re.fullmatch(r"(\d{2}|\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})?Z", text)
    if not m:
        return None
    year = int(m.group(1))
    if len(m.group(1)) == 2:
        year += 1900 if year >= 50 else 2000  # RFC 5280 4.1.2.5.1
    try:
        t = dt.datetime(year, int(m.group(2)), int(m.group(3)), int(m.group(4)),
                        int(m.group(5)), int(m.group(6) or 0))
    except ValueError:
        return None
    return t.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def decode_ssl_hex(doc: dict[str, Any]) -> None:
    """Add the readable forms to an event normalized by the gigamon.ami pipeline."""
    ami = doc.get("gigamon", {}).get("ami")
    if not isinstance(ami, dict):
        return
    server: dict[str, Any] = {}
    for key, (name, ecs) in _NAMES.items():
        text = _unhex(ami.get(key))
        if text:
            ami.setdefault(name, text)
            server[ecs] = text
    for key, (name, ecs) in _DATES.items():
        text = _unhex(ami.get(key))
        when = asn1_time(text) if text else None
        if when:
            ami.setdefault(name, when)
            server[ecs] = when
    if server:
        doc.setdefault("tls", {}).setdefault("server", {}).update(server)
