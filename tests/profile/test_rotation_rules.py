"""What re-encryption makes of one stored record (no database): fields, binding, the rest."""

from __future__ import annotations

import os
from datetime import UTC, datetime

import pytest

from services.profile.crypto import PiiVault, UnreadableCiphertext
from services.profile.rotation import RotationPass, resealed, stale_fields
from services.profile.store import CUSTOMER_KEYS
from shared.storage import Document, pack, unpack

pytestmark = pytest.mark.unit

KEY_A, KEY_B, BLIND = os.urandom(32), os.urandom(32), os.urandom(32)
AT = datetime(2026, 12, 1, tzinfo=UTC)


def record(vault: PiiVault, customer_id: str = "C1", **pii: str) -> Document:
    return pack(
        {
            "_id": customer_id,
            "version": 4,
            "write_id": "w-last",
            "status": "active",
            "phone_index": "idx",
            "pii": {name: vault.encrypt(customer_id, name, text) for name, text in pii.items()},
            "updated_at": AT,
            "outbox": ["{}"],
        },
        keep=CUSTOMER_KEYS,
    )


def test_stale_fields_are_those_on_another_key() -> None:
    pii = {"name": {"k": "A"}, "phone": {"k": "B"}, "email": {"k": "A"}}
    assert stale_fields(pii, "B") == ["email", "name"]
    assert stale_fields(pii, "C") == ["email", "name", "phone"]
    assert stale_fields({}, "B") == []


def test_a_record_on_the_old_key_is_resealed_bound_to_the_same_owner_and_field() -> None:
    old = PiiVault({"A": KEY_A}, "A", BLIND)
    new = PiiVault({"A": KEY_A, "B": KEY_B}, "B", BLIND)
    outcome = resealed(record(old, name="李雷", phone="+8613912345678"), new)
    assert outcome.write is not None and outcome.unreadable == ()
    assert (outcome.write.doc_id, outcome.write.read_version) == ("C1", 4)
    doc = unpack(outcome.write.document)
    assert doc["version"] == 5
    assert {v["k"] for v in doc["pii"].values()} == {"B"}
    only_b = PiiVault({"B": KEY_B}, "B", BLIND)
    assert only_b.decrypt("C1", "name", doc["pii"]["name"]) == "李雷"
    with pytest.raises(UnreadableCiphertext):
        only_b.decrypt("C2", "name", doc["pii"]["name"])
    with pytest.raises(UnreadableCiphertext):
        only_b.decrypt("C1", "phone", doc["pii"]["name"])
    # Nothing else changes: no new write id, update time, outbox or lookup key.
    assert (doc["write_id"], doc["updated_at"], doc["outbox"], doc["phone_index"]) == (
        "w-last",
        AT,
        ["{}"],
        "idx",
    )


def test_a_record_already_on_the_active_key_needs_no_write() -> None:
    new = PiiVault({"A": KEY_A, "B": KEY_B}, "B", BLIND)
    assert resealed(record(new, name="李雷"), new).write is None
    assert resealed(record(new), new).write is None  # erased: no personal fields


def test_a_field_no_key_reads_is_reported_and_the_others_are_resealed() -> None:
    gone = PiiVault({"Z": os.urandom(32)}, "Z", BLIND)
    new = PiiVault({"A": KEY_A, "B": KEY_B}, "B", BLIND)
    stored = record(PiiVault({"A": KEY_A}, "A", BLIND), name="李雷")
    whole = unpack(stored)
    whole["pii"]["phone"] = gone.encrypt("C1", "phone", "+8613912345678")
    outcome = resealed(pack(whole, keep=CUSTOMER_KEYS), new)
    assert outcome.unreadable == ("phone",)
    assert outcome.write is not None
    pii = unpack(outcome.write.document)["pii"]
    assert (pii["name"]["k"], pii["phone"]["k"]) == ("B", "Z")


def test_a_pass_survives_its_stored_form() -> None:
    state = RotationPass("B", AT, 450, after="C000199", scanned=200, pending=["C5"], passes=2)
    assert RotationPass.from_document(state.to_document()) == state
    assert not state.done
    assert state.next_pass(451, AT).passes == 3
