"""Encryption of personal fields at rest (AES-256-GCM) with a key ring, for every service.

A ciphertext is bound to its owner (a customer, a ticket) and its field, and records
the id of the key that wrote it, so keys rotate: add a key, make it active, and old
ciphertexts stay readable until re-encrypted.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12
KEY_BYTES = 32

# Fixed, public keys so a laptop runs a service with no set-up. Published in this
# repository, so refused in production under any key id (production_problems).
PROFILE_DEVELOPMENT_KEY = b"huitou-local-dev-pii-key-32bytes"
AFTERSALES_DEVELOPMENT_KEY = b"huitou-local-dev-aftersales-key!"
PUBLISHED_DEVELOPMENT_KEYS = frozenset({PROFILE_DEVELOPMENT_KEY, AFTERSALES_DEVELOPMENT_KEY})


class UnreadableCiphertext(Exception):
    """A stored ciphertext cannot be decrypted: unknown key id, or tampered/misplaced data."""


class FieldVault:
    """Encrypts fields bound to their owner and field name; decrypts with any key of the ring."""

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str):
        if active_key_id not in keys:
            raise ValueError(f"active key {active_key_id!r} is not in the key ring")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._active = active_key_id

    @property
    def active_key_id(self) -> str:
        """The key new ciphertexts are written with."""
        return self._active

    def encrypt(self, owner: str, field: str, plaintext: str) -> dict[str, Any]:
        """A stored form of one field: key id, nonce, ciphertext (with its tag)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._active].encrypt(
            nonce, plaintext.encode("utf-8"), _associated_data(owner, field)
        )
        return {"k": self._active, "n": nonce, "c": sealed}

    def decrypt(self, owner: str, field: str, stored: Mapping[str, Any]) -> str:
        """The plaintext of a stored field; refuses data moved to another owner or field."""
        cipher = self._ciphers.get(str(stored.get("k")))
        if cipher is None:
            raise UnreadableCiphertext(f"{field}: key {stored.get('k')!r} is not in the key ring")
        try:
            plain = cipher.decrypt(
                bytes(stored["n"]), bytes(stored["c"]), _associated_data(owner, field)
            )
        except (InvalidTag, KeyError, TypeError):
            raise UnreadableCiphertext(f"{field}: ciphertext fails authentication") from None
        return plain.decode("utf-8")


def _associated_data(owner: str, field: str) -> bytes:
    # The unit separator cannot appear in either part, so (a, b) never collides with (a', b').
    return f"{owner}\x1f{field}".encode()


def development_key_ring(key_id: str, key: bytes) -> str:
    """A key ring setting holding one published development key."""
    return json.dumps({key_id: base64.b64encode(key).decode()})


def decode_key(name: str, value: str) -> bytes:
    """The bytes of a base64 key setting; raises ValueError naming the setting."""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} is not base64") from None


def parse_key_ring(value: str, name: str) -> dict[str, bytes]:
    """Parse a key ring: JSON {key_id: base64 32-byte key}; raises ValueError naming the problem."""
    try:
        raw = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(f"{name} is not JSON: {error.msg}") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{name} must be a non-empty JSON object {{key_id: base64 key}}")
    ring: dict[str, bytes] = {}
    for key_id, encoded in raw.items():
        if not isinstance(encoded, str) or not key_id:
            raise ValueError(f"{name} must map non-empty key ids to base64 strings")
        key = decode_key(f"{name}[{key_id}]", encoded)
        if len(key) != KEY_BYTES:
            raise ValueError(f"{name}[{key_id}] must decode to 32 bytes (AES-256)")
        ring[key_id] = key
    return ring


def published_keys_in(ring: Mapping[str, bytes]) -> list[str]:
    """The ids under which a key ring holds a published development key."""
    return sorted(key_id for key_id, key in ring.items() if key in PUBLISHED_DEVELOPMENT_KEYS)
