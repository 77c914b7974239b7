"""What exporters tell about themselves in options data, applied to their flows.

NetFlow v9 and IPFIX exporters send options records: the sampling interval and algorithm
(per exporter, per sampler or per interface) and interface names. They are kept per
exporter address here and used when flows are normalized:

- ``observer.ingress.interface.name`` / ``observer.egress.interface.name`` from the names an
  exporter gave its interfaces (options scope ``ingress_interface`` or v9 scope
  ``Interface``, value ``interface_name`` / ``interface_description``);
- the sampling rate: a rate configured for the exporter (``inputs.<name>.sampling.rates``)
  wins, then the record's own ``sampling_interval`` / ``sampler_random_interval``, then
  what options data said, then the v5 header's interval. With ``sampling.renormalize`` on,
  ``network.bytes`` and ``network.packets`` are multiplied by it (Elastic's netflow input
  leaves them as sent, which is why it is off by default for NetFlow/IPFIX).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from netmeta.decode.templates import Batch, Decoded
from netmeta.event import exporter_ip

_RATE_FIELDS = ("sampling_interval", "sampler_random_interval", "sampling_packet_interval",
                "flow_sampler_random_interval")
_INTERFACE_SCOPES = ("scope_interface", "ingress_interface", "egress_interface",
                     "interface")
_NAME_FIELDS = ("interface_name", "interface_description")
V5_INTERVAL_MASK = 0x3FFF  # v5 header: 2 bits of mode, 14 bits of interval
MAX_EXPORTERS = 65536  # sampling rates kept (spoofed sources cannot grow it unbounded)
MAX_INTERFACES = 65536  # names kept in all (an exporter's options cannot grow it unbounded)


class Exporters:
    def __init__(self, rates: dict[str, int] | None = None) -> None:
        self.configured = dict(rates or {})
        self.sampling: dict[str, int] = {}  # exporter address → rate from options data
        self.interfaces: dict[tuple[str, int], str] = {}

    def learn(self, decoded: Decoded) -> int:
        """Take what the options records of a decoded batch say; returns how many facts."""
        learned = 0
        for b in decoded.options:
            ips = [exporter_ip(a) for a in b.header_values("exporter").tolist()]
            cols = {k: b.records.column(k).to_pylist() for k in b.records.column_names}
            rate = next((cols[k] for k in _RATE_FIELDS if k in cols), None)
            if rate is not None:
                for ip, r in zip(ips, rate, strict=True):
                    if r and (len(self.sampling) < MAX_EXPORTERS or ip in self.sampling):
                        self.sampling[ip] = int(r)
                        learned += 1
            scope = next((cols[k] for k in _INTERFACE_SCOPES if k in cols), None)
            name = next((cols[k] for k in _NAME_FIELDS if k in cols), None)
            if scope is not None and name is not None:
                for ip, index, text in zip(ips, scope, name, strict=True):
                    if index is not None and text and (
                            len(self.interfaces) < MAX_INTERFACES
                            or (ip, int(index)) in self.interfaces):
                        self.interfaces[(ip, int(index))] = str(text)
                        learned += 1
        return learned

    def rates(self, b: Batch) -> pa.Array | None:
        """Sampling rate per record of a data batch (null where none is known)."""
        ips = [exporter_ip(h.exporter) for h in b.headers]
        per_header: list[int | None] = []
        for ip, h in zip(ips, b.headers, strict=True):
            v5 = (h.sampling_interval or 0) & V5_INTERVAL_MASK if h.version == 5 else 0
            per_header.append(self.sampling.get(ip) or v5 or None)
        base = pa.array(per_header, pa.int64()).take(pa.array(b.rows))
        names = b.records.column_names
        own = next((b.records.column(k) for k in _RATE_FIELDS if k in names), None)
        if own is not None:
            own = pc.if_else(pc.greater(pc.cast(own, pa.int64()), 0),
                             pc.cast(own, pa.int64()), pa.scalar(None, pa.int64()))
            base = pc.coalesce(own.combine_chunks(), base)
        if self.configured:
            conf = pa.array([self.configured.get(ip) for ip in ips], pa.int64())
            base = pc.coalesce(conf.take(pa.array(b.rows)), base)
        return None if base.null_count == len(base) else base

    def interface_names(self, b: Batch, column: str) -> pa.Array | None:
        if not self.interfaces or column not in b.records.column_names:
            return None
        ips = np.array([exporter_ip(h.exporter) for h in b.headers], object)[b.rows]
        index = b.records.column(column).to_pylist()
        names: list[Any] = [self.interfaces.get((ip, i)) if i is not None else None
                            for ip, i in zip(ips.tolist(), index, strict=True)]
        out = pa.array(names, pa.string())
        return None if out.null_count == len(out) else out
