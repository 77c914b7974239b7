"""Java date formats (the subset Elastic's gigamon pipeline uses) read over a whole column.

:func:`netmeta.normalize.gigamon._parse_date` reads one value the way the pipeline's date
processor does: the step's formats in order, the first that matches and gives a real
moment wins. Here the same is done for a column of values with NumPy: each format becomes
fixed-width layouts (``d`` is one or two digits, so two layouts), a value of a layout's
width is checked byte by byte, and its moment computed from the digits.

Only what is certain is answered. A value is *unsure* (left to the one-value reader) when it
is not ASCII (``\\d`` matches other scripts' digits), when it matches a format but is not a
real moment (the reference goes on to the next format), when the year is below 1000, or
when the next format to try has zones (ISO8601). So for every value answered the result is
the reference's; tests/test_gigamon_batch.py checks both on generated values.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from netmeta.normalize import gigamon as ref

# what each pattern letter group reads (gigamon._TOKENS gives the regex of each)
_PART = {"yyyy": "year", "SSSSSS": "frac", "SSS": "frac", "EEE": "dow", "MMM": "mon",
         "MM": "month", "dd": "day", "d": "day", "HH": "hour", "mm": "minute", "ss": "second"}
_NAMES = {"dow": ref._DAYS, "mon": ref._MONTHS}


@dataclass(frozen=True, slots=True)
class _Layout:
    width: int
    literals: tuple[tuple[int, int], ...]  # (position, byte)
    parts: tuple[tuple[str, int, int], ...]  # (part, start, width)


def _tokens(fmt: str) -> list[tuple[str, str]]:
    """("lit", char) and (part, token) in order, tokenized exactly as gigamon._pattern."""
    out: list[tuple[str, str]] = []
    i = 0
    while i < len(fmt):
        if fmt[i] == "'":
            end = fmt.index("'", i + 1)
            out += [("lit", c) for c in fmt[i + 1:end]]
            i = end + 1
            continue
        token = next((t for t, _ in ref._TOKENS if fmt.startswith(t, i)), None)
        if token is None:
            out.append(("lit", fmt[i]))
            i += 1
        else:
            out.append((_PART[token], token))
            i += len(token)
    return out


@cache
def layouts(fmt: str) -> tuple[_Layout, ...] | None:
    """The fixed-width layouts of a format; None when it has none (ISO8601: zones)."""
    if fmt == "ISO8601":
        return None
    tokens = _tokens(fmt)
    # ``d`` is \d{1,2}: one layout per width
    widths = [(1, 2) if tok == "d" else (3,) if part in _NAMES else (len(tok),)
              for part, tok in tokens if part != "lit"]
    combos: list[list[int]] = [[]]
    for choice in widths:
        combos = [c + [w] for c in combos for w in choice]
    out = []
    for combo in combos:
        pos, literals, parts = 0, [], []
        it = iter(combo)
        for part, tok in tokens:
            if part == "lit":
                literals.append((pos, ord(tok)))
                pos += 1
            else:
                w = next(it)
                parts.append((part, pos, w))
                pos += w
        out.append(_Layout(pos, tuple(literals), tuple(parts)))
    return tuple(out)


def _number(m: np.ndarray, start: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(value, all digits?) of a digit field of each row."""
    d = m[:, start:start + width].astype(np.int64) - 48
    ok = ((d >= 0) & (d <= 9)).all(axis=1)
    value = np.zeros(len(m), np.int64)
    for j in range(width):
        value = value * 10 + d[:, j]
    return value, ok


def _name(m: np.ndarray, start: int, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(index in names, known?) of a three-letter name field of each row."""
    codes = (m[:, start].astype(np.int64) << 16) | (m[:, start + 1].astype(np.int64) << 8) \
        | m[:, start + 2]
    known = np.array([(ord(n[0]) << 16) | (ord(n[1]) << 8) | ord(n[2]) for n in names])
    order = np.argsort(known)
    at = np.clip(np.searchsorted(known[order], codes), 0, len(names) - 1)
    return order[at], known[order][at] == codes


_DIM = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31], np.int64)


def _days_from_civil(y: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of proleptic Gregorian dates (H. Hinnant's algorithm)."""
    y = y - (m <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (m + np.where(m > 2, -3, 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


@dataclass(slots=True)
class Parsed:
    iso: list[str | None]  # yyyy-MM-ddTHH:mm:ss.SSSZ, None where not answered
    micros: np.ndarray  # microseconds since the epoch (UTC), where answered
    ok: np.ndarray  # answered (False: unsure, ask the one-value reader)


def parse(texts: list[str], formats: tuple[str, ...]) -> Parsed:
    """The date step over a column: each value as the reference would read it, or unsure."""
    n = len(texts)
    ok = np.zeros(n, bool)
    micros = np.zeros(n, np.int64)
    iso: list[str | None] = [None] * n
    lens = np.fromiter(map(len, texts), np.int64, n)
    open_ = np.fromiter(map(str.isascii, texts), bool, n)  # still to try the next format
    for fmt in formats:
        fixed = layouts(fmt)
        if fixed is None:
            break  # values no earlier format matched stay unsure
        for lay in fixed:
            rows = np.flatnonzero(open_ & (lens == lay.width))
            if not len(rows):
                continue
            m = np.frombuffer("".join([texts[i] for i in rows]).encode("ascii"),
                              np.uint8).reshape(-1, lay.width)
            match = np.ones(len(rows), bool)
            for pos, byte in lay.literals:
                match &= m[:, pos] == byte
            values: dict[str, np.ndarray] = {}
            for part, start, width in lay.parts:
                if part in _NAMES:
                    v, good = _name(m, start, _NAMES[part])
                else:
                    v, good = _number(m, start, width)
                    if part == "frac":
                        v = v // 10 ** (width - 3) if width >= 3 else v * 10 ** (3 - width)
                match &= good
                values[part] = v
            if not match.any():
                continue
            one = np.ones(len(rows), np.int64)
            zero = np.zeros(len(rows), np.int64)
            year = values.get("year", zero)
            month = values["mon"] + 1 if "mon" in values else values.get("month", one)
            day, hour = values.get("day", one), values.get("hour", zero)
            minute, second = values.get("minute", zero), values.get("second", zero)
            ms = values.get("frac", zero)
            mi = np.clip(month - 1, 0, 11)
            leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
            dim = _DIM[mi] + ((mi == 1) & leap)
            real = ((month >= 1) & (month <= 12) & (day >= 1) & (day <= dim) & (hour < 24)
                    & (minute < 60) & (second < 60) & (year >= 1000))
            days = _days_from_civil(year, np.where(real, month, 1), np.where(real, day, 1))
            if "dow" in values:
                # 1970-01-01 was a Thursday (3 with Monday 0)
                real &= (days + 3) % 7 == values["dow"]
            matched = rows[match]
            open_[matched] = False  # matched: answered now, or unsure (not a real moment)
            good_rows = rows[match & real]
            if not len(good_rows):
                continue
            sel = match & real
            us = ((days[sel] * 86400 + hour[sel] * 3600 + minute[sel] * 60 + second[sel])
                  * 1_000_000 + ms[sel] * 1000)
            micros[good_rows] = us
            ok[good_rows] = True
            for i, text in zip(good_rows.tolist(), _iso(year[sel], month[sel], day[sel],
                                                        hour[sel], minute[sel], second[sel],
                                                        ms[sel]), strict=True):
                iso[i] = text
    return Parsed(iso, micros, ok)


_ISO = "0000-00-00T00:00:00.000Z"
_DIGITS = [(0, 4, "year"), (5, 2, "month"), (8, 2, "day"), (11, 2, "hour"),
           (14, 2, "minute"), (17, 2, "second"), (20, 3, "ms")]


def _iso(year: np.ndarray, month: np.ndarray, day: np.ndarray, hour: np.ndarray,
         minute: np.ndarray, second: np.ndarray, ms: np.ndarray) -> list[str]:
    """yyyy-MM-ddTHH:mm:ss.SSSZ of each row, built as one byte matrix."""
    k = len(year)
    out = np.tile(np.frombuffer(_ISO.encode(), np.uint8), (k, 1))
    cols = {"year": year, "month": month, "day": day, "hour": hour, "minute": minute,
            "second": second, "ms": ms}
    for start, width, name in _DIGITS:
        v = cols[name]
        for j in range(width - 1, -1, -1):
            out[:, start + j] = 48 + v % 10
            v = v // 10
    text = out.tobytes().decode("ascii")
    w = len(_ISO)
    return [text[i:i + w] for i in range(0, k * w, w)]
