"""Custom NetFlow v9 / IPFIX field definitions: Filebeat ``custom_definitions`` files in the
format of Logstash's netflow codec."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

from netmeta.decode import custom_fields
from netmeta.decode.custom_fields import load, register, unregister
from netmeta.decode.netflow import decode, decode_many
from netmeta.decode.templates import REVERSE_PEN, Decoded, Element, TemplateState, element
from tests.test_decode_netflow import EXPORTER, a_set, beats, ipfix_message, ipfix_template, only


@pytest.fixture(autouse=True)
def _restore_registry() -> Iterator[None]:
    yield
    unregister()


def asa_defs(peer: Path) -> dict[tuple[int, int], Element]:
    return load(beats(peer) / "fields" / "netflow9_cisco_asa_custom.yaml")


def feed_case(peer: Path, name: str) -> Decoded:
    base = beats(peer)
    files = yaml.safe_load((base / "dat_tests.yaml").read_text())["tests"][name]["files"]
    d = decode_many([((base / "dat" / f).read_bytes(), EXPORTER) for f in files],
                    TemplateState(), 0.0)
    assert not d.errors
    return d


def test_load_peer_example(peer: Path) -> None:
    defs = asa_defs(peer)
    assert defs == {
        (0, 33000): ("ingress_acl_id", "octetArray"),
        (0, 33001): ("egress_acl_id", "octetArray"),  # the name without a colon
        (0, 33002): ("fw_ext_event", "unsigned16"),
        (0, 40000): ("username", "string"),
        (0, 40001): ("xlate_src_addr_ipv4", "ipv4Address"),
        (0, 40002): ("xlate_dst_addr_ipv4", "ipv4Address"),
        (0, 40003): ("xlate_src_port", "unsigned16"),
        (0, 40004): ("xlate_dst_port", "unsigned16"),
        (0, 40005): ("fw_event", "unsigned8"),
    }
    assert all(isinstance(e, Element) for e in defs.values())


@pytest.mark.parametrize("case", ["Netflow 9 Cisco ASA", "Netflow 9 Cisco ASA 2"])
def test_dat_cases_decode_under_custom_names(peer: Path, case: str) -> None:
    builtin = feed_case(peer, case)
    defs = asa_defs(peer)
    register(defs)
    custom = feed_case(peer, case)
    assert len(custom.data) == len(builtin.data) and custom.records == builtin.records
    renamed = 0
    for b, c in zip(builtin.data, custom.data, strict=True):
        # same values; a column is named by the custom definition where its id has one
        ids = [(f.pen, f.id) for f in b.template.fields if f.length]
        names = [defs[k].name if k in defs else n
                 for k, n in zip(ids, b.records.column_names, strict=True)]
        assert c.records.column_names == names
        assert c.records.equals(b.records.rename_columns(names)), case
        renamed += sum(k in defs and defs[k].name != n
                       for k, n in zip(ids, b.records.column_names, strict=True))
        if "username" in names:
            assert c.records.schema.field("username").type == pa.string()
            assert c.records.schema.field("ingress_acl_id").type == pa.binary()
            assert {len(v) for v in c.records.column("ingress_acl_id").to_pylist()} == {12}
    assert renamed == (5 if case == "Netflow 9 Cisco ASA" else 0)
    t = custom.data[0].records
    if case == "Netflow 9 Cisco ASA":
        row = t.to_pylist()[0]
        assert row["xlate_src_addr_ipv4"] == "192.168.14.1"
        assert row["xlate_dst_addr_ipv4"] == "2.2.2.11"
        assert (row["xlate_src_port"], row["xlate_dst_port"]) == (0, 17549)
        assert (row["fw_event"], row["fw_ext_event"]) == (2, 2025)
        assert row["username"] == ""
        assert row["ingress_acl_id"] == bytes.fromhex("0f8e7ff3fc1a030f00000000")
        assert t.schema.field("xlate_src_addr_ipv4").type == pa.string()
    else:  # NAT columns are IANA's here; template 256 carries the ACL ids and user name
        row = next(b for b in custom.data if b.template_id == 256).records.to_pylist()[0]
        assert row["ingress_acl_id"] == bytes.fromhex("3edcde490aa62ac3a8a2a76b")
        assert row["egress_acl_id"] == bytes(12)
        assert (row["username"], row["fw_ext_event"]) == ("", 0)


def test_templates_compiled_before_register_take_the_new_names(peer: Path) -> None:
    state = TemplateState()
    base = beats(peer) / "dat"
    tpl = (base / "netflow9_test_cisco_asa_1_tpl.dat").read_bytes()
    data = (base / "netflow9_test_cisco_asa_1_data.dat").read_bytes()
    before = decode_many([(tpl, EXPORTER), (data, EXPORTER)], state, 0.0)
    assert "xlate_source_address_ipv4" in before.data[0].records.column_names
    register(asa_defs(peer))
    register(asa_defs(peer))  # twice: harmless
    after = decode(data, EXPORTER, state, 0.0)  # the same template, learned before
    assert "xlate_src_addr_ipv4" in after.data[0].records.column_names
    unregister()
    again = decode(data, EXPORTER, state, 0.0)
    assert again.data[0].records.column_names == before.data[0].records.column_names


def test_register_overrides_and_unregister_restores() -> None:
    assert element(0, 40001).name == "xlate_source_address_ipv4"
    register({(0, 40001): Element("a", "ipv4Address"), (7, 1): Element("b", "string")})
    register({(0, 40001): Element("c", "ipv4Address")})  # a later definition wins
    assert element(0, 40001) == ("c", "ipv4Address")
    assert element(7, 1) == ("b", "string")
    assert custom_fields.registered() == {(0, 40001): ("c", "ipv4Address"),
                                          (7, 1): ("b", "string")}
    unregister()
    assert element(0, 40001) == ("xlate_source_address_ipv4", "ipv4Address")
    assert element(7, 1) == ("pen7_field_1", "octetArray")
    assert custom_fields.registered() == {}


IPFIX_DEFS = """\
0:
  8:
  - :ip4_addr
  - :my_source
99999:
  77:
  - :uint16
  - :vendor_port
  78:
  - :string
  - :vendor_label
  79:
  - :skip
  "0x50":
  - 4
  - :vendor_count
"""


def test_ipfix_enterprise_definitions(tmp_path: Path) -> None:
    path = tmp_path / "ipfix.yml"
    path.write_text(IPFIX_DEFS)
    defs = load(path)
    assert defs == {(0, 8): ("my_source", "ipv4Address"),
                    (99999, 77): ("vendor_port", "unsigned16"),
                    (99999, 78): ("vendor_label", "string"),
                    (99999, 80): ("vendor_count", "unsigned32")}  # :skip defines nothing
    register(defs)
    fields = [(8, 4), (77, 2, 99999), (78, 6, 99999), (79, 2, 99999), (80, 4, 99999),
              (8, 4, REVERSE_PEN)]
    rec = struct.pack(">4sH6sHI4s", b"\x0a\x00\x00\x01", 8443, b"edge1\0", 7, 123456,
                      b"\xc0\x00\x02\x01")
    msg = ipfix_message(a_set(2, ipfix_template(300, fields)), a_set(300, rec))
    d = decode(msg, EXPORTER, TemplateState(), 0.0)
    assert not d.errors
    assert only(d.data).to_pylist() == [{
        "my_source": "10.0.0.1", "vendor_port": 8443, "vendor_label": "edge1",
        "pen99999_field_79": b"\x00\x07", "vendor_count": 123456,
        "reverse_my_source": "192.0.2.1"}]


@pytest.mark.parametrize(("text", "problem"), [
    ("1:\n- :uint128\n- :x\n", "field 1: unknown type ':uint128'"),
    ("1:\n- 5\n- :x\n", "field 1: unknown type 5"),
    ("abc:\n- :uint8\n- :x\n", "field id 'abc' is not an integer"),
    ("70000:\n- :uint8\n- :x\n", "field id 70000 is out of range"),
    ("1: :uint8\n", "every value must be a [type, name] list"),
    ("1:\n- :uint8\n", "field 1: expected [type, name]"),
    ("1:\n- :uint8\n- :x\n- :y\n", "field 1: expected [type, name] or [:skip]"),
    ("1:\n- :uint8\n- ''\n", "non-empty name"),
    ("1:\n- :skip\n- :x\n", ":skip takes no name"),
    ("1:\n- [a]\n- :x\n", "type must be a name or a byte count"),
    ("- 1\n- 2\n", "expected a mapping"),
    ("", "expected a mapping"),
    ("1:\n- :uint8\n- :x\n9:\n  2:\n  - :uint8\n  - :y\n", "every value must be"),
    ("x:\n  2:\n  - :uint8\n  - :y\n", "enterprise number 'x' is not an integer"),
    ("9:\n  2: :uint8\n", "enterprise 9 field 2: expected [type, name]"),
    ("1:\n- :uint8\n- :x\n'0x1':\n- :uint8\n- :y\n", "field 1: defined twice"),
    ("1: [:uint8, :x]\n", "cannot read custom definitions"),
])
def test_bad_files_name_the_file_and_the_problem(tmp_path: Path, text: str,
                                                 problem: str) -> None:
    path = tmp_path / "bad.yml"
    path.write_text(text)
    with pytest.raises(ValueError) as e:
        load(path)
    assert str(path) in str(e.value)
    assert problem in str(e.value)


def test_missing_file_is_a_value_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="missing.yml"):
        load(tmp_path / "missing.yml")
