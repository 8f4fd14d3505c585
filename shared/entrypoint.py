"""What every service's `python -m services.<name>` does."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import uvicorn
from fastapi import FastAPI

from shared.logging import configure_logging
from shared.settings import ServiceSettings, load_settings

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)


def serve(settings_class: type[SettingsT], build_app: Callable[[SettingsT], FastAPI]) -> None:
    """Validate settings, configure logging, serve HTTP and consume until stopped."""
    settings = load_settings(settings_class)
    configure_logging(settings.log_format, settings.log_level)
    uvicorn.run(
        build_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_config=None,
        access_log=False,
    )
