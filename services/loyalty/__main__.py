"""python -m services.loyalty: run the loyalty service."""

from __future__ import annotations

import uvicorn

from services.loyalty.app import build_app
from services.loyalty.settings import LoyaltySettings
from shared.logging import configure_logging
from shared.settings import load_settings


def main() -> None:
    """Validate settings, configure logging, serve HTTP and consume until stopped."""
    settings = load_settings(LoyaltySettings)
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
