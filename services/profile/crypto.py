"""Encryption of personal fields at rest (``shared.crypto``) and the keyed blind index of phones."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping

from shared.crypto import NONCE_BYTES, FieldVault, UnreadableCiphertext

__all__ = ["NONCE_BYTES", "PiiVault", "UnreadableCiphertext"]


class PiiVault(FieldVault):
    """Encrypts personal fields bound to their customer and field; decrypts with any ring key.

    Each ciphertext records the id of the key that wrote it, so keys rotate: add a new key,
    make it active, and old ciphertexts stay readable until re-encrypted.
    """

    def __init__(self, keys: Mapping[str, bytes], active_key_id: str, blind_index_key: bytes):
        super().__init__(keys, active_key_id)
        self._blind_key = blind_index_key

    def blind_index(self, e164_phone: str) -> str:
        """The lookup key of a phone: HMAC-SHA256 of its E.164 form with a separate key."""
        return hmac.new(self._blind_key, e164_phone.encode("ascii"), hashlib.sha256).hexdigest()
