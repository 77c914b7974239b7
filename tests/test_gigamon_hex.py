"""Gigamon CEF SSL records: hex-encoded DNs and ASN.1 validity dates made readable (the
example record of Gigamon's NetFlow/CEF format guide, its wrapped lines joined)."""

from __future__ import annotations

from netmeta.normalize import syslog
from netmeta.normalize.gigamon_hex import asn1_time

ISSUER_HEX = ("2f433d55532f4f3d446967694365727420496e632f4f553d7777772e6469676963"
              "6572742e636f6d2f434e3d446967694365727420534841322048696768204173737572616e636"
              "52053657276" "6572204341")
SUBJECT_HEX = ("2f433d55532f53543d4e657720596f726b2f4c3d4e657720596f726b2f4f3d4672656"
               "5776865656c204d6564696120496e632f4f553d46726565776865656c2f434e3d2a2e737469"
               "636b796164737" "4762e636f6d")
SSL_RECORD = (
    "Thu Mar 1 08:21:28 2018 1/1/e1 CEF:23|Gigamon|metadata|5.3.00|4|metadata generation|6|"
    "GigamonMdataSslIssuerName=DigiCert SHA2 High Assurance S dpt=54839 "
    "GigamonMdataSslValidNotBefore=3137303130363030303030305a "
    "GigamonMdataSslSerialNo=0118ee3c2167b99e1b718c6eadb8fb4d00000000 "
    "GigamonMdataSslValidNotAfter=3230303131353132303030305a "
    "GigamonMdataSslServerVersion=771 GigamonMdataSslCertSubAltName=*.stickyadstv.com "
    f"GigamonMdataSslIssuer={ISSUER_HEX} GigamonMdataSslCertSubCommonName=*.stickyadstv.com "
    f"GigamonMdataSslSub={SUBJECT_HEX} dst=10.50.22.59 src=38.106.34.118")


def test_the_guides_ssl_record() -> None:
    docs, _, fails = syslog.normalize([(SSL_RECORD.encode(), "192.0.2.7:514")], [0.0], "s",
                                      "udp")
    assert fails == []
    doc = docs[0]
    ami = doc["gigamon"]["ami"]
    assert ami["GigamonMdataSslIssuer"] == ISSUER_HEX  # as sent, kept
    issuer = "/C=US/O=DigiCert Inc/OU=www.digicert.com/CN=DigiCert SHA2 High Assurance Server CA"
    assert ami["ssl_certificate_dn_issuer"] == issuer
    assert ami["ssl_certificate_dn_subject"] == (
        "/C=US/ST=New York/L=New York/O=Freewheel Media Inc/OU=Freewheel/CN=*.stickyadstv.com")
    assert doc["tls"]["server"]["not_before"] == "2017-01-06T00:00:00.000Z"
    assert doc["tls"]["server"]["not_after"] == "2020-01-15T12:00:00.000Z"
    assert doc["tls"]["server"]["issuer"] == issuer
    assert doc["source"]["ip"] == "38.106.34.118" and doc["destination"]["port"] == 54839
    assert doc["log"]["syslog"]["hostname"] == "1/1/e1"


def test_asn1_times() -> None:
    assert asn1_time("170106000000Z") == "2017-01-06T00:00:00.000Z"
    assert asn1_time("491231235959Z") == "2049-12-31T23:59:59.000Z"
    assert asn1_time("500101000000Z") == "1950-01-01T00:00:00.000Z"
    assert asn1_time("20500101000000Z") == "2050-01-01T00:00:00.000Z"
    assert asn1_time("171306000000Z") is None and asn1_time("garbage") is None
