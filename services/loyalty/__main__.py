"""python -m services.loyalty: run the loyalty service."""

from __future__ import annotations

from services.loyalty.app import build_app
from services.loyalty.settings import LoyaltySettings
from shared.entrypoint import serve


def main() -> None:
    """Validate settings and policy, serve HTTP and consume until stopped."""
    serve(LoyaltySettings, build_app)


if __name__ == "__main__":
    main()
