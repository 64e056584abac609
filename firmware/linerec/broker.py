"""The broker's address as configured: `mqtts://host[:port]`, or `mqtt://` when allowed.

Apart from `linerec.mqttapi` so that reading a configuration file does not load the MQTT
library (the collector's and the appliance's config loaders only check the URL).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True, slots=True, kw_only=True)
class Broker:
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str, *, allow_plaintext: bool) -> Broker:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"must be mqtts://host[:port] or mqtt://host[:port] (got {url!r})")
        if parts.scheme == "mqtt" and not allow_plaintext:
            raise ValueError(
                f"{url!r} is not encrypted: use mqtts://, or set allow_plaintext = true"
            )
        tls = parts.scheme == "mqtts"
        return cls(host=parts.hostname, port=parts.port or (8883 if tls else 1883), tls=tls)
