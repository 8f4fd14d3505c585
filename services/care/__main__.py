"""python -m services.care: run the care service."""

from __future__ import annotations

from services.care.app import build_app
from services.care.settings import CareSettings
from shared.entrypoint import serve


def main() -> None:
    """Validate settings and policy, serve HTTP and consume until stopped."""
    serve(CareSettings, build_app)


if __name__ == "__main__":
    main()
