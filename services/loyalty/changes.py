"""Account changes: each decided once by a unique claim, then written in one fixed order.

A group of changes (a batch, a job's pass, one redemption) is committed so:

1. the group is noted in ``pending_changes`` (filed under the minute after which
   it counts as left behind) and new accounts are inserted at version 0;
2. each change claims its account's next version by inserting
   ``<customer>:<version + 1>`` with everything the change writes; a unique key
   is the one thing every MongoDB-protocol server decides atomically, so the
   insert's winner alone owns that version;
3. for the winners: their events are published, then their facts inserted
   (ledger entries, orders, tier changes, due items) and their returns set on
   their orders, and last the accounts are set to the new version;
4. the note is deleted.

So an account at version *v* has every fact of every change up to *v* written,
which is what makes redelivery safe without keeping ids on the account: a
ledger entry, an order, a return on an order exists only once a won claim counted
it. Each fact carries the version of the change that wrote it: a reader that
finds a fact newer than the account it read (its writer died between the two)
rolls that change forward before deciding anything. A change that loses its
claim rolls the winner forward (step 3 from the claim, ``$set`` only: twice is
once) and is computed again from what is then stored. Events are published from
the claim before anything else is written, so a crash at any line re-publishes
the same ids and never loses one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from bson import json_util

from services.loyalty.account import LoyaltyAccount, stored_time
from services.loyalty.due import HOURS, MINUTES, ChainDays, due_document
from services.loyalty.figures import stats_bucket
from services.loyalty.outbox import OutboxRecord, RecordPublisher
from services.loyalty.policy import LoyaltyPolicy
from services.loyalty.store import (
    ACCOUNT_KEYS,
    ACCOUNTS,
    CLAIMS,
    EXPIRY_DUE,
    FOLDS,
    JOURNAL,
    LEDGER,
    ORDERS,
    TIER_CHANGES,
    TIER_DUE,
    LoyaltyStore,
)
from shared.clock import Clock
from shared.jobs import JobRun
from shared.messaging.tracing import current_carrier
from shared.schedule import DueCursor
from shared.storage import Document, Update, pack

LEFT_BEHIND_AFTER = timedelta(seconds=30)
"""A group still noted this long after it started was left behind by a crash."""
CLAIM_RETENTION = timedelta(hours=1)
"""Claims are kept this long: no writer holds a read of an account older than that."""


@dataclass
class Change:
    """Everything one change of one account writes, moving it from ``version`` to the next."""

    customer_id: str
    version: int
    fields: Document
    entries: list[Document] = field(default_factory=list)
    orders: list[Document] = field(default_factory=list)
    returns: list[tuple[str, Document]] = field(default_factory=list)
    tier_changes: list[Document] = field(default_factory=list)
    due: list[tuple[str, Document]] = field(default_factory=list)
    records: list[OutboxRecord] = field(default_factory=list)
    fresh: Document | None = None

    @property
    def claim_id(self) -> str:
        return f"{self.customer_id}:{self.version + 1}"

    def claim_document(self, claimed_at: datetime) -> Document:
        """The claim as inserted: who, which version, and the whole change (as extended JSON)."""
        body = {
            "set": self.fields,
            "entries": self.entries,
            "orders": self.orders,
            "returns": [[order_id, order_returns] for order_id, order_returns in self.returns],
            "tier_changes": self.tier_changes,
            "due": [[collection, doc] for collection, doc in self.due],
            "records": [r.to_document() for r in self.records],
        }
        claim = {
            "_id": self.claim_id,
            "customer_id": self.customer_id,
            "version": self.version + 1,
            "claimed_at": claimed_at,
            "prune_bucket": HOURS.key(claimed_at),
            "change": json_util.dumps(body),
        }
        if trace := current_carrier():
            claim["trace"] = trace  # a roll-forward's publishes continue the writing batch
        return claim

    @classmethod
    def from_claim(cls, claim: Document) -> Change:
        """The change a claim holds (to roll it forward)."""
        body = json_util.loads(claim["change"])
        trace = {str(k): str(v) for k, v in (claim.get("trace") or {}).items()}
        return cls(
            customer_id=claim["customer_id"],
            version=int(claim["version"]) - 1,
            fields=body["set"],
            entries=body["entries"],
            orders=body["orders"],
            returns=[(order_id, doc) for order_id, doc in body["returns"]],
            tier_changes=body["tier_changes"],
            due=[(collection, doc) for collection, doc in body["due"]],
            records=[
                dataclasses.replace(OutboxRecord.from_document(r), trace=trace)
                for r in body["records"]
            ],
        )


class _Inserting:
    """Claim ids this instance is inserting now, each with an event set once none is."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}
        self._done: dict[str, asyncio.Event] = {}

    def begin(self, claim_ids: Sequence[str]) -> None:
        for claim_id in claim_ids:
            self._counts[claim_id] = self._counts.get(claim_id, 0) + 1
            self._done.setdefault(claim_id, asyncio.Event())

    def end(self, claim_ids: Sequence[str]) -> None:
        for claim_id in claim_ids:
            self._counts[claim_id] -= 1
            if self._counts[claim_id] == 0:
                del self._counts[claim_id]
                self._done.pop(claim_id).set()

    def busy(self, claim_id: str) -> bool:
        """True while an insert of this claim by this instance is under way."""
        return claim_id in self._counts

    async def settled(self, claim_id: str) -> None:
        """Return once no insert of this claim by this instance is under way."""
        done = self._done.get(claim_id)
        if done is not None:
            await done.wait()


def claim_key(claim_id: str) -> tuple[str, int]:
    """The customer and version a claim id names."""
    customer_id, version = claim_id.rsplit(":", 1)
    return customer_id, int(version)


class AccountChanges:
    """Builds, commits and rolls forward account changes; finishes and prunes what is left."""

    def __init__(
        self,
        store: LoyaltyStore,
        publisher: RecordPublisher,
        policy: LoyaltyPolicy,
        *,
        wall: Clock,
    ) -> None:
        self._store = store
        self._storage = store.storage
        self.storage = store.storage
        self._publisher = publisher
        self._policy = policy
        self._wall = wall
        self.expiry_days = ChainDays(zone=policy.chain_time_zone)
        # Changes this instance is writing now (as their winner or rolling them forward): a
        # writer that meets one of their claims waits for it instead of writing (and
        # publishing) it a second time.
        self._writing: dict[str, asyncio.Event] = {}
        # Claims this instance is inserting now: until their insert returns, a writer that
        # lost one cannot tell yet whether this instance won it.
        self._claiming = _Inserting()
        self.left_behind = DueCursor(self._storage, "loyalty-left-behind", MINUTES)
        self.claims_pruned = DueCursor(self._storage, "loyalty-claims-pruned", HOURS)

    async def open(self) -> None:
        """Create the cursors of the sweeps (once per database), a bucket before now."""
        now = self._wall.now()
        await self.left_behind.open(now - MINUTES.width)
        await self.claims_pruned.open(now - HOURS.width)

    # Building ---------------------------------------------------------------------------------

    def change_of(self, account: LoyaltyAccount, now: datetime) -> Change | None:
        """What writing this account's in-memory state takes (None: nothing changed).

        Files the member for its next scheduled tier evaluation when that moves to
        another bucket, and every new lot under the chain day it expires.
        """
        customer_id = account.customer_id
        due_items: dict[str, tuple[str, Document]] = {}
        due = account.tier_due(self._policy)
        if due is None:
            account.tier_due_at, account.tier_due_bucket = None, None
        else:
            key = HOURS.key_for(due, now)
            if key != account.tier_due_bucket:
                next_version = account.version + 1
                doc = due_document(key, customer_id, next_version, f"v{next_version}")
                due_items[TIER_DUE + doc["_id"]] = (TIER_DUE, doc)
            account.tier_due_at, account.tier_due_bucket = stored_time(due), key
        for lot_id, expires_at in account.change.expiries:
            key = self.expiry_days.key_for(expires_at, now)
            doc = due_document(key, customer_id, account.version + 1, lot_id)
            due_items[EXPIRY_DUE + doc["_id"]] = (EXPIRY_DUE, doc)
        if not account.has_changed():
            return None
        recorded_at = stored_time(now)
        version = account.version + 1
        return Change(
            customer_id=customer_id,
            version=account.version,
            fields={**account.fields(), "updated_at": recorded_at},
            entries=[{**e.to_document(), "version": version} for e in account.change.entries],
            orders=[{**o, "version": version} for o in account.change.new_orders],
            returns=list(account.change.new_returns),
            tier_changes=account.tier_change_documents(recorded_at),
            due=list(due_items.values()),
            records=account.records(),
            fresh=None if account.stored else account.document_as_read(),
        )

    # Committing -------------------------------------------------------------------------------

    async def commit(self, changes: Sequence[Change]) -> set[str]:
        """Claim and write these changes (one per account); returns the customers whose won."""
        if not changes:
            return set()
        started = self._wall.now()
        due_at = started + LEFT_BEHIND_AFTER
        note = {
            "_id": uuid.uuid4().hex,
            "claims": [c.claim_id for c in changes],
            "due_at": due_at,
            "bucket": MINUTES.key_for(due_at, started),
        }
        fresh = [
            pack({**c.fresh, "opened_bucket": stats_bucket(started)}, keep=ACCOUNT_KEYS)
            for c in changes
            if c.fresh
        ]
        await asyncio.gather(
            self._storage.insert_once(JOURNAL, [note]),
            self._storage.insert_once(ACCOUNTS, fresh),
        )
        claimed = [c.claim_id for c in changes]
        self._claiming.begin(claimed)
        try:
            won = await self._storage.insert_once(
                CLAIMS, [c.claim_document(started) for c in changes]
            )
        finally:
            self._claiming.end(claimed)
        # No await from here to registering the winners: a loser woken by ``end`` runs only
        # after they are registered.
        winners = [changes[i] for i in sorted(won)]
        writing = {c.claim_id: asyncio.Event() for c in winners}
        self._writing.update(writing)
        try:
            await self.apply(winners)
        finally:
            for claim_id, done in writing.items():
                del self._writing[claim_id]
                done.set()
        await self._storage[JOURNAL].delete_one({"_id": note["_id"]})
        return {c.customer_id for c in winners}

    async def apply(self, changes: Sequence[Change]) -> None:
        """Write claimed changes: publish, then facts, then returns, then the accounts."""
        if not changes:
            return
        records = [r for c in changes for r in c.records]
        if records:
            await self._publisher.publish_records(records)
        bucket = stats_bucket(self._wall.now())
        inserts: dict[str, list[Document]] = {
            LEDGER: [{**e, "stats_bucket": bucket} for c in changes for e in c.entries],
            ORDERS: [o for c in changes for o in c.orders],
            TIER_CHANGES: [{**t, "stats_bucket": bucket} for c in changes for t in c.tier_changes],
        }
        for c in changes:
            for collection, doc in c.due:
                inserts.setdefault(collection, []).append(doc)
        await asyncio.gather(
            *(self._storage.insert_once(name, docs) for name, docs in inserts.items() if docs)
        )
        await self._storage.update_each(
            ORDERS,
            [
                Update({"_id": order_id}, {"$set": returned})
                for c in changes
                for order_id, returned in c.returns
            ],
        )
        await self._storage.update_each(
            ACCOUNTS,
            [
                Update(
                    {"_id": c.customer_id, "version": c.version},
                    {"$set": pack({**c.fields, "version": c.version + 1}, keep=ACCOUNT_KEYS)},
                )
                for c in changes
            ],
        )

    async def roll_forward(self, customer_id: str, version: int) -> int:
        """Finish every change claimed after ``version`` (their writers died or are slow).

        Returns the version the account is at afterwards.
        """
        while True:
            claim_id = f"{customer_id}:{version + 1}"
            await self._claiming.settled(claim_id)  # another writer here may have won it
            writing = self._writing.get(claim_id)
            if writing is not None:
                await writing.wait()
            # The caller's read of the account may be older than the account: a change
            # written since must not be written (and published) again.
            at = (await self._store.account_versions([customer_id])).get(customer_id, 0)
            if at > version:
                version = at
                continue
            claim = await self._storage[CLAIMS].find_one({"_id": claim_id})
            if claim is None:
                return version
            if claim_id in self._writing or self._claiming.busy(claim_id):
                continue  # its winner or another roll-forward here began meanwhile: wait
            done = self._writing[claim_id] = asyncio.Event()
            try:
                await self.apply([Change.from_claim(claim)])
            finally:
                del self._writing[claim_id]
                done.set()
            version += 1

    async def roll_forward_losers(self, changes: Sequence[Change], won: set[str]) -> list[Change]:
        """Roll forward the claims that beat these changes; returns the changes that lost."""
        lost = [c for c in changes if c.customer_id not in won]
        await self._storage.each_concurrently(
            lost, lambda c: self.roll_forward(c.customer_id, c.version)
        )
        return lost

    # Sweeps -----------------------------------------------------------------------------------

    async def finish_left_behind(self) -> JobRun:
        """Roll forward the claims of groups a crash left unfinished; forget their notes."""
        now = self._wall.now()
        run = JobRun()
        keys = await self.left_behind.keys_to_read(now)
        notes = await self._store.due_in(JOURNAL, keys)
        run.count(read=1 + len(notes))
        late = [n for n in notes if n["due_at"] <= now]
        run.count(due=len(late))
        claims = [claim_key(c) for n in late for c in n["claims"]]
        versions = await self._store.account_versions({cid for cid, _ in claims})
        run.count(read=len(versions))
        for customer_id, version in sorted(claims):
            at = versions.get(customer_id, 0)
            if at < version:
                versions[customer_id] = await self.roll_forward(customer_id, at)
                run.count(read=1, written=1 + versions[customer_id] - at)
        await self._storage.each_concurrently(
            late, lambda n: self._storage[JOURNAL].delete_one({"_id": n["_id"]})
        )
        run.count(written=len(late))
        await self.left_behind.settle(now)
        return run

    async def prune_claims(self) -> JobRun:
        """Delete claims (and figure steps) of hours that ended ``CLAIM_RETENTION`` ago."""
        now = self._wall.now()
        until = now - CLAIM_RETENTION - HOURS.width
        keys = await self.claims_pruned.keys_to_read(until)
        run = JobRun(read=1, due=len(keys))

        async def prune(key: str) -> int:
            claims = await self._storage[CLAIMS].delete_many({"prune_bucket": key})
            folds = await self._storage[FOLDS].delete_many({"prune_bucket": key})
            return int(claims.deleted_count) + int(folds.deleted_count)

        run.count(written=sum(await self._storage.each_concurrently(keys, prune)))
        # Settled through the bucket of ``until``: the last one read.
        await self.claims_pruned.settle(until + self.claims_pruned.grace + HOURS.width)
        return run
