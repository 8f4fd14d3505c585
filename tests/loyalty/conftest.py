"""Loyalty test fixtures: drop each test's database afterwards (the shared server keeps files)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from shared.storage import mongo_client
from tests.conftest import MONGO_URI


@pytest.fixture(autouse=True)
async def drop_database_afterwards(
    request: pytest.FixtureRequest, database_name: str
) -> AsyncIterator[None]:
    """After an integration test, drop the database it used."""
    yield
    if request.node.get_closest_marker("integration") is None:
        return
    client = mongo_client(MONGO_URI, app_name="huitou-tests-cleanup")
    try:
        await client.drop_database(database_name)
    finally:
        await client.close()
