"""Fixtures shared by all tests.

Integration tests talk to the real Kafka broker and MongoDB-protocol server
that `./huitou test` starts (addresses from HUITOU_KAFKA_BOOTSTRAP and
HUITOU_MONGO_URI). Each test gets its own topic prefix and database, so tests
never see each other's data.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator

import pytest
from pymongo import AsyncMongoClient

from shared.storage import Document, mongo_client

KAFKA_BOOTSTRAP = os.environ.get("HUITOU_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
MONGO_URI = os.environ.get("HUITOU_MONGO_URI", "mongodb://127.0.0.1:27017")


def _reachable(host_port: str) -> bool:
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def infra() -> dict[str, str]:
    """Addresses of the real broker and database; fails (never skips) when they are down."""
    mongo_host = MONGO_URI.removeprefix("mongodb://").split("/")[0]
    missing = [a for a in (KAFKA_BOOTSTRAP, mongo_host) if not _reachable(a)]
    if missing:
        pytest.fail(
            f"integration infrastructure not reachable at {', '.join(missing)}: "
            "run the suite with ./huitou test (it starts Kafka and FerretDB)",
            pytrace=False,
        )
    return {"kafka": KAFKA_BOOTSTRAP, "mongo": MONGO_URI}


@pytest.fixture
def prefix() -> str:
    """A topic prefix (and consumer-group prefix) unique to one test."""
    return f"t{uuid.uuid4().hex[:10]}."


@pytest.fixture
async def database_name(infra: dict[str, str]) -> AsyncIterator[str]:
    """A database name unique to one test, dropped when the test ends."""
    name = f"test_{uuid.uuid4().hex[:12]}"
    yield name
    client = mongo_client(infra["mongo"], app_name="huitou-tests")
    try:
        await client.drop_database(name)
    finally:
        await client.close()


@pytest.fixture
async def mongo(infra: dict[str, str]) -> AsyncIterator[AsyncMongoClient[Document]]:
    """A client of the real MongoDB-protocol server."""
    client = mongo_client(infra["mongo"], app_name="huitou-tests")
    try:
        yield client
    finally:
        await client.close()
