"""The batched pipeline: backpressure, graceful flush, worker processes = inline."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa

from netmeta.config import Config, Input
from netmeta.event import Origin, to_documents
from netmeta.pipeline import Pipeline, build_store
from netmeta.query import search as q
from netmeta.worker import Job

from .conftest import goflow2_line


def _cfg(tmp: Path, **pipeline: object) -> Config:
    cfg = Config(data_dir=str(tmp / "data"))
    for k, v in pipeline.items():
        setattr(cfg.pipeline, k, v)
    cfg.inputs["g"] = Input(type="goflow2", paths=["unused"], enabled=False)
    return cfg


def _job(i: int, n: int = 10) -> Job:
    data = "".join(goflow2_line(i * n + k) + "\n" for k in range(n)).encode()
    return Job("g", "goflow2", Origin("g", f"/f{i}.log", 1, i, 0), data, end=len(data))


def test_a_full_queue_blocks_the_reader_until_the_writer_catches_up(tmp_path: Path):
    gate = threading.Event()
    got: list[pa.Table] = []

    def slow_sink(table: pa.Table) -> None:
        gate.wait(30)
        got.append(table)

    pipe = Pipeline(_cfg(tmp_path, workers=0, queue_size=1, batch_size=1), None, slow_sink)
    reader_done = threading.Event()

    def reader() -> None:
        for i in range(5):
            pipe.submit(_job(i))
        reader_done.set()

    t = threading.Thread(target=reader)
    t.start()
    # the writer holds one batch in the sink, the queue holds one: the reader must wait
    assert not reader_done.wait(0.5)
    gate.set()
    assert reader_done.wait(30)
    t.join()
    pipe.close()
    assert sum(x.num_rows for x in got) == 50


def test_close_flushes_what_is_in_flight(tmp_path: Path):
    cfg = _cfg(tmp_path, workers=0, batch_size=10**9, batch_timeout=3600.0)
    store = build_store(cfg)
    pipe = Pipeline(cfg, store)
    for i in range(7):
        pipe.submit(_job(i))
    pipe.close()
    assert q.count(store, q.Query()) == 70
    assert store.positions("g") == {(1, i): len(_job(i).data) for i in range(7)}
    store.close()


def test_worker_processes_give_the_same_documents_as_inline(tmp_path: Path):
    out: dict[int, list[dict]] = {}
    for workers in (0, 2):
        docs: list[dict] = []
        pipe = Pipeline(_cfg(tmp_path, workers=workers), None,
                        lambda t, docs=docs: docs.extend(to_documents(t)))
        for i in range(6):
            pipe.submit(_job(i, 50))
        pipe.close()
        out[workers] = docs
    assert len(out[0]) == 300 and out[0] == out[2]
    assert [d["sflow"]["sequence_num"] for d in out[2]] == list(range(300))


def test_a_chunk_that_raises_becomes_failures_and_the_pipeline_goes_on(tmp_path: Path,
                                                                      monkeypatch) -> None:
    from netmeta.normalize import goflow2

    real = goflow2.normalize
    calls = {"n": 0}

    def flaky(decoded, data, origin):  # the first chunk hits a (simulated) bug
        calls["n"] += 1
        if calls["n"] == 1:
            raise KeyError("simulated bug")
        return real(decoded, data, origin)

    monkeypatch.setattr(goflow2, "normalize", flaky)
    cfg = _cfg(tmp_path, workers=0)
    store = build_store(cfg)
    pipe = Pipeline(cfg, store)
    for i in range(3):
        pipe.submit(_job(i))
    pipe.close()
    assert q.count(store, q.Query()) == 20
    fails = store.failures().to_pylist()
    assert len(fails) == 10
    assert all("internal error: KeyError" in f["error.message"] for f in fails)
    assert sorted(f["log.offset"] for f in fails) == _offsets(_job(0).data)
    store.close()


def _offsets(data: bytes) -> list[int]:
    out, pos = [], 0
    for line in data.splitlines(keepends=True):
        out.append(pos)
        pos += len(line)
    return out
