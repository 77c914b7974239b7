"""The query and administration API (/api/...), documented at /openapi.json and /docs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from netmeta.query import aggregate as agg
from netmeta.query import exporters as exp
from netmeta.query import fields as fld
from netmeta.query import search as q
from netmeta.query.paging import search_page
from netmeta.store import catalog
from netmeta.store.duckdb import Store
from netmeta.web import dashboards
from netmeta.web.auth import Authenticator


class AggregateRequest(BaseModel):
    q: str = Field("", description="KQL filter")
    from_: str | None = Field(None, alias="from", description="ISO 8601 or now-24h")
    to: str | None = Field(None, description="ISO 8601 or now")
    aggs: dict[str, Any] = Field(
        ..., description="terms / date_histogram / metric spec, one level of `sub`",
        examples=[{"type": "terms", "field": "source.ip", "size": 10,
                   "metric": {"type": "sum", "field": "network.bytes"}}])


class IndexSetCreate(BaseModel):
    name: str
    title: str = ""
    retention_days: int = 90


class IndexSetChange(BaseModel):
    retention_days: int
    title: str | None = None


class StreamCreate(BaseModel):
    name: str
    index_set: str = "default"
    inputs: list[str] = []
    rule: str = Field("", description="KQL rule; empty: every event of the inputs")


class TokenCreate(BaseModel):
    name: str = ""


def _query(kql: str, start: str | None, end: str | None) -> q.Query:
    return q.Query(kql, q.parse_time(start), q.parse_time(end))


def router(store: Store, auth: Authenticator) -> APIRouter:
    r = APIRouter(prefix="/api")

    @r.get("/search", tags=["query"])
    def api_search(q_: str = Query("", alias="q", description="KQL"),
                   start: str | None = Query(None, alias="from"),
                   end: str | None = Query(None, alias="to"), limit: int = 100,
                   fields: str = Query("", description="comma-separated fields to return"),
                   sort: str = Query("@timestamp:desc", description="field[:asc|desc]"),
                   cursor: str | None = Query(None, description="`next` of the last page"),
                   total: bool = Query(True, description="count every match too")
                   ) -> dict[str, Any]:
        """Events matching a KQL query, sorted, one page at a time."""
        query = _query(q_, start, end)
        wanted = [f for f in fields.split(",") if f]
        hits, nxt = search_page(store, query, limit, wanted, sort, cursor)
        return {"total": q.count(store, query) if total else None, "hits": hits,
                "next": nxt}

    @r.get("/top", tags=["query"])
    def api_top(field: str, by: str | None = None, q_: str = Query("", alias="q"),
                start: str | None = Query(None, alias="from"),
                end: str | None = Query(None, alias="to"), limit: int = 10) -> dict[str, Any]:
        """Top values of a field by count or by the sum of `by` (the CLI's `top`)."""
        rows = q.top(store, field, _query(q_, start, end), by, limit)
        return {"field": field, "by": by, "buckets": [{"key": k, "value": v} for k, v in rows]}

    @r.post("/aggregate", tags=["query"])
    def api_aggregate(req: AggregateRequest) -> dict[str, Any]:
        """Terms (top-N, composite keys), date histograms and metrics (count, sum, avg, min,
        max, cardinality, ratio), with one level of nesting; one SQL query each."""
        return agg.aggregate(store, _query(req.q, req.from_, req.to), req.aggs)

    @r.get("/fields", tags=["query"])
    def api_fields(start: str | None = Query(None, alias="from"),
                   end: str | None = Query(None, alias="to")) -> dict[str, Any]:
        """Fields present in the events of the range, with their types (autocompletion)."""
        return {"fields": fld.fields(store, _query("", start, end))}

    @r.get("/failures", tags=["query"])
    def api_failures(limit: int = 100) -> dict[str, Any]:
        """Recent records that could not become events, with error and original."""
        rows = store.failures(limit).to_pylist()
        for row in rows:
            row["@timestamp"] = row["@timestamp"].isoformat() + "Z"
        return {"failures": rows}

    @r.get("/exporters", tags=["health"])
    def api_exporters(start: str | None = Query("now-24h", alias="from"),
                      end: str | None = Query(None, alias="to")) -> dict[str, Any]:
        """NetFlow/IPFIX/sFlow exporters: last seen, templates, sampling, records/s, loss."""
        return {"exporters": exp.exporters(store, _query("", start, end))}

    @r.get("/dashboards", tags=["ui"])
    def api_dashboards() -> dict[str, Any]:
        """Dashboard definitions: each panel is one aggregation."""
        return {"dashboards": dashboards.load()}

    # ------------------------------------------------------------ administration

    @r.get("/index-sets", tags=["admin"])
    def api_index_sets() -> dict[str, Any]:
        return {"index_sets": catalog.index_set_usage(store)}

    @r.post("/index-sets", tags=["admin"], status_code=201)
    def api_index_set_create(req: IndexSetCreate) -> dict[str, Any]:
        try:
            catalog.create_index_set(store, req.name, req.title, req.retention_days)
        except KeyError as e:
            raise HTTPException(409, str(e.args[0])) from None
        return {"created": req.name}

    @r.patch("/index-sets/{name}", tags=["admin"])
    def api_index_set_change(name: str, req: IndexSetChange) -> dict[str, Any]:
        """Change retention; applied at once (days now past it are dropped), then by the
        hourly retention run."""
        try:
            catalog.set_retention(store, name, req.retention_days, req.title)
        except LookupError as e:
            raise HTTPException(404, str(e.args[0])) from None
        dropped = store.apply_retention() if not store.read_only else []
        return {"changed": name, "retention_days": req.retention_days, "dropped": dropped}

    @r.get("/streams", tags=["admin"])
    def api_streams(start: str | None = Query("now-24h", alias="from"),
                    end: str | None = Query(None, alias="to")) -> dict[str, Any]:
        """Streams routing now (those created through the API too: they route from their
        creation on), with events stored per stream in the range."""
        counts = agg.aggregate(store, _query("", start, end),
                               {"type": "terms", "field": "_streams", "size": 1000})
        per = {b["key"]: b["value"] for b in counts["buckets"]}
        active = [{"name": s.name, "index_set": s.index_set, "inputs": list(s.inputs),
                   "rule": s.rule, "active": True, "events": per.get(s.name, 0)}
                  for s in store.router.streams]
        names = {s["name"] for s in active}
        # recorded but not routing: a store opened without them (not by serve)
        pending = [{**s, "active": False, "events": per.get(s["name"], 0)}
                   for s in catalog.api_streams(store) if s["name"] not in names]
        names |= {s["name"] for s in pending}
        # streams events were stored under that no longer route (configuration changed)
        former = [{"name": n, "index_set": None, "inputs": [], "rule": None, "active": False,
                   "events": c} for n, c in per.items() if n not in names]
        return {"streams": active + pending + former}

    @r.post("/streams", tags=["admin"], status_code=201)
    def api_stream_create(req: StreamCreate) -> dict[str, Any]:
        try:
            catalog.create_stream(store, req.name, req.index_set, req.inputs, req.rule)
        except KeyError as e:
            raise HTTPException(409, str(e.args[0])) from None
        except LookupError as e:
            raise HTTPException(404, str(e.args[0])) from None
        return {"created": req.name, "active": True}

    @r.get("/tokens", tags=["admin"])
    def api_tokens() -> dict[str, Any]:
        return {"tokens": catalog.list_tokens(store)}

    @r.post("/tokens", tags=["admin"], status_code=201)
    def api_token_create(req: TokenCreate) -> dict[str, Any]:
        """Create a token; its text is shown only in this answer."""
        return catalog.create_token(store, req.name)

    @r.delete("/tokens/{token_id}", tags=["admin"])
    def api_token_revoke(token_id: str) -> dict[str, Any]:
        if not catalog.revoke_token(store, token_id):
            raise HTTPException(404, f"no active token {token_id!r}")
        auth.forget()
        return {"revoked": token_id}

    return r
