"""Field-by-field comparison of documents with Elastic's expected ones, under the
allow-list of tests/conformance_allowlist.yml (one section per conformance test)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import yaml

from netmeta.event import flatten

from .conftest import ROOT


def allowlist(section: str) -> dict[str, Any]:
    doc = yaml.safe_load((ROOT / "tests" / "conformance_allowlist.yml").read_text())[section]
    return {"added": {}, "absent": {}, "ignored": {}, **doc}


@dataclass
class Comparison:
    matched: int = 0
    total: int = 0  # expected fields, allow-listed absences included
    problems: list[str] = field(default_factory=list)
    used: set[str] = field(default_factory=set)  # allow-list entries that were needed

    def stale(self, allow: dict[str, Any]) -> set[str]:
        """Allow-list entries (added/absent) no case needed."""
        return (set(allow["added"]) | set(allow["absent"])) - self.used


def compare(pairs: Iterable[tuple[dict[str, Any], dict[str, Any]]], allow: dict[str, Any]
            ) -> Comparison:
    """Each expected field must be there with the same value and JSON type, or be listed as
    absent; each extra field must be listed as added; ``ignored`` prefixes are skipped."""
    def ignored(key: str) -> bool:
        return any(key == p or key.startswith(p + ".") for p in allow["ignored"])

    out = Comparison()
    for i, (got, want) in enumerate(pairs):
        g, w = flatten(got), flatten(want)
        for key, value in w.items():
            if ignored(key):
                continue
            out.total += 1
            if key in allow["absent"]:
                out.used.add(key)
            elif g.get(key) == value and type(g.get(key)) is type(value):
                out.matched += 1
            else:
                out.problems.append(f"case {i}: {key}: got {g.get(key)!r}, expected {value!r}")
        for key in g.keys() - w.keys():
            if key in allow["added"]:
                out.used.add(key)
            elif not ignored(key):
                out.problems.append(f"case {i}: {key}: not in the expected document")
    return out
