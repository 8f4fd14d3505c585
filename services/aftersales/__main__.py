"""python -m services.aftersales: run the aftersales service."""

from __future__ import annotations

import uvicorn

from services.aftersales.app import build_app
from services.aftersales.settings import AftersalesSettings
from shared.logging import configure_logging
from shared.settings import load_settings


def main() -> None:
    """Validate settings, configure logging, serve HTTP and consume until stopped."""
    settings = load_settings(AftersalesSettings)
    configure_logging(settings.log_format, settings.log_level)
    uvicorn.run(
        build_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
    )


if __name__ == "__main__":
    main()
