"""The ``netmeta`` command: serve, ingest, search, top, check-config."""

from __future__ import annotations

import json
import logging
import os
import signal
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click
import orjson

from netmeta.cli_options import common
from netmeta.config import Config

log = logging.getLogger("netmeta")
SERVE_FILE = "serve.json"  # written by `serve` in the data dir: who owns the store




@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def main(verbose: bool) -> None:
    """netmeta: network metadata → ECS, stored, searchable."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)


# ---------------------------------------------------------------- check-config

@main.command("check-config")
@common
def check_config(cfg: Config) -> None:
    """Validate the configuration; name the exact key that is wrong and why."""
    click.echo(f"configuration OK ({cfg.source or 'built-in defaults'}): "
               f"{len(cfg.inputs)} input(s), {len(cfg.index_sets)} index set(s), "
               f"{len(cfg.streams)} stream(s), data dir {cfg.data_dir}")


# ---------------------------------------------------------------- serve

def _owner(cfg: Config) -> dict[str, Any] | None:
    """The running `serve` that owns this data dir, if any."""
    p = Path(cfg.data_dir) / SERVE_FILE
    try:
        info = json.loads(p.read_text())
        os.kill(int(info["pid"]), 0)
        return info
    except (OSError, ValueError, KeyError):
        return None


def _open_store(cfg: Config, read_only: bool = False) -> Any:
    from netmeta.pipeline import build_store
    from netmeta.store.duckdb import StoreLocked
    try:
        return build_store(cfg, read_only=read_only)
    except StoreLocked:
        owner = _owner(cfg)
        who = f"netmeta serve (pid {owner['pid']})" if owner else "another process"
        raise click.ClickException(
            f"the store in {cfg.data_dir} is in use by {who}; stop it or use another "
            "--data-dir") from None


@main.command()
@common
def serve(cfg: Config) -> None:
    """Run the collector: inputs, pipeline, store and the HTTP port."""
    from netmeta.inputs import (
        BeatsSource,
        EsBulkSource,
        GelfHttpSource,
        GelfSource,
        PushSource,
        TailSource,
        TcpSource,
        UdpSource,
    )
    from netmeta.pipeline import Pipeline
    from netmeta.web.app import HttpServer, create_app

    store = _open_store(cfg)
    dropped = store.apply_retention()
    if dropped:
        log.info("retention dropped %d day partition(s)", len(dropped))
    from netmeta.store.catalog import apply_api_streams

    if apply_api_streams(store, cfg):  # streams created through the API, before workers start
        log.info("streams created through the API added: %s", ", ".join(
            s.name for s in cfg.streams))
    pipeline = Pipeline(cfg, store)
    stop = threading.Event()
    sources: list[threading.Thread] = []
    pushers: list[PushSource | BeatsSource | EsBulkSource | GelfHttpSource] = []

    def abort(message: str) -> NoReturn:
        stop.set()
        for s in sources:
            getattr(s, "close", lambda: None)()
        for p in pushers:
            p.stop()
        pipeline.close()
        store.close()
        raise click.ClickException(message)

    # every socket is bound before the HTTP port answers: once /healthz does, datagrams
    # sent to an input are received
    for name, inp in cfg.inputs.items():
        if not inp.enabled:
            continue
        if inp.shipped:  # Beats, by Lumberjack or Elasticsearch's _bulk: acked once stored
            try:
                pushers.append(BeatsSource(name, inp, pipeline, store) if inp.type == "beats"
                               else EsBulkSource(name, inp, pipeline, store))
            except (OSError, ssl.SSLError) as e:
                abort(f"input {name}: cannot listen on {inp.listen}:{inp.listen_port}: {e} "
                      f"(key inputs.{name}.port / inputs.{name}.{inp.type}.tls)")
            continue
        if inp.type == "gelf" and inp.protocol == "http":  # answered once stored
            pushers.append(GelfHttpSource(name, inp, pipeline, store))
            continue
        if inp.type == "gelf":
            try:
                gelf: threading.Thread = GelfSource(name, inp, pipeline, stop)
            except (OSError, ssl.SSLError) as e:
                abort(f"input {name}: cannot listen on {inp.protocol.upper()} {inp.listen}:"
                      f"{inp.listen_port}: {e} (key inputs.{name}.port)")
            log.info("input %s (gelf): %s %s:%d", name, inp.protocol.upper(),
                     *gelf.listener.address)
            sources.append(gelf)
            continue
        if inp.pushed:
            push = PushSource(name, inp, pipeline, store)
            pushers.append(push)
            continue
        if inp.udp or (inp.syslog and inp.protocol == "udp"):
            try:
                src: threading.Thread = UdpSource(name, inp, pipeline, stop)
            except OSError as e:
                abort(f"input {name}: cannot listen on UDP {inp.listen}:{inp.listen_port}: "
                      f"{e.strerror} (key inputs.{name}.port)")
            log.info("input %s (%s): UDP %s:%d", name, inp.type, *src.listener.address)
        elif inp.syslog:
            try:
                src = TcpSource(name, inp, pipeline, stop)
            except (OSError, ssl.SSLError) as e:
                abort(f"input {name}: cannot listen on TCP {inp.listen}:{inp.listen_port}: "
                      f"{e} (key inputs.{name}.port / inputs.{name}.tls)")
            log.info("input %s (syslog): TCP%s %s:%d", name, " TLS" if inp.tls.cert else "",
                     *src.listener.address)
        else:
            src = TailSource(name, inp, pipeline, store, stop)
            log.info("input %s (%s): tailing %s", name, inp.type, ", ".join(inp.paths))
        sources.append(src)
    for push in pushers:
        try:
            push.start()
        except OSError as e:
            abort(f"input {push.input_name}: {e} (key inputs.{push.input_name}.port)")
        if not isinstance(push, PushSource):
            log.info("input %s (%s): %s", push.input_name, push.inp.type, push.describe())
            continue
        log.info("input %s (%s): HTTP%s %s:%d%s", push.input_name, push.inp.type,
                 "S" if push.inp.http.tls.cert else "", *push.address, push.inp.http.path)
    http = HttpServer(create_app(store, cfg.http.auth), cfg.http.listen, cfg.http.port)
    try:
        http.start()
    except OSError as e:
        abort(f"http: {e} (key http.port)")
    for src in sources:
        src.start()
    owner_file = Path(cfg.data_dir) / SERVE_FILE
    owner_file.write_text(json.dumps({"pid": os.getpid(), "listen": cfg.http.listen,
                                      "port": cfg.http.port}))
    log.info("netmeta serving: data dir %s, http://%s:%d/metrics", cfg.data_dir,
             cfg.http.listen, cfg.http.port)

    def on_signal(signum: int, _: Any) -> None:
        log.info("signal %d: flushing and stopping", signum)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    last_retention = time.monotonic()
    try:
        while not stop.wait(1.0):
            if pipeline.error is not None:
                log.error("pipeline failed: %s", pipeline.error)
                break
            if time.monotonic() - last_retention > 3600:
                store.apply_retention()
                last_retention = time.monotonic()
    finally:
        stop.set()
        for s in sources:
            s.join(timeout=30)
        for p in pushers:  # requests in flight are answered once their batch is stored
            p.stop()
        pipeline.close()
        http.stop()
        owner_file.unlink(missing_ok=True)
        store.close()
        log.info("stopped")


# ---------------------------------------------------------------- ingest

@main.command()
@click.option("--format", "fmt", required=True,
              type=click.Choice(["goflow2", "netflow", "sflow", "packetbeat", "gelf"]),
              help="goflow2: JSON lines. netflow: NetFlow v5/v9/IPFIX datagrams; sflow: sFlow v5 "
                   "datagrams; both from pcap or pcapng captures or from files holding one "
                   "raw datagram each (.dat). packetbeat: Packetbeat events as its file "
                   "output writes them (NDJSON). gelf: GELF messages, one JSON object a line.")
@click.option("--exporter", default="127.0.0.1:0", show_default=True,
              help="Exporter address:port of raw datagram files (captures carry their own).")
@click.option("--input", "input_name", default=None,
              help="Input name the events are stored under (default: the format).")
@click.option("--stdout", "to_stdout", is_flag=True,
              help="Print the ECS documents as NDJSON instead of storing them (dry run).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: when stderr is a terminal).")
@click.argument("files", nargs=-1, required=True)
@common
def ingest(cfg: Config, fmt: str, exporter: str, input_name: str | None, to_stdout: bool,
           progress: bool | None, files: tuple[str, ...]) -> None:
    """Import FILE... ('-' for stdin) through the same pipeline as serve."""
    from netmeta.config import Input
    from netmeta.inputs import datagram_jobs, job_from_chunk, shipped_jobs
    from netmeta.pipeline import Pipeline, ndjson_sink
    from netmeta.sources.files import read_file

    name = input_name or fmt
    if name not in cfg.inputs:  # same tags/fields/enrichment as a configured input would get
        cfg.inputs[name] = Input(type=_INPUT_TYPES.get(fmt, fmt), paths=[],  # type: ignore[arg-type]
                                 enabled=False)
        if fmt in _SHIPPED:
            _packetbeat_stream(cfg, name)
    for f in files:
        if f != "-" and not Path(f).is_file():
            raise click.ClickException(f"no such file: {f}")
        if f == "-" and fmt not in ("goflow2", *_SHIPPED):
            raise click.ClickException(f"--format {fmt} reads files (captures or .dat), "
                                       "not stdin")
    store = None if to_stdout else _open_store(cfg)
    out = sys.stdout.buffer
    pipeline = Pipeline(cfg, store, ndjson_sink(out.write) if to_stdout else None)
    total = sum(Path(f).stat().st_size for f in files if f != "-")
    show = progress if progress is not None else sys.stderr.isatty()
    started = time.monotonic()
    try:
        with _progress(show, total) as update:
            for f in files:
                if fmt in _SHIPPED:
                    for job in shipped_jobs(name, fmt, f, cfg.pipeline.read_size,
                                            cfg.pipeline.max_line):
                        pipeline.submit(job)
                        update(pipeline.stats)
                    continue
                if fmt != "goflow2":
                    for job in datagram_jobs(name, fmt, f, exporter):
                        pipeline.submit(job)
                        update(pipeline.stats)
                    continue
                for chunk in read_file(f, read_size=cfg.pipeline.read_size,
                                       max_line=cfg.pipeline.max_line):
                    pipeline.submit(job_from_chunk(name, fmt, chunk, False))
                    update(pipeline.stats)
            pipeline.close()
            update(pipeline.stats)
    finally:
        if store is not None:
            store.close()
    s = pipeline.stats
    took = max(time.monotonic() - started, 1e-9)
    verb = "printed" if to_stdout else "stored"
    click.echo(f"{s.events} events {verb}, {s.failures} failures, {s.bytes} bytes in "
               f"{took:.2f} s ({s.records / took:,.0f} records/s)", err=True)


_SHIPPED = ("packetbeat", "gelf")  # files of events as the Beats and GELF inputs receive them
_INPUT_TYPES = {"packetbeat": "beats"}  # the input type whose settings an ingest input takes


def _packetbeat_stream(cfg: Config, name: str) -> None:
    """Packetbeat events ingested from files go where the Packetbeat inputs' go: the
    Packetbeat stream (added now when no input of the configuration has it)."""
    from netmeta.route import packetbeat

    for s in cfg.streams:
        if s.name == packetbeat.STREAM:
            if s.inputs and name not in s.inputs:
                s.inputs.append(name)
            return
    packetbeat.add_defaults(cfg)


class _progress:
    """rich progress bar: bytes, events/s, failures (a no-op when not shown)."""

    def __init__(self, show: bool, total: int) -> None:
        self.show, self.total = show, total

    def __enter__(self) -> Callable[[Any], None]:
        if not self.show:
            return lambda stats: None
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
        self.bar = Progress(TextColumn("ingest"), BarColumn(), DownloadColumn(),
                            TextColumn("{task.fields[rate]} events/s"),
                            TextColumn("{task.fields[failures]} failures"),
                            TimeElapsedColumn(), transient=False)
        self.bar.start()
        self.task = self.bar.add_task("ingest", total=self.total or None, rate="0",
                                      failures=0)
        self.t0 = time.monotonic()

        def update(stats: Any) -> None:
            rate = stats.events / max(time.monotonic() - self.t0, 1e-6)
            self.bar.update(self.task, completed=stats.bytes, rate=f"{rate:,.0f}",
                            failures=stats.failures)
        return update

    def __exit__(self, *exc: Any) -> None:
        if self.show:
            self.bar.stop()


# ---------------------------------------------------------------- search / top

def _remote(cfg: Config, path: str, params: dict[str, Any], method: str = "GET",
            body: Any = None) -> Any:
    from netmeta.web.auth import read_local_key

    owner = _owner(cfg)
    if owner is None:
        return None
    host = owner.get("listen", "127.0.0.1")
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    qs = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    # the local key serve wrote in the data dir: whoever can read the store may query it
    key = read_local_key(cfg.data_dir)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = None
    if body is not None:
        data, headers["Content-Type"] = orjson.dumps(body), "application/json"
    req = urllib.request.Request(f"http://{host}:{owner['port']}{path}?{qs}", data=data,
                                 headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return orjson.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            msg = orjson.loads(body).get("error", body.decode())
        except orjson.JSONDecodeError:
            msg = body.decode(errors="replace")
        raise click.ClickException(msg) from None


def _local(cfg: Config) -> Any:
    from netmeta.store.duckdb import Store, StoreLocked
    try:
        return Store(cfg.data_dir, read_only=True)
    except FileNotFoundError as e:
        raise click.ClickException(str(e)) from None
    except StoreLocked:
        raise click.ClickException(
            f"the store in {cfg.data_dir} is in use and no netmeta serve answers for it") \
            from None


def _run_query(fn: Callable[[], Any]) -> Any:
    from netmeta.query.kql import KQLError
    try:
        return fn()
    except (KQLError, ValueError) as e:
        raise click.ClickException(str(e)) from None


DEFAULT_COLUMNS = ["@timestamp", "event.action", "source.ip", "source.port", "destination.ip",
                   "destination.port", "network.transport", "network.bytes"]


@main.command()
@click.argument("kql", default="")
@click.option("--from", "start", help="Start time: ISO 8601 or now-15m, now-7d ...")
@click.option("--to", "end", help="End time (default: now).")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1_000_000))
@click.option("--fields", help="Comma-separated fields to show.")
@click.option("--json", "as_json", is_flag=True, help="NDJSON documents.")
@click.option("--failures", is_flag=True, help="Show the failure store instead.")
@common
def search(cfg: Config, kql: str, start: str | None, end: str | None, limit: int,
           fields: str | None, as_json: bool, failures: bool) -> None:
    """Search stored events with KQL (newest first)."""
    from netmeta.query import search as q
    wanted = [f.strip() for f in (fields or "").split(",") if f.strip()]
    if failures:
        remote = _remote(cfg, "/api/failures", {"limit": limit})
        if remote is not None:
            rows = remote["failures"]
        else:
            store = _local(cfg)
            rows = store.failures(limit).to_pylist()
            store.close()
            for r in rows:
                r["@timestamp"] = r["@timestamp"].isoformat() + "Z"
        _print_failures(rows, as_json)
        return
    params = {"q": kql, "from": start, "to": end, "limit": limit, "fields": ",".join(wanted)}
    remote = _run_query(lambda: _remote(cfg, "/api/search", params))
    if remote is not None:
        hits, total = remote["hits"], remote["total"]
    else:
        store = _local(cfg)
        query = _run_query(lambda: q.Query(kql, q.parse_time(start), q.parse_time(end)))
        hits = _run_query(lambda: q.search(store, query, limit, wanted))
        total = _run_query(lambda: q.count(store, query))
        store.close()
    if as_json:
        for h in hits:
            click.echo(orjson.dumps(h).decode())
        return
    _print_table(hits, wanted or DEFAULT_COLUMNS, total)


def _print_table(hits: list[dict[str, Any]], columns: list[str], total: int) -> None:
    from rich.console import Console
    from rich.table import Table

    from netmeta.query.search import pick
    table = Table(*columns, title=f"{len(hits)} of {total} events", title_justify="left")
    for h in hits:
        vals = [pick(h, c) if "." in c or c.startswith("@") else h.get(c) for c in columns]
        table.add_row(*["" if v is None else (", ".join(map(str, v)) if isinstance(v, list)
                        else str(v)) for v in vals])
    Console(width=200).print(table)


def _print_failures(rows: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        for r in rows:
            click.echo(orjson.dumps(r).decode())
        return
    for r in rows:
        where = f"{r.get('log.file.path') or '-'}:{r.get('log.offset')}"
        click.echo(f"{r['@timestamp']}  {r['_input']}  {where}  {r['error.message']}")
        click.echo(f"    {(r.get('event.original') or '')[:300]}")
    click.echo(f"{len(rows)} failure(s)", err=True)


@main.command()
@click.argument("field")
@click.option("--by", help="Rank by the sum of this numeric field (default: event count).")
@click.option("--query", "kql", default="", help="KQL filter.")
@click.option("--from", "start")
@click.option("--to", "end")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--json", "as_json", is_flag=True)
@common
def top(cfg: Config, field: str, by: str | None, kql: str, start: str | None,
        end: str | None, limit: int, as_json: bool) -> None:
    """Top values of FIELD by count or by the sum of --by."""
    from netmeta.query import search as q
    params = {"field": field, "by": by, "q": kql, "from": start, "to": end, "limit": limit}
    remote = _run_query(lambda: _remote(cfg, "/api/top", params))
    if remote is not None:
        rows = [(b["key"], b["value"]) for b in remote["buckets"]]
    else:
        store = _local(cfg)
        query = _run_query(lambda: q.Query(kql, q.parse_time(start), q.parse_time(end)))
        rows = _run_query(lambda: q.top(store, field, query, by, limit))
        store.close()
    if as_json:
        for k, v in rows:
            click.echo(orjson.dumps({"key": k, "value": v}).decode())
        return
    width = max([len(str(k)) for k, _ in rows] + [len(field)])
    click.echo(f"{field:<{width}}  {by or 'count'}")
    for k, v in rows:
        click.echo(f"{k!s:<{width}}  {v:,.0f}" if isinstance(v, int | float) else f"{k}  {v}")


from netmeta.web.cli import demo, token  # noqa: E402 - commands of the UI's issue

main.add_command(token)
main.add_command(demo)

if __name__ == "__main__":
    main()
