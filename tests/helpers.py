"""Small helpers shared by tests (no fixtures here: see conftest.py)."""

from __future__ import annotations

from typing import Any


def flatten(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted leaf paths of a nested document (lists are leaves)."""
    out: dict[str, Any] = {}
    for k, v in doc.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out
