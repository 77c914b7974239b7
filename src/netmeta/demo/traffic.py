"""A synthetic day of an office network: who talks to whom, with what application.

Sessions are drawn once (seeded, so every demo is the same day) and then told by several
sources, as on a real network where a flow exporter, a Gigamon probe and Packetbeat see the
same connection: the same 5-tuple, hence the same network.community_id, in each.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

# Public servers inside the ranges of MaxMind's test databases, so GeoIP/ASN enrichment
# (with those databases) puts them on the map: GB, SE, US, CN, BT, PH, AU.
SERVERS = {
    "https": ["81.2.69.142", "89.160.20.115", "216.160.83.58", "175.16.199.5", "1.128.0.12"],
    "http": ["81.2.69.143", "216.160.83.60", "202.196.224.9", "67.43.156.7"],
    "dns": ["89.160.20.113", "216.160.83.57"],
    "ssh": ["89.160.20.120"],
    "ntp": ["81.2.69.160", "216.160.83.61"],
    "smtp": ["89.160.20.121"],
    "zoom": ["216.160.83.62", "175.16.199.9"],
    "office365": ["81.2.69.144", "1.128.0.20"],
}
APPS = [  # name, transport, port, weight, typical bytes
    ("https", 6, 443, 40, 180_000), ("http", 6, 80, 12, 40_000), ("dns", 17, 53, 25, 300),
    ("ssh", 6, 22, 3, 90_000), ("ntp", 17, 123, 4, 180), ("smtp", 6, 25, 2, 25_000),
    ("zoom", 17, 8801, 6, 2_500_000), ("office365", 6, 443, 8, 350_000),
]
HOSTS = ["www.example.com", "api.example.net", "cdn.example.org", "login.example.com",
         "files.example.net", "news.example.org", "shop.example.com"]
PATHS = ["/", "/index.html", "/api/v1/items", "/api/v1/login", "/static/app.js",
         "/images/logo.png", "/search", "/download/report.pdf", "/health"]
METHODS = [("GET", 70), ("POST", 20), ("PUT", 5), ("DELETE", 2), ("HEAD", 3)]
STATUS = [(200, 80), (304, 6), (404, 7), (301, 3), (500, 2), (503, 1), (401, 1)]
AGENTS = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) Firefox/128.0",
          "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
          "curl/8.5.0", "python-requests/2.32.3", "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0"]
NAMES = ["www.example.com", "mail.example.net", "updates.example.org", "time.example.com",
         "nosuchhost.example.com", "cdn.example.org", "api.example.net", "typo.exmaple.com"]
QTYPES = [("A", 1, 60), ("AAAA", 28, 25), ("MX", 15, 5), ("TXT", 16, 5), ("PTR", 12, 5)]
CIPHERS = [("TLS_AES_128_GCM_SHA256", "1.3", 4865, 772),
           ("TLS_AES_256_GCM_SHA384", "1.3", 4866, 772),
           ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "1.2", 49199, 771),
           ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "1.2", 49200, 771)]
JA3 = ["e7d705a3286e19ea42f587b344ee6865", "6734f37431670b3ab4292b8f60f29984",
       "b32309a26951912be7dba376398abc3b"]
JA3S = ["f4febc55ea12b31ae17cfb7e614afda8", "eb1d94daa7e0344597e756a1fb6e7054"]
SUBNETS = {"netflow_v5": "10.1.0", "netflow_v9": "10.2.0", "ipfix": "10.3.0",
           "sflow": "10.4.0", "goflow2": "10.5.0"}


@dataclass(slots=True)
class Session:
    start: float
    end: float
    app: str
    proto: int
    client: str
    server: str
    sport: int
    dport: int
    out_bytes: int  # client → server
    in_bytes: int
    out_packets: int
    in_packets: int
    site: str  # which flow exporter sees it (SUBNETS key)
    detail: dict[str, object]


def _pick(rng: random.Random, weighted: list[tuple]) -> tuple:
    return rng.choices(weighted, weights=[w[-1] for w in weighted])[0]


def _diurnal(rng: random.Random, day_start: float) -> float:
    """A time of the day, busier in office hours (09-18 UTC)."""
    while True:
        t = rng.random() * (86400 - 300)  # every session over (and exported) by now
        hour = t / 3600
        if rng.random() < 0.25 + 0.75 * max(0.0, math.sin((hour - 7) / 12 * math.pi)):
            return day_start + t


def sessions(n: int, day_start: float, seed: int = 7) -> list[Session]:
    rng = random.Random(seed)
    out = []
    sites = list(SUBNETS)
    for _ in range(n):
        app, proto, port, _, size = rng.choices(APPS, weights=[a[3] for a in APPS])[0]
        start = _diurnal(rng, day_start)
        total = max(60, int(rng.lognormvariate(math.log(size), 1.0)))
        down = 0.15 if app in ("https", "http", "office365", "zoom") else 0.5
        out_bytes = max(40, int(total * down))
        in_bytes = max(40, total - out_bytes)
        duration = 0.01 if proto == 17 and app != "zoom" else rng.uniform(0.05, 120)
        site = rng.choice(sites)
        client = f"{SUBNETS[site]}.{rng.randint(10, 60)}"
        detail: dict[str, object] = {}
        if app == "http":
            detail = {"host": rng.choice(HOSTS), "path": rng.choice(PATHS),
                      "method": _pick(rng, METHODS)[0], "status": _pick(rng, STATUS)[0],
                      "agent": rng.choice(AGENTS), "rtt": rng.lognormvariate(-3, 1.2)}
        elif app == "dns":
            name = rng.choice(NAMES)
            qtype = _pick(rng, QTYPES)
            detail = {"name": name, "qtype": qtype[0], "qtype_id": qtype[1],
                      "rcode": "NXDOMAIN" if name.startswith(("nosuch", "typo")) else
                      ("SERVFAIL" if rng.random() < 0.02 else "NOERROR"),
                      "rtt": rng.lognormvariate(-4, 1.0)}
        elif app in ("https", "office365"):
            cipher = rng.choice(CIPHERS)
            host = rng.choice(HOSTS)
            detail = {"sni": host, "cipher": cipher[0], "version": cipher[1],
                      "cipher_id": cipher[2], "version_id": cipher[3],
                      "ja3": rng.choice(JA3), "ja3s": rng.choice(JA3S),
                      "expires_days": rng.choice([5, 12, 25, 60, 200, 365])
                      + len(host) % 7}
        out.append(Session(start, start + duration, app, proto, client,
                           rng.choice(SERVERS[app]), rng.randint(32768, 60999), port,
                           out_bytes, in_bytes, max(1, out_bytes // 900),
                           max(1, in_bytes // 1200), site, detail))
    out.sort(key=lambda s: s.start)
    return out


def event_id(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:18]
