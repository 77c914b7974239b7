"""CEF decoder: Filebeat decode_cef golden conformance, escapes, edge cases and fuzzing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netmeta.decode.cef import CEFError, decode, key_table

# (case index, flattened field) -> reason. Every known difference with Filebeat's golden output
# must be listed here; currently none.
ALLOWED_DIFFERENCES: dict[tuple[int, str], str] = {}


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def same(a: Any, b: Any) -> bool:
    """Equal value and JSON type (80 must not match 80.0 or "80")."""
    return type(a) is type(b) and a == b


def golden_cases(peer: Path) -> list[tuple[str, dict[str, Any]]]:
    folder = peer / "cef" / "decode_cef"
    lines = (folder / "samples.log").read_text(encoding="utf-8").splitlines()
    golden = json.loads((folder / "samples.log.golden.json").read_text(encoding="utf-8"))
    assert len(lines) == len(golden) == 15
    return list(zip(lines, golden, strict=True))


def test_golden_samples_field_by_field(peer: Path) -> None:
    matched = total = exact = 0
    problems: list[str] = []
    for i, (line, expected) in enumerate(golden_cases(peer)):
        got, want = flatten(decode(line)), flatten(expected)
        case_ok = True
        for key in sorted(got.keys() | want.keys()):
            total += 1
            if key in got and key in want and same(got[key], want[key]):
                matched += 1
            elif (i, key) not in ALLOWED_DIFFERENCES:
                case_ok = False
                problems.append(f"case {i} {key}: got {got.get(key)!r} want {want.get(key)!r}")
        exact += case_ok
    print(f"CEF golden: {exact}/15 cases exact, {matched}/{total} fields matched")
    assert not problems, "\n".join(problems)
    assert exact == 15


def test_allow_list_entries_are_still_needed(peer: Path) -> None:
    cases = golden_cases(peer)
    for (i, key), reason in ALLOWED_DIFFERENCES.items():
        got, want = flatten(decode(cases[i][0])), flatten(cases[i][1])
        assert not same(got.get(key), want.get(key)), f"stale allow-list entry {i} {key}: {reason}"


def ext(message: str) -> dict[str, Any]:
    return decode(message)["cef"].get("extensions", {})


HEAD = "CEF:0|Vendor|Product|1.0|100|Name|5|"


def test_header_escapes() -> None:
    doc = decode(r"CEF:0|Ven\|dor|Pro\\duct|1\|0|id|Na\|me|Low|")
    assert doc["cef"]["device"] == {"vendor": "Ven|dor", "product": "Pro\\duct",
                                    "version": "1|0", "event_class_id": "id"}
    assert doc["cef"]["name"] == "Na|me" == doc["message"]
    assert doc["event"]["severity"] == 0
    assert "error" not in doc


def test_extension_escapes_and_spaces() -> None:
    e = ext(HEAD + r"msg=a\=b c\\d\nline2\r end act=x y=")
    assert e["message"] == "a=b c\\d\nline2\r end"
    assert e["deviceAction"] == "x"
    assert "y" not in e  # empty values are dropped


def test_value_ends_where_next_key_begins() -> None:
    e = ext(HEAD + "cs1=one two  three cs1Label=a b=c=d")
    assert e["deviceCustomString1"] == "one two  three"
    assert e["deviceCustomString1Label"] == "a"
    assert "b" not in e  # "c=d" holds an unescaped '=': malformed, dropped with an error


def test_unescaped_equals_is_an_error_and_recovers() -> None:
    doc = decode(HEAD + "src=1.2.3.4 bad=x=y dst=5.6.7.8")
    assert doc["cef"]["extensions"] == {"sourceAddress": "1.2.3.4", "destinationAddress": "5.6.7.8"}
    assert doc["error"]["message"].startswith("malformed value for bad at pos")


def test_custom_gigamon_keys_and_dotted_nesting() -> None:
    e = ext(HEAD + "GigamonMdataDnsAdditionalType=41 ad.foo.name[1]=n ad.bar=b")
    assert e["GigamonMdataDnsAdditionalType"] == "41"
    assert e["ad"] == {"foo": {"name[1]": "n"}, "bar": "b"}


def test_severity_words_and_numbers() -> None:
    for sev, num in (("Low", 0), ("Medium", 4), ("High", 7), ("Very-High", 9), ("very-high", 9),
                     ("10", 10), ("03", 3)):
        assert decode(f"CEF:0|v|p|1|c|n|{sev}|")["event"]["severity"] == num
    doc = decode("CEF:0|v|p|1|c|n|Unknown|")
    assert doc["cef"]["severity"] == "Unknown" and "severity" not in doc["event"]


def test_typed_ecs_values_and_invalid_values() -> None:
    doc = decode(HEAD + "spt=0x50 dpt=abc in=12 dvc=host dmac=00:11:22:33:44:55 proto=UDP "
                 "deviceDirection=1 rt=1500000000000 end=Feb 23 2018 02:25:37 UTC")
    assert doc["source"]["port"] == 80
    assert doc["source"]["bytes"] == 12
    assert "port" not in doc.get("destination", {})
    assert doc["cef"]["extensions"]["destinationPort"] == "abc"
    assert doc["cef"]["extensions"]["deviceAddress"] == "host"
    assert "observer" not in doc or "ip" not in doc["observer"]
    assert doc["destination"]["mac"] == "00:11:22:33:44:55"
    assert doc["network"] == {"transport": "udp", "direction": "outbound"}
    assert doc["@timestamp"] == "2017-07-14T02:40:00.000Z"
    assert doc["event"]["end"] == "2018-02-23T02:25:37.000Z"
    assert doc["error"]["message"] == [
        'destinationPort: strconv.ParseInt: parsing "abc": invalid syntax',
        "deviceAddress: value is not a valid IP address",
    ]


def test_msg_does_not_replace_message() -> None:
    doc = decode(HEAD + "msg=hello")
    assert doc["message"] == "Name"
    assert doc["cef"]["extensions"]["message"] == "hello"


def test_prefix_before_cef_is_skipped() -> None:
    line = "<134>Feb 23 02:25:37 host CEF:0|a|b|c|d|e|1|src=10.0.0.1"
    doc = decode(line)
    assert doc["source"]["ip"] == "10.0.0.1"
    assert doc["event"]["original"] == line


def test_all_short_keys_expand() -> None:
    by_key, _ = key_table()
    assert by_key["src"].full_name == "sourceAddress"
    assert by_key["cn1"].full_name == "deviceCustomNumber1"
    assert by_key["cn2"].full_name == "DeviceCustomNumber2"  # Filebeat's own spelling
    assert ext(HEAD + "SRC=1.1.1.1") == {"sourceAddress": "1.1.1.1"}  # case-insensitive keys


@pytest.mark.parametrize("text", ["", "hello", "CEF:", "CEF:x|a", "CEF:0", "xxCEF:1"])
def test_no_header_raises_cef_error(text: str) -> None:
    with pytest.raises(CEFError):
        decode(text)


def test_truncated_header_keeps_what_was_parsed() -> None:
    doc = decode("CEF:0|vendor|prod")
    assert doc["cef"] == {"version": 0, "device": {"vendor": "vendor"}}
    assert doc["error"]["message"] == ["unexpected end of CEF event", "incomplete CEF header"]


def test_bad_header_escape_is_reported() -> None:
    doc = decode(r"CEF:0|a\b|p|1|c|n|5|")
    assert doc["error"]["message"] == "error in CEF event at pos 9"


LINE = HEAD + r"src=10.0.0.1 dst=10.0.0.2 spt=1 msg=x\=y cs1=a b cs1Label=L dvc=1.2.3.4"
ALPHABET = st.sampled_from(list("CEF:0|\\=  abcdn.,[]_-r\t\n1x") + ["src", "cn1", "dvc", "="])


def mutate(data: st.DataObject) -> str:
    chars = list(LINE)
    for _ in range(data.draw(st.integers(0, 8))):
        pos = data.draw(st.integers(0, len(chars)))
        op = data.draw(st.sampled_from(["ins", "del", "rep"]))
        token = data.draw(ALPHABET)
        if op == "ins":
            chars.insert(pos, token)
        elif chars and pos < len(chars):
            if op == "del":
                del chars[pos]
            else:
                chars[pos] = token
    return "".join(chars)


def decode_or_error(text: str) -> None:
    try:
        doc = decode(text)
    except CEFError:
        return
    json.dumps(doc, allow_nan=False)  # always serialisable


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_fuzz_mutated_lines(data: st.DataObject) -> None:
    decode_or_error(mutate(data))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_random_text(text: str) -> None:
    decode_or_error(text)
    decode_or_error("CEF:0|" + text)


def test_large_line_is_fast() -> None:
    line = HEAD + " ".join(f"k{i}=v a l u e {i}" for i in range(20000)) + " x" * 50000
    start = time.perf_counter()
    doc = decode(line)
    assert len(doc["cef"]["extensions"]) == 20000
    assert time.perf_counter() - start < 5
