"""python -m services.care: run the care service."""

from __future__ import annotations

import uvicorn

from services.care.app import build_app
from services.care.settings import CareSettings
from shared.logging import configure_logging
from shared.settings import load_settings


def main() -> None:
    """Validate settings, policy and templates, serve HTTP, consume and dispatch until stopped."""
    settings = load_settings(CareSettings)
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
