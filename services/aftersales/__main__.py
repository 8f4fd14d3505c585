"""python -m services.aftersales: run the aftersales service."""

from __future__ import annotations

from services.aftersales.app import build_app
from services.aftersales.settings import AftersalesSettings
from shared.entrypoint import serve


def main() -> None:
    """Validate settings and policy, serve HTTP and consume until stopped."""
    serve(AftersalesSettings, build_app)


if __name__ == "__main__":
    main()
