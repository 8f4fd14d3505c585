"""Where profile's re-encryption after a key rotation stands, or start its walk again.

python -m tools.pii_rotation status     the pass in progress or last finished, as JSON
python -m tools.pii_rotation restart    forget it: the next job run walks every record again

Reads ``HUITOU_MONGO_URI`` and ``HUITOU_PROFILE_DATABASE`` (the profile service's settings).
The re-encryption itself is the profile service's job ``reencrypt_pii`` (docs/profile.md,
"Key rotation"); ``restart`` is for a walk begun while instances still ran the old active
key id and finished before they were restarted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence

from services.profile.rotation import RotationCursor
from services.profile.settings import ProfileSettings
from shared.settings import load_settings
from shared.storage import Storage, mongo_client, service_database


async def rotation_status(settings: ProfileSettings) -> dict[str, object] | None:
    """The stored pass (key id, position, counts, done time), or None before any rotation."""
    client = mongo_client(settings.mongo_uri, app_name="huitou-tools")
    try:
        cursor = RotationCursor(Storage(service_database(client, settings.database)))
        state = await cursor.load()
        if state is None:
            return None
        shown: dict[str, object] = {**state.to_document(), "done": state.done}
        shown["pending"] = len(state.pending)
        return shown
    finally:
        await client.close()


async def restart_rotation(settings: ProfileSettings) -> None:
    """Forget the stored pass, so the job starts a fresh walk for the active key."""
    client = mongo_client(settings.mongo_uri, app_name="huitou-tools")
    try:
        await RotationCursor(Storage(service_database(client, settings.database))).restart()
    finally:
        await client.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m tools.pii_rotation", description=__doc__)
    parser.add_argument("command", choices=["status", "restart"])
    args = parser.parse_args(argv)
    settings = load_settings(ProfileSettings)
    if args.command == "restart":
        asyncio.run(restart_rotation(settings))
        print("restarted: the next run of reencrypt_pii walks every record again")
        return
    status = asyncio.run(rotation_status(settings))
    print(json.dumps(status, default=str, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
