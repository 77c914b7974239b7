"""CLI commands of the UI: ``netmeta token create|list|revoke`` and ``netmeta demo``.

Registered on the main group by netmeta.cli. While ``serve`` owns the store, token commands
go through its API (authenticated with the local key it wrote in the data dir); otherwise
they open the store themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from netmeta.cli_options import common


def _with_store(cfg: Any, fn: Callable[[Any], Any]) -> Any:
    from netmeta import cli

    store = cli._open_store(cfg)
    try:
        return fn(store)
    finally:
        store.close()


@click.group()
def token() -> None:
    """API tokens for the UI and the query API (stored hashed in the store)."""


@token.command("create")
@click.argument("name", default="")
@common
def token_create(cfg: Any, name: str) -> None:
    """Create a token (shown once) named NAME."""
    from netmeta import cli
    from netmeta.store import catalog

    made = cli._remote(cfg, "/api/tokens", {}, "POST", {"name": name})
    if made is None:
        made = _with_store(cfg, lambda s: catalog.create_token(s, name))
    click.echo(made["token"])
    click.echo(f"token {made['id']} ({made['name']}) created; it is shown only now", err=True)


@token.command("list")
@common
def token_list(cfg: Any) -> None:
    """List tokens (ids and names; the tokens themselves are not kept)."""
    from netmeta import cli
    from netmeta.store import catalog

    remote = cli._remote(cfg, "/api/tokens", {})
    if remote is not None:
        rows = remote["tokens"]
    else:
        store = cli._local(cfg)
        try:
            rows = catalog.list_tokens(store)
        finally:
            store.close()
    for r in rows:
        state = f"revoked {r['revoked']}" if r["revoked"] else "active"
        click.echo(f"{r['id']}  {r['name']:<20}  created {r['created']}  {state}")
    click.echo(f"{len(rows)} token(s)", err=True)


@token.command("revoke")
@click.argument("token_id")
@common
def token_revoke(cfg: Any, token_id: str) -> None:
    """Revoke the token TOKEN_ID (from `token list`)."""
    from netmeta import cli
    from netmeta.store import catalog

    if cli._owner(cfg) is not None:
        cli._remote(cfg, f"/api/tokens/{token_id}", {}, "DELETE")
    elif not _with_store(cfg, lambda s: catalog.revoke_token(s, token_id)):
        raise click.ClickException(f"no active token {token_id!r}")
    click.echo(f"token {token_id} revoked")


@click.command()
@click.option("--sessions", default=8000, show_default=True, type=click.IntRange(100, 10**6),
              help="Connections in the synthetic day (each told by several sources).")
@common
def demo(cfg: Any, sessions: int) -> None:
    """Fill a fresh data dir with a synthetic day of mixed traffic from every source
    (NetFlow v5/v9, IPFIX, sFlow, GoFlow2, Gigamon AMI JSON and CEF, Packetbeat), through
    the real decoders; then `netmeta serve` shows populated dashboards."""
    from netmeta import demo as demo_mod
    from netmeta.store.duckdb import DB_FILE

    if (Path(cfg.data_dir) / DB_FILE).exists():
        raise click.ClickException(f"{cfg.data_dir} holds a store already; the demo fills a "
                                   "fresh one (use --data-dir)")
    demo_mod.prepare(cfg)
    if not cfg.enrich.geoip.city_db:
        click.echo("no GeoIP databases configured: the map stays empty", err=True)
    done = demo_mod.run(cfg, sessions)
    click.echo(f"demo: {done['events']} events, {done['failures']} failures stored in "
               f"{cfg.data_dir}; now `netmeta serve --data-dir {cfg.data_dir}` and open "
               f"http://{cfg.http.listen}:{cfg.http.port}/ (a token: `netmeta token create "
               f"--data-dir {cfg.data_dir}`)", err=True)
