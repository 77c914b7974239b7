"""The index a Beat addressed, from @metadata as Logstash's beats input names it."""

from __future__ import annotations

import orjson

from netmeta.decode.beats_meta import index_of, split_tagged


def test_index_names_as_logstash_gives_them() -> None:
    assert index_of({"beat": "packetbeat", "type": "_doc", "version": "8.17.0"}) == \
        "packetbeat-8.17.0"
    assert index_of({"beat": "packetbeat", "version": "8.17.0",
                     "raw_index": "custom-index"}) == "custom-index"
    assert index_of({"beat": "packetbeat", "index": "pb-ds"}) == "pb-ds"
    assert index_of({"beat": "packetbeat"}) == "packetbeat"
    assert index_of({"version": "8.17.0"}) is None
    assert index_of("packetbeat") is None and index_of(None) is None


def test_events_tagged_bad_ones_set_apart() -> None:
    meta = {"beat": "packetbeat", "version": "8.17.0"}
    docs = [orjson.dumps({"@metadata": meta, "a": 1}), b' { "b": 2}',
            orjson.dumps({"@metadata": "odd", "c": 3}), b"{}"]
    good, bad = split_tagged(docs)
    assert bad == []
    parsed = [orjson.loads(d) for d in good]
    assert parsed[0]["_index"] == "packetbeat-8.17.0" and parsed[0]["a"] == 1
    assert parsed[0]["@metadata"] == meta  # left for the normalizer, which drops it
    assert "_index" not in parsed[1] and parsed[2] == {"@metadata": "odd", "c": 3}
    good, bad = split_tagged(docs[:1] + [b'{"broken": ', b"[1]", b"\xff{}"] + docs[1:2])
    assert [i for i, _ in bad] == [1, 2, 3]
    assert orjson.loads(good[0])["_index"] == "packetbeat-8.17.0" and len(good) == 2
    assert split_tagged([]) == ([], [])
