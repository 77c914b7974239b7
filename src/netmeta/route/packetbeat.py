"""The Packetbeat stream and index set, as Graylog's Illuminate Packetbeat pack installs
them: a stream "Packetbeat Messages" for the Packetbeat events of the inputs Packetbeat
ships to (Beats, Elasticsearch _bulk, GELF), stored in the index set "Packetbeat Logs"
(daily partitions, 90 days' retention). Both are added to the configuration when such an
input exists and the configuration does not name them itself; the store creates the index
set at first start and leaves an existing one alone. As the pack does, the events the
stream takes are removed from their input's default stream (no second copy in the
default index set).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from netmeta.config import Config

STREAM = "Packetbeat Messages"
INDEX_SET = "packetbeat_logs"
TITLE = "Packetbeat Logs"
RETENTION_DAYS = 90
RULE = "agent.type:packetbeat"  # what every Packetbeat event says, by any transport
INPUT_TYPES = ("beats", "elasticsearch", "gelf")


def add_defaults(cfg: Config) -> None:
    """The Packetbeat index set and stream, unless configured (in place)."""
    from netmeta.config import IndexSetConfig, StreamConfig

    inputs = [n for n, i in cfg.inputs.items() if i.type in INPUT_TYPES]
    if not inputs or any(s.name == STREAM for s in cfg.streams):
        return
    if INDEX_SET not in cfg.index_sets:
        cfg.index_sets[INDEX_SET] = IndexSetConfig(title=TITLE, retention_days=RETENTION_DAYS)
    cfg.streams.append(StreamConfig(name=STREAM, index_set=INDEX_SET, inputs=inputs,
                                    rule=RULE))


def default_stream_rule(cfg: Config, input_name: str) -> str | None:
    """The rule of an input's default stream: "" (everything), except the events the
    Packetbeat stream takes into another index set; None: the Packetbeat stream takes all
    (a configured one without a rule), the input has no default stream."""
    inp = cfg.inputs[input_name]
    if inp.type not in INPUT_TYPES:
        return ""
    for s in cfg.streams:
        if s.name == STREAM and s.index_set != inp.index_set and \
                (not s.inputs or input_name in s.inputs):
            return f"not ({s.rule})" if s.rule.strip() else None
    return ""
