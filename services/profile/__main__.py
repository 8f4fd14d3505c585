"""python -m services.profile: run the profile service."""

from __future__ import annotations

from services.profile.app import build_app
from services.profile.settings import ProfileSettings
from shared.entrypoint import serve


def main() -> None:
    """Validate settings and policy, serve HTTP and consume until stopped."""
    serve(ProfileSettings, build_app)


if __name__ == "__main__":
    main()
