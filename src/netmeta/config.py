"""netmeta.yml: loading and validation.

The file is decoded into typed structs; any error names the exact key (``$.inputs.goflow2
.paths``) and why. Semantic checks (KQL rules compile, networks parse, databases exist)
follow the same rule.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

DEFAULT_FILE = "netmeta.yml"


class ConfigError(ValueError):
    """A configuration problem, worded for the user: key path and reason."""


class _S(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class Http(_S):
    listen: str = "127.0.0.1"
    port: int = 8000
    # UI and query API: "token" (API tokens, `netmeta token create`) or "none" (open)
    auth: Literal["token", "none"] = "token"


class Pipeline(_S):
    workers: int = 2  # decode/normalize/enrich processes; 0 runs them in the main process
    batch_size: int = 100_000  # events per store append
    batch_timeout: float = 1.0  # seconds before a partial batch is stored
    queue_size: int = 8  # chunks in flight between reader, workers and writer
    read_size: int = 16 << 20  # bytes read from a file at a time (one event file per read)
    max_line: int = 1 << 20  # longer lines become failure events
    # pre-aggregated flow cubes for the dashboards (store/rollups.py), kept a few seconds
    # behind ingest by a thread of serve: about 2 us of CPU per event
    rollups: bool = True


class GeoIPConfig(_S):
    city_db: str | None = None
    asn_db: str | None = None
    cache_size: int = 65536


class CommunityIdConfig(_S):
    seed: int = 0


class Enrich(_S):
    geoip: GeoIPConfig = msgspec.field(default_factory=GeoIPConfig)
    community_id: CommunityIdConfig = msgspec.field(default_factory=CommunityIdConfig)
    internal_networks: list[str] = msgspec.field(default_factory=lambda: ["private"])


class InputEnrich(_S):
    geoip: bool = True
    community_id: bool = True
    locality: bool = True


class Sampling(_S):
    # multiply network.bytes / network.packets by the exporter's sampling rate; None: as
    # Elastic does for the format (sFlow: yes, NetFlow/IPFIX: no)
    renormalize: bool | None = None
    # sampling rate per exporter address, over what the exporter says (options data, v5
    # header, flow fields)
    rates: dict[str, int] = msgspec.field(default_factory=dict)


class Secret(_S):
    header: str = ""  # request header that must carry ``value`` (compared in constant time)
    value: str = ""


class Hmac(_S):
    header: str = ""  # header carrying the signature of the body, e.g. X-Hub-Signature-256
    key: str = ""
    type: Literal["sha256", "sha1"] = "sha256"
    prefix: str = ""  # before the hex digest in the header, e.g. "sha256="


class Tls(_S):
    cert: str = ""
    key: str = ""


class HttpInput(_S):
    path: str = "/"
    secret: Secret = msgspec.field(default_factory=Secret)
    hmac: Hmac = msgspec.field(default_factory=Hmac)
    tls: Tls = msgspec.field(default_factory=Tls)
    max_body: int = 64 << 20  # bytes of a request body as sent
    max_decompressed: int = 256 << 20  # bytes once gzip/deflate/zip are undone
    max_entries: int = 5000  # records per request (AMX sends 10 to 5000, 1000 by default)


class ServerTls(Tls):
    ca: str = ""  # CA file the client certificates must verify against
    # as Logstash's beats input ssl_client_authentication: none, optional, required
    client_auth: Literal["none", "optional", "required"] = "none"


class BeatsInput(_S):
    """Lumberjack v2 (Beats' output.logstash); limits apply to each connection."""

    tls: ServerTls = msgspec.field(default_factory=ServerTls)
    max_payload: int = 64 << 20  # bytes of one frame as sent
    max_decompressed: int = 256 << 20  # bytes a compressed frame may inflate to
    max_batch: int = 8192  # events stored at once; bigger windows are acknowledged in parts
    keepalive: float = 3.0  # seconds between keep-alive ACKs while a batch is being stored
    idle_timeout: float = 60.0  # seconds a silent connection is kept (0: forever)
    max_connections: int = 1024
    # seconds: after a connection broke, batches acknowledged this long before may not have
    # reached the Beat; their resends are recognized (0: only batches not acknowledged)
    resend_window: float = 10.0


class EsInput(_S):
    """Elasticsearch-compatible ingest (Beats' output.elasticsearch, _bulk)."""

    version: str = "8.19.0"  # answered on GET /; a Beat refuses an Elasticsearch older than it
    cluster_name: str = "netmeta"
    username: str = ""  # basic auth, when set (with password)
    password: str = ""
    api_keys: list[str] = msgspec.field(default_factory=list)  # "id:key", as Beats' api_key
    tls: ServerTls = msgspec.field(default_factory=ServerTls)
    max_body: int = 100 << 20  # bytes as sent (Elasticsearch's http.max_content_length)
    max_decompressed: int = 512 << 20  # bytes once gzip/deflate are undone


class GelfInput(_S):
    """GELF (Graylog's format) over UDP (chunked), TCP (null-delimited) or HTTP."""

    chunk_timeout: float = 5.0  # seconds for all chunks of a UDP message (Graylog: 5)
    max_message: int = 8 << 20  # bytes of one message once inflated
    max_pending_per_sender: int = 32 << 20  # bytes of incomplete chunked messages, per sender
    max_pending: int = 256 << 20  # bytes of incomplete chunked messages, in total
    path: str = "/gelf"  # HTTP: where messages are POSTed (Graylog's GELF HTTP input)


UDP_TYPES = ("netflow", "ipfix", "sflow")
SYSLOG_TYPES = ("syslog",)
HTTP_TYPES = ("gigamon_ami",)
BEATS_TYPES = ("beats", "elasticsearch")  # Packetbeat and other Beats, by either output
# NetFlow v5/v9 and IPFIX (told apart by version), IPFIX's IANA port, sFlow's IANA port
DEFAULT_PORTS = {"netflow": 2055, "ipfix": 4739, "sflow": 6343, "gigamon_ami": 8081,
                 "beats": 5044, "elasticsearch": 9200, "gelf": 12201,
                 "syslog": 514}
# Elastic's goflow2 integration tags its events so; the UDP inputs add none by default
DEFAULT_TAGS = {"goflow2": ["preserve_original_event", "forwarded", "sflow"]}


class Input(_S):
    type: Literal["goflow2", "netflow", "ipfix", "sflow", "gigamon_ami", "syslog",
                  "beats", "elasticsearch", "gelf"]
    paths: list[str] = msgspec.field(default_factory=list)
    enabled: bool = True
    index_set: str = "default"
    tags: list[str] | None = None  # None: the type's default (DEFAULT_TAGS)
    fields: dict[str, Any] = msgspec.field(default_factory=dict)
    enrich: InputEnrich = msgspec.field(default_factory=InputEnrich)
    poll_interval: float = 0.25  # goflow2: seconds between looks at the files
    listen: str = "0.0.0.0"  # UDP inputs: address of the listener
    port: int | None = None  # UDP inputs: None is the type's port (DEFAULT_PORTS)
    rcvbuf: int = 8 << 20  # UDP inputs: socket receive buffer in bytes
    sampling: Sampling = msgspec.field(default_factory=Sampling)
    custom_definitions: list[str] = msgspec.field(default_factory=list)  # netflow/ipfix
    http: HttpInput = msgspec.field(default_factory=HttpInput)  # gigamon_ami
    protocol: Literal["udp", "tcp", "http"] = "udp"  # syslog (udp, tcp); gelf (all three)
    framing: Literal["auto", "octet", "newline"] = "auto"  # syslog over TCP (RFC 6587)
    max_message: int = 65536  # syslog: longer messages are failures (first bytes kept)
    tls: Tls = msgspec.field(default_factory=Tls)  # syslog over TCP
    beats: BeatsInput = msgspec.field(default_factory=BeatsInput)  # type beats
    elasticsearch: EsInput = msgspec.field(default_factory=EsInput)  # type elasticsearch
    gelf: GelfInput = msgspec.field(default_factory=GelfInput)  # type gelf

    @property
    def udp(self) -> bool:
        """Flow export datagrams (decoder state per exporter)."""
        return self.type in UDP_TYPES

    @property
    def syslog(self) -> bool:
        return self.type in SYSLOG_TYPES

    @property
    def pushed(self) -> bool:
        """Received over HTTP (the sender waits for the answer)."""
        return self.type in HTTP_TYPES

    @property
    def shipped(self) -> bool:
        """A Beats transport: Lumberjack (beats) or Elasticsearch's _bulk (elasticsearch)."""
        return self.type in BEATS_TYPES

    @property
    def listen_port(self) -> int:
        return self.port if self.port is not None else DEFAULT_PORTS.get(self.type, 0)

    @property
    def tag_list(self) -> list[str]:
        return list(self.tags) if self.tags is not None else DEFAULT_TAGS.get(self.type, [])


class IndexSetConfig(_S):
    title: str = ""
    retention_days: int = 90


class StreamConfig(_S):
    name: str
    index_set: str = "default"
    inputs: list[str] = msgspec.field(default_factory=list)
    rule: str = ""


class Config(_S):
    data_dir: str = "./data"
    http: Http = msgspec.field(default_factory=Http)
    pipeline: Pipeline = msgspec.field(default_factory=Pipeline)
    enrich: Enrich = msgspec.field(default_factory=Enrich)
    index_sets: dict[str, IndexSetConfig] = msgspec.field(
        default_factory=lambda: {"default": IndexSetConfig(title="Default index set")})
    streams: list[StreamConfig] = msgspec.field(default_factory=list)
    inputs: dict[str, Input] = msgspec.field(default_factory=dict)
    source: str | None = None  # the file this came from (not a key of the file)


_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def load(path: str | os.PathLike[str] | None, data_dir: str | None = None) -> Config:
    """Read and validate a config file (None: defaults only); ``data_dir`` overrides."""
    raw: Any = {}
    if path is not None:
        p = Path(path)
        try:
            text = p.read_text()
        except OSError as e:
            raise ConfigError(f"{p}: cannot read: {e.strerror}") from None
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{p}: expected a mapping of settings at the top level")
    # mappings keyed by user-chosen names are converted one entry at a time so that an
    # error names the entry (msgspec alone would say "inputs[...]")
    named: dict[str, dict[str, Any]] = {}
    for key, kind in (("inputs", Input), ("index_sets", IndexSetConfig)):
        section = raw.pop(key, None) if isinstance(raw, dict) else None
        if section is None:
            continue
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: key {key}: expected a mapping of name: settings")
        named[key] = {}
        for name, body in section.items():
            try:
                named[key][str(name)] = msgspec.convert(body or {}, kind, strict=False)
            except msgspec.ValidationError as e:
                raise ConfigError(f"{path}: {_readable(str(e), f'{key}.{name}')}") from None
    try:
        cfg = msgspec.convert(raw, Config, strict=False)
    except msgspec.ValidationError as e:
        raise ConfigError(f"{path}: {_readable(str(e))}") from None
    for key, values in named.items():
        setattr(cfg, key, values)
    from netmeta.route import packetbeat  # the Packetbeat stream and index set, if absent

    packetbeat.add_defaults(cfg)
    cfg.source = str(path) if path is not None else None
    if data_dir is not None:
        cfg.data_dir = data_dir
    check(cfg)
    return cfg


def _readable(msg: str, prefix: str = "") -> str:
    # msgspec says "Expected `int`, got `str` - at `$.pipeline.workers`": key first
    m = re.match(r"(?s)(.*) - at `\$(.*)`$", msg)
    if m:
        key = (prefix + m.group(2)).lstrip(".")
        return f"key {key or '(top level)'}: {m.group(1)}"
    return f"key {prefix}: {msg}" if prefix else msg


def check(cfg: Config) -> None:
    """Semantic checks msgspec cannot do; raises ConfigError naming the key."""
    from netmeta.decode import custom_fields
    from netmeta.enrich.locality import Locality
    from netmeta.query.kql import KQLError
    from netmeta.query.sql import compile_where

    def fail(key: str, why: str) -> None:
        raise ConfigError(f"{cfg.source}: key {key}: {why}")

    if not 0 < cfg.http.port < 65536:
        fail("http.port", f"{cfg.http.port} is not a TCP port (1-65535)")
    pl = cfg.pipeline
    for key, value, lo in (("workers", pl.workers, 0), ("batch_size", pl.batch_size, 1),
                           ("queue_size", pl.queue_size, 1), ("read_size", pl.read_size, 4096),
                           ("max_line", pl.max_line, 256)):
        if value < lo:
            fail(f"pipeline.{key}", f"must be at least {lo}, got {value}")
    if pl.batch_timeout <= 0:
        fail("pipeline.batch_timeout", "must be a positive number of seconds")
    for key in ("city_db", "asn_db"):
        path = getattr(cfg.enrich.geoip, key)
        if path and not Path(path).is_file():
            fail(f"enrich.geoip.{key}", f"no such file: {path}")
    if not 0 <= cfg.enrich.community_id.seed < 65536:
        fail("enrich.community_id.seed", "must be 0-65535")
    try:
        Locality(cfg.enrich.internal_networks)
    except ValueError as e:
        fail("enrich.internal_networks", str(e))
    for name, s in cfg.index_sets.items():
        if not _NAME.match(name):
            fail(f"index_sets.{name}", "names are lowercase letters, digits and _")
        if s.retention_days < 1:
            fail(f"index_sets.{name}.retention_days", "must be at least 1 day")
    sets = set(cfg.index_sets) | {"default"}
    for name, inp in cfg.inputs.items():
        if not _NAME.match(name):
            fail(f"inputs.{name}", "input names are lowercase letters, digits and _")
        if inp.index_set not in sets:
            fail(f"inputs.{name}.index_set", f"no index set {inp.index_set!r} "
                 f"(defined: {', '.join(sorted(sets))})")
        if inp.syslog:
            _check_tls(inp.tls, f"inputs.{name}.tls", fail)
            if inp.tls.cert and inp.protocol != "tcp":
                fail(f"inputs.{name}.tls", "TLS needs protocol: tcp")
            if not 512 <= inp.max_message <= 1 << 24:
                fail(f"inputs.{name}.max_message", "must be 512 bytes to 16 MiB")
        if (inp.udp or inp.pushed or inp.syslog) and not 0 < inp.listen_port < 65536:
            fail(f"inputs.{name}.port", f"{inp.port} is not a port (1-65535)")
        if inp.pushed:
            h = inp.http
            if not h.path.startswith("/"):
                fail(f"inputs.{name}.http.path", "must start with /")
            if bool(h.secret.header) != bool(h.secret.value):
                fail(f"inputs.{name}.http.secret", "give both header and value")
            if bool(h.hmac.header) != bool(h.hmac.key):
                fail(f"inputs.{name}.http.hmac", "give both header and key")
            _check_tls(h.tls, f"inputs.{name}.http.tls", fail)
            for k in ("max_body", "max_decompressed", "max_entries"):
                if getattr(h, k) < 1:
                    fail(f"inputs.{name}.http.{k}", "must be at least 1")
        if inp.udp and inp.rcvbuf < 65536:
            fail(f"inputs.{name}.rcvbuf", "must be at least 65536 bytes")
        if inp.shipped:
            _check_beats(inp, f"inputs.{name}", fail)
        if inp.type == "gelf":
            _check_gelf(inp, f"inputs.{name}", fail)
        elif inp.protocol == "http":
            fail(f"inputs.{name}.protocol", "http is for GELF inputs; syslog takes udp or tcp")
        for exporter, rate in inp.sampling.rates.items():
            try:
                ipaddress.ip_address(exporter)
            except ValueError:
                fail(f"inputs.{name}.sampling.rates.{exporter}", "not an IP address")
            if rate < 1:
                fail(f"inputs.{name}.sampling.rates.{exporter}", "a rate is at least 1")
        for j, path in enumerate(inp.custom_definitions):
            try:
                custom_fields.load(path)
            except ValueError as e:
                fail(f"inputs.{name}.custom_definitions[{j}]", str(e))
        if inp.enabled and inp.type == "goflow2" and not inp.paths:
            fail(f"inputs.{name}.paths", "give at least one file or glob")
        if inp.poll_interval <= 0:
            fail(f"inputs.{name}.poll_interval", "must be a positive number of seconds")
    seen: set[str] = set()
    for i, s in enumerate(cfg.streams):
        if s.name in seen or s.name in cfg.inputs:
            fail(f"streams[{i}].name", f"stream {s.name!r} is defined twice (each input "
                 "already has a default stream of its own name)")
        seen.add(s.name)
        if s.index_set not in sets:
            fail(f"streams[{i}].index_set", f"no index set {s.index_set!r}")
        for j, inp_name in enumerate(s.inputs):
            if inp_name not in cfg.inputs:
                fail(f"streams[{i}].inputs[{j}]", f"no input {inp_name!r}")
        try:
            compile_where(s.rule)
        except KQLError as e:
            fail(f"streams[{i}].rule", f"invalid KQL: {e}")


def _check_beats(inp: Input, key: str, fail: Callable[[str, str], None]) -> None:
    if not 0 < inp.listen_port < 65536:
        fail(f"{key}.port", f"{inp.port} is not a port (1-65535)")
    section = "beats" if inp.type == "beats" else "elasticsearch"
    conf = inp.beats if inp.type == "beats" else inp.elasticsearch
    tls = conf.tls
    _check_tls(tls, f"{key}.{section}.tls", fail)
    if tls.client_auth != "none" and not tls.cert:
        fail(f"{key}.{section}.tls.client_auth", "client certificates need TLS (cert and key)")
    if tls.client_auth != "none" and not tls.ca:
        fail(f"{key}.{section}.tls.ca", "client_auth needs the CA file the client "
             "certificates are checked against")
    if tls.ca and not Path(tls.ca).is_file():
        fail(f"{key}.{section}.tls.ca", f"no such file: {tls.ca}")
    for k in ("max_payload", "max_decompressed", "max_batch", "max_connections", "max_body"):
        if hasattr(conf, k) and getattr(conf, k) < 1:
            fail(f"{key}.{section}.{k}", "must be at least 1")
    if isinstance(conf, BeatsInput):
        if conf.keepalive <= 0:
            fail(f"{key}.beats.keepalive", "must be a positive number of seconds")
        if conf.idle_timeout < 0:
            fail(f"{key}.beats.idle_timeout", "must be 0 (never) or a number of seconds")
        if conf.resend_window < 0:
            fail(f"{key}.beats.resend_window", "must be 0 or a number of seconds")
    else:
        if not re.fullmatch(r"\d+\.\d+\.\d+", conf.version):
            fail(f"{key}.elasticsearch.version", f"{conf.version!r} is not a version "
                 "such as 8.19.0")
        if bool(conf.username) != bool(conf.password):
            fail(f"{key}.elasticsearch", "give both username and password")
        for i, k in enumerate(conf.api_keys):
            if ":" not in k:
                fail(f"{key}.elasticsearch.api_keys[{i}]", "an API key is id:key (as Beats' "
                     "output.elasticsearch.api_key)")


def _check_gelf(inp: Input, key: str, fail: Callable[[str, str], None]) -> None:
    if not 0 < inp.listen_port < 65536:
        fail(f"{key}.port", f"{inp.port} is not a port (1-65535)")
    g = inp.gelf
    if g.chunk_timeout <= 0:
        fail(f"{key}.gelf.chunk_timeout", "must be a positive number of seconds")
    for k in ("max_message", "max_pending_per_sender", "max_pending"):
        if getattr(g, k) < 1024:
            fail(f"{key}.gelf.{k}", "must be at least 1024 bytes")
    if not g.path.startswith("/"):
        fail(f"{key}.gelf.path", f"{g.path!r} must start with /")
    _check_tls(inp.tls, f"{key}.tls", fail)
    if inp.tls.cert and inp.protocol == "udp":
        fail(f"{key}.tls", "TLS needs protocol: tcp or http")


def _check_tls(tls: Tls, key: str, fail: Callable[[str, str], None]) -> None:
    if bool(tls.cert) != bool(tls.key):
        fail(key, "give both cert and key")
    for k in ("cert", "key"):
        path = getattr(tls, k)
        if path and not Path(path).is_file():
            fail(f"{key}.{k}", f"no such file: {path}")
