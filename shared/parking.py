"""Events that arrived before what they depend on: parked, applied once it lands.

Kafka keeps one customer's order within a topic, not across topics: a return can
be read before its sale, whatever order they happened in. A handler that meets
such an event parks it (``ParkingLot.park``) instead of rejecting it, and the
stream goes on. A periodic sweep (``ParkingLot.sweep``) asks the service which
prerequisites exist now, hands the events waiting for those back to the
service's own batch processor (decoded, handled, dead-lettered exactly like
fresh deliveries), and dead-letters, with the parking reason, those still
waiting after the grace period.

A parked event is kept with its original bytes under its record's position, so
parking it again (a redelivery, a second instance) changes nothing, and a
release that handles it twice is as harmless as any redelivery. The sweep reads
only what is parked: nothing, most of the time.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

import structlog

from shared.clock import Clock
from shared.jobs import JobRun
from shared.messaging import Delivery, Rejection
from shared.storage import Document, Storage

log = structlog.get_logger("huitou.parking")
T = TypeVar("T")

PARKED = "parked_events"
SETTLED = "parked_settled"
"""Claims of the parked events a sweep dead-letters: one instance's letter per event."""

SETTLED_KEPT = timedelta(hours=1)

Ready = Callable[[Sequence[str]], Awaitable[set[str]]]
"""Of these prerequisite keys, those that exist now."""


def order_waited_for(order_id: str) -> str:
    """The parking key of events waiting for an order (its sale) to be recorded."""
    return f"order:{order_id}"


def orders_ready(found: Callable[[list[str]], Awaitable[Mapping[str, object]]]) -> Ready:
    """Readiness of ``order:<id>`` keys, from a lookup of the orders that exist by id."""

    async def ready(keys: Sequence[str]) -> set[str]:
        wanted = {key.removeprefix("order:"): key for key in keys if key.startswith("order:")}
        return {wanted[order_id] for order_id in await found(sorted(wanted))}

    return ready


class Processor(Protocol):
    """What a sweep hands events to: the service's own batch processor."""

    async def process(
        self, deliveries: Sequence[Delivery], *, count_processed: bool = True
    ) -> None: ...

    async def dead_letter(self, rejections: Sequence[Rejection]) -> None: ...


@dataclass(frozen=True)
class Parked:
    """A delivery waiting for a prerequisite (``waiting_for``, a key the service defines).

    ``reason`` is the error its dead letter carries if it waits out the grace period;
    ``owner`` names whose personal data its bytes carry, for ``ParkingLot.rewrite``.
    """

    delivery: Delivery
    waiting_for: str
    reason: str
    owner: str | None = None


def position_id(delivery: Delivery) -> str:
    """The id of a record by its position: topic, partition, offset."""
    return f"{delivery.topic}:{delivery.partition}:{delivery.offset}"


def parked_document(parked: Parked, now: datetime, grace: timedelta) -> Document:
    """The stored form of a parked delivery."""
    d = parked.delivery
    doc: Document = {
        "_id": position_id(d),
        "waiting_for": parked.waiting_for,
        "reason": parked.reason,
        "topic": d.topic,
        "partition": d.partition,
        "offset": d.offset,
        "key": d.key,
        "value": d.value,
        "owner": parked.owner,
        "parked_at": now,
        "dead_at": now + grace,
    }
    if trace := d.trace:
        doc["trace"] = dict(trace)  # so the release's batch span links to its arrival
    return doc


def delivery_of(doc: Document) -> Delivery:
    """The delivery a parked document keeps."""
    key = doc.get("key")
    trace = doc.get("trace") or {}
    return Delivery(
        topic=doc["topic"],
        partition=int(doc["partition"]),
        offset=int(doc["offset"]),
        key=bytes(key) if key is not None else None,
        value=bytes(doc["value"]),
        headers=tuple((str(name), str(value).encode("ascii")) for name, value in trace.items()),
    )


def stream_order(doc: Document) -> tuple[str, int, int]:
    """Parked events in the order their topics delivered them."""
    return (doc["topic"], int(doc["partition"]), int(doc["offset"]))


# The ids a handler parks while a sweep runs (set only inside the sweep's own task).
_parked_again: contextvars.ContextVar[set[str] | None] = contextvars.ContextVar(
    "parked_again", default=None
)


# Set while a sweep hands over events whose grace ran out, to be handled without waiting.
_out_of_time: contextvars.ContextVar[bool] = contextvars.ContextVar("out_of_time", default=False)


class ParkingLot:
    """A service's parked events, kept in its own database.

    ``grace`` of zero turns parking off: handlers then handle or reject such events at once.
    An event still waiting when its grace runs out is dead-lettered, or, with
    ``apply_when_out_of_time``, handed to the handler anyway, which must then not park it
    (``may_park`` is False): for events that count without their prerequisite too.
    """

    def __init__(
        self,
        storage: Storage,
        clock: Clock,
        grace: timedelta,
        *,
        apply_when_out_of_time: bool = False,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self.grace = grace
        self.apply_when_out_of_time = apply_when_out_of_time
        self._seen = 0

    @property
    def enabled(self) -> bool:
        """True when events may wait for their prerequisite."""
        return self.grace > timedelta(0)

    def may_park(self) -> bool:
        """True when the event being handled may wait (parking on, its grace not run out)."""
        return self.enabled and not _out_of_time.get()

    async def park(self, parked: Sequence[Parked]) -> None:
        """Keep these deliveries until their prerequisites land (each once, by position)."""
        if not parked:
            return
        now = self._clock.now()
        docs = [parked_document(p, now, self.grace) for p in parked]
        again = _parked_again.get()
        if again is not None:
            again.update(doc["_id"] for doc in docs)
        inserted = await self._storage.insert_once(PARKED, docs)
        self._seen += len(inserted)
        for p in (parked[i] for i in sorted(inserted)):
            log.info(
                "event_parked",
                topic=p.delivery.topic,
                partition=p.delivery.partition,
                offset=p.delivery.offset,
                waiting_for=p.waiting_for,
            )

    async def rewrite(self, owners: Sequence[str], change: Callable[[bytes], bytes]) -> int:
        """Replace the kept bytes of these owners' parked events (an erasure); how many.

        ``change`` must give the same bytes when applied again (a redelivered erasure). The
        lot holds only events still within their grace period, so a lookup by owner reads
        little even without an index.
        """
        changed = 0
        for owner in owners:
            async for doc in self._storage[PARKED].find({"owner": owner}):
                value = change(bytes(doc["value"]))
                if value != bytes(doc["value"]):
                    await self._storage[PARKED].update_one(
                        {"_id": doc["_id"]}, {"$set": {"value": value}}
                    )
                    changed += 1
        return changed

    async def count(self) -> int:
        """How many events are parked."""
        return int(await self._storage[PARKED].count_documents({}))

    @property
    def seen(self) -> int:
        """Events parked as this instance last saw it (its last sweep, and its parking since)."""
        return self._seen

    async def waiting(self) -> list[Document]:
        """Every parked event, in stream order."""
        docs = [doc async for doc in self._storage[PARKED].find({})]
        return sorted(docs, key=stream_order)

    async def sweep(self, processor: Processor, ready: Ready) -> JobRun:
        """Apply the events whose prerequisite landed; dead-letter (or apply) those out of time."""
        docs = await self.waiting()
        self._seen = len(docs)
        run = JobRun(read=len(docs))
        if not docs:
            return run
        now = self._clock.now()
        landed = await ready(sorted({doc["waiting_for"] for doc in docs}))
        run.count(read=len(landed))
        released = [doc for doc in docs if doc["waiting_for"] in landed]
        expired = [d for d in docs if d["waiting_for"] not in landed and d["dead_at"] <= now]
        run.count(due=len(released) + len(expired))
        again: set[str] = set()
        with _set(_parked_again, again):
            await _hand_over(processor, released)
        # A claim per expired event: of two sweeping instances, one writes its letter.
        won = await self._storage.insert_once(
            SETTLED, [{"_id": doc["_id"], "at": now} for doc in expired]
        )
        late = [doc for i, doc in enumerate(expired) if i in won]
        if self.apply_when_out_of_time:
            letters = []
            with _set(_out_of_time, True):
                await _hand_over(processor, late)
        else:
            letters = [
                Rejection(delivery_of(doc), f"{doc['reason']} (parked {self._waited(doc, now)})")
                for doc in late
            ]
            await processor.dead_letter(letters)
        done = [doc["_id"] for doc in released if doc["_id"] not in again]
        # Those whose claim another sweep won are its to finish; if it died, they are taken
        # again once its claim is pruned.
        done += [doc["_id"] for doc in late]
        await self._storage.each_concurrently(
            done, lambda i: self._storage[PARKED].delete_one({"_id": i})
        )
        # Kept a while, so an instance that read the event before it was deleted loses the claim.
        pruned = await self._storage[SETTLED].delete_many({"at": {"$lt": now - SETTLED_KEPT}})
        run.count(written=len(done) + len(expired) + pruned.deleted_count)
        self._seen -= len(done)
        if released or expired:
            log.info(
                "parked_events_swept",
                released=len(released),
                out_of_time=len(late),
                dead_lettered=len(letters),
            )
        return run

    @staticmethod
    def _waited(doc: Document, now: datetime) -> str:
        seconds = int((now - doc["parked_at"]).total_seconds())
        return f"{seconds} s waiting for {doc['waiting_for']}"


async def _hand_over(processor: Processor, docs: Sequence[Document]) -> None:
    if docs:
        await processor.process([delivery_of(d) for d in docs], count_processed=False)


@contextlib.contextmanager
def _set(var: contextvars.ContextVar[T], value: T) -> Iterator[None]:
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)
