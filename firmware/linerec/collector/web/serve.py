"""`linerec collector web`: the console served by uvicorn, over TLS unless on loopback."""

from __future__ import annotations

import logging
from pathlib import Path

from linerec.collector.config import load_collector_config
from linerec.collector.review import load_scorecard
from linerec.collector.store import CollectorStore
from linerec.collector.web.app import build_app
from linerec.collector.web.service import ConsoleService
from linerec.collector.web.settings import load_web_settings

log = logging.getLogger(__name__)


def serve(config: Path) -> None:
    import uvicorn

    from linerec.logs import setup_logging

    settings = load_collector_config(config)
    web = load_web_settings(config)
    service = ConsoleService(
        CollectorStore(settings.data_dir, settings.database),
        settings.key,
        idle_seconds=web.idle_timeout_min * 60,
        scorecard=load_scorecard(config),
        retention_days=settings.retention_days,
    )
    setup_logging()
    scheme = "https" if web.tls else "http"
    log.info("console at %s://%s:%d/", scheme, web.host, web.port)
    uvicorn.run(
        build_app(service, tls=web.tls),
        host=web.host,
        port=web.port,
        ssl_certfile=str(web.cert) if web.cert else None,
        ssl_keyfile=str(web.key) if web.key else None,
        server_header=False,
        proxy_headers=False,
        log_level="info",
    )
