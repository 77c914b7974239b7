"""What every ``netmeta`` command shares: ``--config`` / ``--data-dir`` and loading the
configuration (the main commands in netmeta.cli and the UI's in netmeta.web.cli)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from netmeta import config as config_mod
from netmeta.config import Config, ConfigError


def load(config: str | None, data_dir: str | None) -> Config:
    path = config
    if path is None and Path(config_mod.DEFAULT_FILE).is_file():
        path = config_mod.DEFAULT_FILE
    try:
        return config_mod.load(path, data_dir)
    except ConfigError as e:
        raise click.ClickException(str(e)) from None


def common(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--config and --data-dir on every command."""
    @click.option("--config", "-c", "config", type=click.Path(dir_okay=False),
                  help="Configuration file (default: ./netmeta.yml when present).")
    @click.option("--data-dir", "-d", "data_dir", type=click.Path(file_okay=False),
                  help="Data directory (overrides data_dir of the configuration).")
    @functools.wraps(fn)
    def wrapper(*args: Any, config: str | None, data_dir: str | None, **kw: Any) -> Any:
        return fn(*args, cfg=load(config, data_dir), **kw)
    return wrapper
