"""Syslog messages (RFC 3164, RFC 5424, Gigamon's ctime header) and TCP framing.

``parse(text)`` never raises: a line that matches no header form comes back whole as the
message (``format == "raw"``). ``SyslogMessage.to_ecs()`` names fields as Elastic's ``syslog``
processor does (``log.syslog.*``, ``message``, ``@timestamp``).

``Framer`` splits a TCP byte stream into messages, RFC 6587 octet counting (``LEN SP MSG``)
or newline framing, detected per frame as RFC 6587 section 3.4 suggests (a frame that starts
with digits and a space is octet counted). Frames above ``max_size`` become ``FrameError``
items and their bytes are skipped as they arrive, so memory stays bounded by ``max_size``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

# Labels exactly as Beats' syslog reader/processor writes them (libbeat/reader/syslog).
SEVERITY_NAMES = ("Emergency", "Alert", "Critical", "Error", "Warning", "Notice",
                  "Informational", "Debug")
FACILITY_NAMES = ("kernel", "user-level", "mail", "system", "security/authorization", "syslogd",
                  "line printer", "network news", "UUCP", "clock", "security/authorization",
                  "FTP", "NTP", "log audit", "log alert", "clock", "local0", "local1", "local2",
                  "local3", "local4", "local5", "local6", "local7")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
BOM = "\ufeff"
NIL = "-"
MAX_PRI = 191  # facility 23, severity 7

PRI_RE = re.compile(r"<([0-9]{1,3})>")
RFC3164_RE = re.compile(
    r"(?P<mon>[A-Za-z]{3}) +(?P<day>[0-9]{1,2}) (?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"(?:\.[0-9]+)? (?P<rest>.*)\Z", re.S)
HOST_TAG_RE = re.compile(
    r"(?P<host>\S+) (?P<tag>[^\s:\[\]]+)(?:\[(?P<pid>[^\]\s]*)\])?: ?(?P<msg>.*)\Z", re.S)
GIGAMON_RE = re.compile(
    r"(?:[A-Za-z]{3}) (?P<mon>[A-Za-z]{3}) +(?P<day>[0-9]{1,2}) "
    r"(?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2}) (?P<year>[0-9]{4}) (?P<host>\S+) ?(?P<msg>.*)\Z",
    re.S)
RFC5424_RE = re.compile(
    r"(?P<ver>[1-9][0-9]{0,2}) (?P<ts>\S+) (?P<host>\S{1,255}) (?P<app>\S{1,48}) "
    r"(?P<proc>\S{1,128}) (?P<msgid>\S{1,32}) (?P<rest>.*)\Z", re.S)
RFC3339_RE = re.compile(
    r"(?P<y>[0-9]{4})-(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})[Tt](?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):"
    r"(?P<s>[0-9]{2})(?:\.(?P<frac>[0-9]{1,9}))?(?P<tz>[Zz]|[+-][0-9]{2}:[0-9]{2})\Z")
SD_ID_RE = re.compile(r'[^\s=\]"]{1,32}')
SD_PARAM_RE = re.compile(r' ([^\s=\]"]{1,32})="')


@dataclass(frozen=True)
class SyslogMessage:
    """One parsed message; fields the header did not carry are None (or empty)."""

    message: str
    format: str = "raw"  # rfc3164 | rfc5424 | gigamon | raw
    priority: int | None = None
    timestamp: datetime | None = None
    hostname: str | None = None
    appname: str | None = None
    procid: str | None = None
    msgid: str | None = None
    version: int | None = None
    structured_data: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def facility(self) -> int | None:
        return None if self.priority is None else self.priority >> 3

    @property
    def severity(self) -> int | None:
        return None if self.priority is None else self.priority & 7

    def to_ecs(self) -> dict[str, Any]:
        """Nested ECS fields as Elastic's syslog processor writes them."""
        syslog: dict[str, Any] = {}
        if self.priority is not None:
            syslog["priority"] = self.priority
            syslog["facility"] = {"code": self.facility, "name": FACILITY_NAMES[self.facility or 0]}
            syslog["severity"] = {"code": self.severity, "name": SEVERITY_NAMES[self.severity or 0]}
        for name in ("hostname", "appname", "procid", "msgid", "version"):
            value = getattr(self, name)
            if value is not None:
                syslog[name] = value
        if self.structured_data:
            syslog["structured_data"] = self.structured_data
        doc: dict[str, Any] = {"message": self.message}
        if syslog:
            doc["log"] = {"syslog": syslog}
        if self.timestamp is not None:
            doc["@timestamp"] = self.timestamp.astimezone(UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z")
        return doc


# --- header pieces ----------------------------------------------------------------------------


def split_pri(text: str) -> tuple[int | None, str]:
    """``<PRI>`` prefix (0..191) and the rest; an invalid PRI is left in the text."""
    m = PRI_RE.match(text)
    if m is None:
        return None, text
    pri = int(m.group(1))
    if pri > MAX_PRI or (len(m.group(1)) > 1 and m.group(1)[0] == "0"):
        return None, text
    return pri, text[m.end():]


def month_number(name: str) -> int | None:
    name = name.lower()
    return MONTHS.index(name) + 1 if name in MONTHS else None


def civil_time(year: int, mon: str, day: str, hms: str, tz: tzinfo) -> datetime | None:
    """A wall-clock time in ``tz`` as UTC, or None when it is not a real date."""
    month = month_number(mon)
    if month is None:
        return None
    h, mi, s = (int(x) for x in hms.split(":"))
    try:
        return datetime(year, month, int(day), h, mi, s, tzinfo=tz).astimezone(UTC)
    except ValueError:
        return None


def guess_year(mon: str, day: str, hms: str, now: datetime, tz: tzinfo) -> datetime | None:
    """RFC 3164 has no year: take this year, or last year if that lands over a month ahead."""
    ts = civil_time(now.year, mon, day, hms, tz)
    if ts is not None and ts - now > timedelta(days=31):
        ts = civil_time(now.year - 1, mon, day, hms, tz)
    return ts


def parse_rfc3339(text: str) -> datetime | None:
    """RFC 5424 TIMESTAMP (RFC 3339 with mandatory offset), or None."""
    m = RFC3339_RE.match(text)
    if m is None:
        return None
    tz = UTC if m.group("tz") in "Zz" else _offset(m.group("tz"))
    micros = int((m.group("frac") or "0")[:6].ljust(6, "0"))
    try:
        return datetime(int(m.group("y")), int(m.group("mo")), int(m.group("d")),
                        int(m.group("h")), int(m.group("mi")), int(m.group("s")), micros,
                        tzinfo=tz).astimezone(UTC)
    except (ValueError, OverflowError):
        return None


def _offset(text: str) -> tzinfo:
    sign = -1 if text[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[4:6])))


def nil(value: str) -> str | None:
    return None if value == NIL else value


def parse_sd_value(text: str, pos: int) -> tuple[str, int] | None:
    """A quoted PARAM-VALUE starting after the opening quote: (value, index after quote)."""
    out: list[str] = []
    i = pos
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text) and text[i + 1] in '"\\]':
            out.append(text[i + 1])  # RFC 5424 6.3.3: only ", \ and ] are escaped
            i += 2
        elif c == '"':
            return "".join(out), i + 1
        else:
            out.append(c)
            i += 1
    return None


def parse_sd_element(text: str, pos: int) -> tuple[str, dict[str, str], int] | None:
    """``[SD-ID *(SP PARAM="VALUE")]`` at ``pos``: (id, params, index after ']')."""
    m = SD_ID_RE.match(text, pos + 1)
    if text[pos:pos + 1] != "[" or m is None:
        return None
    params: dict[str, str] = {}
    i = m.end()
    while True:
        if text[i:i + 1] == "]":
            return m.group(0), params, i + 1
        pm = SD_PARAM_RE.match(text, i)
        if pm is None:
            return None
        value = parse_sd_value(text, pm.end())
        if value is None:
            return None
        params[pm.group(1)] = value[0]
        i = value[1]


def parse_structured_data(text: str) -> tuple[dict[str, dict[str, str]], str] | None:
    """STRUCTURED-DATA then the optional `` MSG``; None when malformed."""
    if text == NIL or text.startswith(NIL + " "):
        return {}, text[2:]
    sd: dict[str, dict[str, str]] = {}
    i = 0
    while text[i:i + 1] == "[":
        element = parse_sd_element(text, i)
        if element is None:
            return None
        sd.setdefault(element[0], {}).update(element[1])
        i = element[2]
    if not sd or (i < len(text) and text[i] != " "):
        return None
    return sd, text[i + 1:]


def strip_bom(msg: str) -> str:
    return msg[1:] if msg.startswith(BOM) else msg


# --- header forms -----------------------------------------------------------------------------


def parse_rfc5424(pri: int | None, body: str) -> SyslogMessage | None:
    m = RFC5424_RE.match(body)
    if pri is None or m is None:
        return None
    ts_text = m.group("ts")
    ts = None if ts_text == NIL else parse_rfc3339(ts_text)
    if ts is None and ts_text != NIL:
        return None
    sd = parse_structured_data(m.group("rest"))
    if sd is None:
        return None
    return SyslogMessage(
        message=strip_bom(sd[1]), format="rfc5424", priority=pri, timestamp=ts,
        hostname=nil(m.group("host")), appname=nil(m.group("app")),
        procid=nil(m.group("proc")), msgid=nil(m.group("msgid")),
        version=int(m.group("ver")), structured_data=sd[0])


def parse_gigamon(pri: int | None, body: str, tz: tzinfo) -> SyslogMessage | None:
    """``Fri Feb 23 02:25:37 2018 9/3/e1 CEF:...``: ctime with year, then box/slot/engine."""
    m = GIGAMON_RE.match(body)
    if m is None:
        return None
    ts = civil_time(int(m.group("year")), m.group("mon"), m.group("day"), m.group("time"), tz)
    if ts is None:
        return None
    return SyslogMessage(message=m.group("msg"), format="gigamon", priority=pri, timestamp=ts,
                         hostname=m.group("host"))


def parse_rfc3164(pri: int | None, body: str, now: datetime, tz: tzinfo) -> SyslogMessage | None:
    m = RFC3164_RE.match(body)
    if m is None:
        return None
    ts = guess_year(m.group("mon"), m.group("day"), m.group("time"), now, tz)
    if ts is None:
        return None
    rest = m.group("rest")
    ht = HOST_TAG_RE.match(rest)
    if ht is None:
        host, _, msg = rest.partition(" ")
        return SyslogMessage(message=msg, format="rfc3164", priority=pri, timestamp=ts,
                             hostname=host or None)
    return SyslogMessage(message=ht.group("msg"), format="rfc3164", priority=pri, timestamp=ts,
                         hostname=ht.group("host"), appname=ht.group("tag"),
                         procid=ht.group("pid") or None)


def parse(text: str | bytes, *, now: datetime | None = None, tz: tzinfo = UTC) -> SyslogMessage:
    """Parse one syslog message; never raises.

    ``tz`` is the zone of timestamps that carry none (RFC 3164, Gigamon); ``now`` anchors the
    RFC 3164 year guess (default: the current time).
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    text = text.rstrip("\r\n")
    pri, body = split_pri(text)
    now = now or datetime.now(UTC)
    return (parse_rfc5424(pri, body) or parse_gigamon(pri, body, tz)
            or parse_rfc3164(pri, body, now, tz)
            or SyslogMessage(message=body, priority=pri))


# --- TCP framing ------------------------------------------------------------------------------

DEFAULT_MAX_SIZE = 64 * 1024
MAX_LEN_DIGITS = 10  # enough for any length a sane sender uses; more is not octet counting


@dataclass(frozen=True)
class FrameError:
    """A frame that was dropped; ``head`` keeps its first bytes for the failure store."""

    reason: str
    size: int
    head: bytes = b""


class Framer:
    """Incremental splitter: ``feed(chunk)`` yields complete messages (bytes) or FrameErrors.

    ``mode`` is ``"auto"`` (per frame: octet counting when it starts ``DIGITS SP``),
    ``"octet"`` or ``"newline"``. Memory is bounded by ``max_size`` plus one chunk.
    """

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE, mode: str = "auto") -> None:
        if mode not in ("auto", "octet", "newline"):
            raise ValueError(f"unknown framing mode {mode!r}")
        self.max_size = max_size
        self.mode = mode
        self.buf = bytearray()
        self.skip = 0  # octet-counted bytes still to discard from an oversized frame
        self.skip_line = False  # discarding an oversized newline frame up to its newline
        self.scanned = 0  # bytes of buf already searched for a newline (no rescans)

    def feed(self, chunk: bytes) -> Iterator[bytes | FrameError]:
        """Add bytes; yield every frame they complete."""
        self.buf += chunk
        while True:
            item = self._next()
            if item is None:
                return
            if item != b"":
                yield item

    def flush(self) -> Iterator[bytes | FrameError]:
        """End of stream: an unterminated newline frame is still a message; a cut one is not."""
        rest, self.buf, self.scanned = bytes(self.buf), bytearray(), 0
        if self.skip or self.skip_line:
            self.skip, self.skip_line = 0, False
            return
        if self.mode != "newline" and self._octet_header(rest) not in (None, False):
            yield FrameError("stream ended inside an octet-counted frame", len(rest), rest[:64])
        elif rest.strip(b"\r\n"):
            yield rest.rstrip(b"\r\n")

    def _next(self) -> bytes | FrameError | None:
        """One step: a frame, b"" (progress, nothing to emit) or None (need more bytes)."""
        if self.skip:
            return self._discard_octets()
        if self.skip_line:
            return self._discard_line()
        if not self.buf:
            return None
        if self.mode != "newline":
            header = self._octet_header(self.buf)
            if header is None:
                return None  # digits so far: wait to see whether a space follows
            if header is not False:
                return self._octet_frame(*header)
            if self.mode == "octet":
                return self._bad_octet_header()
        return self._newline_frame()

    def _octet_header(self, data: bytes | bytearray) -> tuple[int, int] | bool | None:
        """(length, header size) for ``DIGITS SP``; False if not octet counted; None: unsure."""
        i = 0
        while i < len(data) and i <= MAX_LEN_DIGITS and 0x30 <= data[i] <= 0x39:
            i += 1
        if i == len(data) and 0 < i <= MAX_LEN_DIGITS:
            return None
        if 0 < i <= MAX_LEN_DIGITS and data[i] == 0x20 and data[0] != 0x30:
            return int(data[:i]), i + 1
        return False

    def _octet_frame(self, length: int, header: int) -> bytes | FrameError | None:
        if length > self.max_size:
            head = bytes(self.buf[header:header + 64])
            available = len(self.buf) - header
            self.skip = length - min(available, length)
            del self.buf[:header + min(available, length)]
            return FrameError(f"frame of {length} bytes exceeds {self.max_size}", length, head)
        if len(self.buf) < header + length:
            return None
        frame = bytes(self.buf[header:header + length])
        del self.buf[:header + length]
        return frame.rstrip(b"\r\n") or b""

    def _bad_octet_header(self) -> FrameError:
        head = bytes(self.buf[:64])
        self.skip_line = True
        return FrameError("invalid octet-count header", len(head), head)

    def _newline_frame(self) -> bytes | FrameError | None:
        end = self.buf.find(b"\n", self.scanned, self.max_size + 2)
        if end < 0:
            self.scanned = min(len(self.buf), self.max_size + 2)
            if len(self.buf) <= self.max_size + 1:
                return None
            self.scanned = 0
            head = bytes(self.buf[:64])
            self.skip_line = True
            # only what was searched has no newline: the rest may end this line and hold
            # the next frames
            del self.buf[:self.max_size + 2]
            return FrameError(f"line exceeds {self.max_size} bytes", self.max_size + 1, head)
        frame = bytes(self.buf[:end]).rstrip(b"\r")
        del self.buf[:end + 1]
        self.scanned = 0
        if len(frame) > self.max_size:
            return FrameError(f"line exceeds {self.max_size} bytes", len(frame), frame[:64])
        return frame

    def _discard_octets(self) -> bytes | None:
        n = min(self.skip, len(self.buf))
        del self.buf[:n]
        self.skip -= n
        return b"" if n else None

    def _discard_line(self) -> bytes | None:
        self.scanned = 0
        end = self.buf.find(b"\n")
        if end < 0:
            self.buf.clear()
            return None
        del self.buf[:end + 1]
        self.skip_line = False
        return b""
