"""The calls a Beat makes at start besides ``_bulk`` (Elasticsearch-compatible input):
license, x-pack, nodes, cluster health, and the index templates, ILM policies and ingest
pipelines it installs — answered as Elasticsearch does, and remembered in memory so that
the Beat proceeds (netmeta's own routing and retention apply to the events)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

import orjson


class EsError(Exception):
    """An error answered as Elasticsearch answers it: ``{"error": {...}, "status": n}``."""

    def __init__(self, status: int, type_: str, reason: str, refusal: str = "bad_request",
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status, self.type, self.reason = status, type_, reason
        self.refusal, self.headers = refusal, headers or {}

    def body(self) -> dict[str, Any]:
        cause = {"type": self.type, "reason": self.reason}
        return {"error": {"root_cause": [cause], **cause}, "status": self.status}


# Beats ask the license (libbeat/licenser) and accept basic or above when active
LICENSE = {"status": "active", "uid": "00000000-0000-4000-8000-000000000000",
           "type": "basic", "issue_date": "2024-01-01T00:00:00.000Z",
           "issue_date_in_millis": 1704067200000, "max_nodes": 1000,
           "max_resource_units": None, "issued_to": "netmeta", "issuer": "elasticsearch",
           "start_date_in_millis": -1}

# setup calls a Beat makes, by the first path segment: how a stored object is answered
_KINDS = {"_index_template": "index_templates", "_component_template": "component_templates",
          "_template": None, "_ilm": None, "_ingest": None, "_data_stream": "data_streams"}

_NODE_ID = "bmV0bWV0YS1ub2RlLTAwMQ"


def setup_call(method: str, path: str, body: bytes, objects: dict[str, Any],
               info: Callable[[], dict[str, Any]]) -> tuple[int, Any]:
    """The other calls a Beat makes: license, x-pack, nodes, health, and the templates,
    policies and pipelines it installs (kept in ``objects``)."""
    parts = [p for p in path.split("/") if p]
    head = parts[0] if parts else ""
    if head == "_license":
        return 200, {"license": LICENSE}
    if head == "_xpack":
        features = {f: {"available": True, "enabled": True} for f in
                    ("ilm", "monitoring", "security", "ml", "watcher")}
        return 200, {"build": {"hash": "netmeta", "date": "2024-01-01T00:00:00.000Z"},
                     "license": {k: LICENSE[k] for k in ("uid", "type", "status")} |
                     {"mode": "basic"}, "features": features}
    if head == "_nodes":
        v = info()["version"]["number"]
        return 200, {"_nodes": {"total": 1, "successful": 1, "failed": 0},
                     "cluster_name": info()["cluster_name"],
                     "nodes": {_NODE_ID: {"name": info()["name"], "version": v,
                                          "roles": ["data", "ingest", "master"],
                                          "ingest": {"processors": []}}}}
    if head == "_cluster" and parts[1:2] == ["health"]:
        return 200, {"cluster_name": info()["cluster_name"], "status": "green",
                     "timed_out": False, "number_of_nodes": 1, "number_of_data_nodes": 1,
                     "active_primary_shards": 0, "active_shards": 0,
                     "relocating_shards": 0, "initializing_shards": 0,
                     "unassigned_shards": 0, "active_shards_percent_as_number": 100.0}
    if head in _KINDS and (len(parts) >= 2 or head == "_data_stream"):
        return _stored_object(method, parts, body, objects)
    if method in ("PUT", "POST") and len(parts) == 1 and not head.startswith("_"):
        return 200, {"acknowledged": True, "shards_acknowledged": True, "index": head}
    if method in ("GET", "HEAD") and len(parts) == 1 and not head.startswith("_"):
        return 404, EsError(404, "index_not_found_exception",
                            f"no such index [{head}]").body()
    return 400, {"error": f"no handler found for uri [{path}] and method [{method}]",
                 "status": 400}


def _stored_object(method: str, parts: list[str], body: bytes, objects: dict[str, Any]
                   ) -> tuple[int, Any]:
    head = parts[0]
    # /_ilm/policy/x, /_ingest/pipeline/x: the name is the third segment
    kind_parts = 2 if head in ("_ilm", "_ingest") else 1
    if len(parts) < kind_parts + 1 and method in ("GET", "HEAD"):
        prefix = "/" + "/".join(parts) + "/"
        found = {k: v for k, v in objects.items() if k.startswith(prefix)}
        return 200, _listing(head, found)
    if len(parts) < kind_parts + 1:
        return 400, EsError(400, "illegal_argument_exception", "name is missing").body()
    name = parts[kind_parts]
    key = "/" + "/".join(parts[:kind_parts + 1])
    if method in ("PUT", "POST"):
        try:
            value = orjson.loads(body) if body.strip() else {}
        except orjson.JSONDecodeError as e:
            return 400, EsError(400, "parse_exception", f"request body is not JSON: {e}").body()
        objects[key] = value
        return 200, {"acknowledged": True}
    if method == "DELETE":
        return (200, {"acknowledged": True}) if objects.pop(key, None) is not None else \
            _missing(head, name)
    matches = {k: v for k, v in objects.items()
               if fnmatch.fnmatchcase(k, key) or k == key}
    if not matches:
        return _missing(head, name)
    return 200, _listing(head, matches)


def _listing(head: str, found: dict[str, Any]) -> Any:
    names = {k.rsplit("/", 1)[1]: v for k, v in found.items()}
    wrap = _KINDS.get(head)
    if head == "_index_template":
        return {wrap: [{"name": n, "index_template": v} for n, v in names.items()]}
    if head == "_component_template":
        return {wrap: [{"name": n, "component_template": v} for n, v in names.items()]}
    if head == "_data_stream":
        return {wrap: [{"name": n, "timestamp_field": {"name": "@timestamp"},
                        "indices": [], "generation": 1, "status": "GREEN",
                        "template": n} for n in names]}
    if head == "_ilm":
        return {n: {"version": 1, "modified_date": "2024-01-01T00:00:00.000Z",
                    "policy": v.get("policy", v) if isinstance(v, dict) else v}
                for n, v in names.items()}
    return names  # _template, _ingest/pipeline: {name: body}


def _missing(head: str, name: str) -> tuple[int, Any]:
    if head == "_ingest":
        return 404, {}  # Elasticsearch answers a missing pipeline with an empty object
    reasons = {"_index_template": f"index template matching [{name}] not found",
               "_component_template": f"component template matching [{name}] not found",
               "_ilm": f"Lifecycle policy not found: {name}",
               "_data_stream": f"no such index [{name}]"}
    kind = "index_not_found_exception" if head == "_data_stream" else \
        "resource_not_found_exception"
    if head == "_template":
        return 404, {}
    return 404, EsError(404, kind, reasons.get(head, f"[{name}] not found")).body()

