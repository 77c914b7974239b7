"""Dashboard definitions (dashboards.yml beside this file): data, not code."""

from __future__ import annotations

from functools import lru_cache
from importlib import resources
from typing import Any

import yaml


@lru_cache(maxsize=1)
def load() -> dict[str, Any]:
    text = resources.files("netmeta.web").joinpath("dashboards.yml").read_text()
    return yaml.safe_load(text)
