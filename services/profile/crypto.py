"""Encryption of personal fields at rest (AES-256-GCM) and the keyed blind index of phones."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class UnreadableCiphertext(Exception):
    """A stored ciphertext cannot be decrypted: unknown key id, or tampered/misplaced data."""


class PiiVault:
    """Encrypts personal fields bound to their customer and field; decrypts with any ring key.

    Each ciphertext records the id of the key that wrote it, so keys rotate: add a new key,
    make it active, and old ciphertexts stay readable until re-encrypted.
    """

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str, blind_index_key: bytes):
        if active_key_id not in keys:
            raise ValueError(f"active key {active_key_id!r} is not in the key ring")
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self._active = active_key_id
        self._blind_key = blind_index_key

    @property
    def active_key_id(self) -> str:
        """The key new ciphertexts are written with."""
        return self._active

    def encrypt(self, customer_id: str, field: str, plaintext: str) -> dict[str, Any]:
        """A stored form of one field: key id, nonce, ciphertext (with its tag)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._active].encrypt(
            nonce, plaintext.encode("utf-8"), _associated_data(customer_id, field)
        )
        return {"k": self._active, "n": nonce, "c": sealed}

    def decrypt(self, customer_id: str, field: str, stored: Mapping[str, Any]) -> str:
        """The plaintext of a stored field; refuses data moved to another customer or field."""
        cipher = self._ciphers.get(str(stored.get("k")))
        if cipher is None:
            raise UnreadableCiphertext(f"{field}: key {stored.get('k')!r} is not in the key ring")
        try:
            plain = cipher.decrypt(
                bytes(stored["n"]), bytes(stored["c"]), _associated_data(customer_id, field)
            )
        except (InvalidTag, KeyError, TypeError):
            raise UnreadableCiphertext(f"{field}: ciphertext fails authentication") from None
        return plain.decode("utf-8")

    def blind_index(self, e164_phone: str) -> str:
        """The lookup key of a phone: HMAC-SHA256 of its E.164 form with a separate key."""
        return hmac.new(self._blind_key, e164_phone.encode("ascii"), hashlib.sha256).hexdigest()


def _associated_data(customer_id: str, field: str) -> bytes:
    # The unit separator cannot appear in either part, so (a, b) never collides with (a', b').
    return f"{customer_id}\x1f{field}".encode()
