"""Streams: named routing rules that send events to index sets (Graylog's model).

A stream matches by input (the default stream of each input matches everything that input
produces) and/or by a KQL rule. An event may match several streams; it is stored once per
index set, with the names of every stream of that set it matched. An event that matches
no stream at all goes to the ``default`` index set under the ``default`` stream, so that
nothing is lost by a routing mistake.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from netmeta.event import META_INPUT
from netmeta.query.sql import compile_where

DEFAULT = "default"


@dataclass(frozen=True, slots=True)
class Stream:
    name: str
    index_set: str = DEFAULT
    inputs: tuple[str, ...] = ()  # empty: any input
    rule: str = ""  # KQL; empty: every event


@dataclass(frozen=True, slots=True)
class Route:
    """What one index set receives from a batch: SQL over the batch's columns."""

    index_set: str
    where: str  # rows this index set stores
    where_params: list[Any]
    streams: str  # expression giving the _streams list of a row
    streams_params: list[Any]


@dataclass(slots=True)
class Router:
    streams: Sequence[Stream]
    conditions: list[tuple[Stream, str, list[Any]]] = field(init=False)

    def __post_init__(self) -> None:
        self.conditions = [(s, *_condition(s)) for s in self.streams]

    def routes(self) -> list[Route]:
        by_set: dict[str, list[tuple[Stream, str, list[Any]]]] = {}
        for cond in self.conditions:
            by_set.setdefault(cond[0].index_set, []).append(cond)
        any_sql = " OR ".join(f"({c})" for _, c, _ in self.conditions) or "FALSE"
        any_params = [p for _, _, ps in self.conditions for p in ps]
        routes = []
        for index_set, conds in by_set.items():
            where = " OR ".join(f"({c})" for _, c, _ in conds)
            params = [p for _, _, ps in conds for p in ps]
            cases = ", ".join(f"CASE WHEN ({c}) THEN ? END" for _, c, _ in conds)
            sparams: list[Any] = []
            for s, _, ps in conds:
                sparams += [*ps, s.name]
            if index_set == DEFAULT:  # the catch-all lives in the default set
                where = f"{where} OR NOT ({any_sql})"
                params = params + any_params
                cases += f", CASE WHEN NOT ({any_sql}) THEN ? END"
                sparams += [*any_params, DEFAULT]
            routes.append(Route(index_set, where, params,
                                f"list_filter([{cases}], x -> x IS NOT NULL)", sparams))
        if DEFAULT not in by_set:
            routes.append(Route(DEFAULT, f"NOT ({any_sql})", any_params, "[?]", [DEFAULT]))
        return routes

    def by_input(self, input_name: str) -> dict[str, list[str]] | None:
        """Index set → names of the streams every event of ``input_name`` matches, when no
        stream has a rule (the default set-up: routing then needs no look at the events);
        None when rules must be evaluated."""
        if any(s.rule.strip() for s in self.streams):
            return None
        out: dict[str, list[str]] = {}
        for s in self.streams:
            if not s.inputs or input_name in s.inputs:
                out.setdefault(s.index_set, []).append(s.name)
        return out or {DEFAULT: [DEFAULT]}

    def counts_sql(self) -> tuple[str, list[Any]]:
        """One query giving, per stream and then for the catch-all ``default``, how many rows
        of a batch it matched (see ``count_names``)."""
        parts = [f"count(*) FILTER (WHERE {c})" for _, c, _ in self.conditions]
        params = [p for _, _, ps in self.conditions for p in ps]
        any_sql = " OR ".join(f"({c})" for _, c, _ in self.conditions) or "FALSE"
        parts.append(f"count(*) FILTER (WHERE NOT ({any_sql}))")
        params += params
        return ", ".join(parts), params

    def count_names(self) -> list[str]:
        return [s.name for s, _, _ in self.conditions] + [DEFAULT]


def _condition(s: Stream) -> tuple[str, list[Any]]:
    parts, params = [], []
    if s.inputs:
        parts.append(f'"{META_INPUT}" IN ({", ".join("?" * len(s.inputs))})')
        params += list(s.inputs)
    if s.rule.strip():
        sql, p = compile_where(s.rule)
        parts.append(f"({sql})")
        params += p
    return (" AND ".join(parts) or "TRUE"), params
