"""Key rotation of personal fields: what a record still on an older key becomes, and progress.

The key id of each ciphertext lives in the packed part of a record (``pii.<field>.k``),
which no query can filter on, so the job (``jobs.reencrypt_pii``) walks every record in
``_id`` order once per pass and rewrites those holding a field on another key than the
active one. Its position is kept in ``key_rotation/customers.pii``, so a restart resumes
there. A pass that rewrote anything is followed by one more: rotation is done when a whole
pass found every field on the active key (a record an instance still on the old settings
wrote behind the first pass is caught by the next).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.profile.crypto import PiiVault, UnreadableCiphertext
from services.profile.store import CUSTOMER_KEYS
from shared.storage import Document, Storage, pack, unpack
from shared.versions import VersionedWrite

ROTATION = "key_rotation"
PII_ROTATION_ID = "customers.pii"


def stale_fields(pii: Mapping[str, Any], active_key_id: str) -> list[str]:
    """The encrypted fields of a record written with another key than the active one."""
    return sorted(
        name
        for name, stored in pii.items()
        if isinstance(stored, Mapping) and stored.get("k") != active_key_id
    )


@dataclass(frozen=True)
class Resealed:
    """A record's fields re-encrypted under the active key, and those no key could read."""

    write: VersionedWrite | None
    """The record at its next version, or None when no field needed (or allowed) a rewrite."""
    unreadable: tuple[str, ...] = ()


def resealed(stored: Document, vault: PiiVault) -> Resealed:
    """A stored record with every field on an older key re-encrypted under the active key.

    Each field keeps its owner and field binding; everything else in the record, its last
    write id and update time included, stays as it was: re-encryption changes no fact, so
    nothing is published and the intent of the write that last changed it still governs
    its outbox.
    """
    whole = unpack(stored)
    customer_id = str(whole["_id"])
    pii: dict[str, Any] = dict(whole.get("pii") or {})
    unreadable: list[str] = []
    changed = False
    for name in stale_fields(pii, vault.active_key_id):
        try:
            plain = vault.decrypt(customer_id, name, pii[name])
        except UnreadableCiphertext:
            unreadable.append(name)
            continue
        pii[name] = vault.encrypt(customer_id, name, plain)
        changed = True
    if not changed:
        return Resealed(None, tuple(unreadable))
    version = int(whole["version"])
    whole["pii"] = pii
    whole["version"] = version + 1
    return Resealed(
        VersionedWrite(customer_id, version, pack(whole, keep=CUSTOMER_KEYS)), tuple(unreadable)
    )


@dataclass
class RotationPass:
    """Where the re-encryption walk stands: the key it works for and how far it got."""

    key_id: str
    started_at: datetime
    total: int = 0
    """Records there were when the pass began (for the progress ratio only)."""
    after: str | None = None
    """The last record id the pass handled; the next page starts after it."""
    scanned: int = 0
    reencrypted: int = 0
    unreadable: int = 0
    pending: list[str] = field(default_factory=list)
    """Records whose rewrite lost to a concurrent write twice: tried again at the end."""
    passes: int = 1
    done_at: datetime | None = None

    @property
    def done(self) -> bool:
        """True when a whole pass found every readable field on the key."""
        return self.done_at is not None

    def next_pass(self, total: int, now: datetime) -> RotationPass:
        """A fresh walk from the first record, for the same key."""
        return RotationPass(self.key_id, now, total, passes=self.passes + 1)

    def to_document(self) -> Document:
        """The stored form (the id is the rotation's)."""
        return {
            "key_id": self.key_id,
            "started_at": self.started_at,
            "total": self.total,
            "after": self.after,
            "scanned": self.scanned,
            "reencrypted": self.reencrypted,
            "unreadable": self.unreadable,
            "pending": list(self.pending),
            "passes": self.passes,
            "done_at": self.done_at,
        }

    @classmethod
    def from_document(cls, doc: Mapping[str, Any]) -> RotationPass:
        """A pass read back from its document."""
        return cls(
            key_id=str(doc["key_id"]),
            started_at=doc["started_at"],
            total=int(doc.get("total", 0)),
            after=doc.get("after"),
            scanned=int(doc.get("scanned", 0)),
            reencrypted=int(doc.get("reencrypted", 0)),
            unreadable=int(doc.get("unreadable", 0)),
            pending=list(doc.get("pending") or []),
            passes=int(doc.get("passes", 1)),
            done_at=doc.get("done_at"),
        )


class RotationCursor:
    """The walk's position, one small document in profile's own database."""

    def __init__(self, storage: Storage, rotation_id: str = PII_ROTATION_ID) -> None:
        self._collection = storage[ROTATION]
        self._id = rotation_id

    async def load(self) -> RotationPass | None:
        """The pass in progress or last finished, or None before the first rotation."""
        doc = await self._collection.find_one({"_id": self._id})
        return RotationPass.from_document(doc) if doc else None

    async def save(self, state: RotationPass) -> None:
        """Store where the walk stands (only the lease holder writes it)."""
        await self._collection.update_one(
            {"_id": self._id}, {"$set": state.to_document()}, upsert=True
        )

    async def restart(self) -> None:
        """Forget the walk: the next run starts a fresh pass for the active key."""
        await self._collection.delete_one({"_id": self._id})


class RotationMetrics:
    """Progress of the re-encryption in /metrics: counts and the targeted key id only."""

    def __init__(self, service: str, registry: CollectorRegistry) -> None:
        self.service = service
        self.scanned = Counter(
            "huitou_pii_rotation_records_scanned",
            "Records the re-encryption walk read",
            ["service"],
            registry=registry,
        )
        self.reencrypted = Counter(
            "huitou_pii_rotation_records_reencrypted",
            "Records whose fields were re-encrypted under the active key",
            ["service"],
            registry=registry,
        )
        self.lost = Counter(
            "huitou_pii_rotation_rewrites_lost",
            "Re-encryptions that lost to a concurrent write of the record",
            ["service"],
            registry=registry,
        )
        labels = ["service", "key_id"]
        self.progress = Gauge(
            "huitou_pii_rotation_progress_ratio",
            "Share of the current pass's records walked (0 to 1)",
            labels,
            registry=registry,
        )
        self.done = Gauge(
            "huitou_pii_rotation_done",
            "1 when a whole pass found every field on the key",
            labels,
            registry=registry,
        )
        self.unreadable = Gauge(
            "huitou_pii_rotation_fields_unreadable",
            "Fields the current pass could not decrypt with any key of the ring",
            labels,
            registry=registry,
        )

    def report(self, state: RotationPass) -> None:
        """Show where the shared walk stands (every instance, lease holder or not)."""
        for gauge in (self.progress, self.done, self.unreadable):
            gauge.clear()  # one series: the key the walk works for now
        ratio = 1.0 if state.done else min(1.0, state.scanned / max(state.total, 1))
        self.progress.labels(self.service, state.key_id).set(ratio)
        self.done.labels(self.service, state.key_id).set(1 if state.done else 0)
        self.unreadable.labels(self.service, state.key_id).set(state.unreadable)
