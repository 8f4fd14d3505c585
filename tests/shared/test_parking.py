"""Parked events on the real MongoDB-protocol server: kept once, released, dead-lettered once."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest
from pymongo import AsyncMongoClient

from shared.clock import FixedClock
from shared.messaging import Delivery, Rejection
from shared.parking import PARKED, Parked, ParkingLot
from shared.storage import Document, Storage

pytestmark = pytest.mark.integration

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


class RecordingProcessor:
    """Stands in for a service's batch processor: records what a sweep hands it."""

    def __init__(self, lot: ParkingLot | None = None, park_again: set[int] = frozenset()) -> None:
        self.processed: list[tuple[list[int], bool]] = []
        self.letters: list[Rejection] = []
        self._lot = lot
        self._park_again = park_again

    async def process(
        self, deliveries: Sequence[Delivery], *, count_processed: bool = True
    ) -> None:
        self.processed.append(([d.offset for d in deliveries], count_processed))
        again = [d for d in deliveries if d.offset in self._park_again]
        if self._lot is not None and again:
            await self._lot.park([Parked(d, "order:still-missing", "still missing") for d in again])

    async def dead_letter(self, rejections: Sequence[Rejection]) -> None:
        self.letters.extend(rejections)


def delivery(offset: int, topic: str = "pos.returns.v1") -> Delivery:
    return Delivery(topic, 1, offset, b"C1", f'{{"n": {offset}}}'.encode())


def ready_of(keys: set[str]):  # type: ignore[no-untyped-def]
    async def ready(waiting: Sequence[str]) -> set[str]:
        return keys & set(waiting)

    return ready


async def parked_ids(storage: Storage) -> list[str]:
    return sorted([doc["_id"] async for doc in storage[PARKED].find({})])


async def test_parked_events_are_kept_once_and_released_in_stream_order(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    storage = Storage(mongo[database_name])
    clock = FixedClock(START)
    lot = ParkingLot(storage, clock, timedelta(hours=1))
    await lot.park([Parked(delivery(7), "order:A", "no A"), Parked(delivery(3), "order:A", "no A")])
    await lot.park([Parked(delivery(7), "order:A", "no A")])  # redelivered
    await lot.park([Parked(delivery(5), "order:B", "no B")])
    assert await lot.count() == 3

    processor = RecordingProcessor()
    nothing = await lot.sweep(processor, ready_of(set()))
    assert (processor.processed, processor.letters, await lot.count()) == ([], [], 3)
    assert (nothing.read, nothing.due) == (3, 0)

    run = await lot.sweep(processor, ready_of({"order:A"}))
    assert processor.processed == [([3, 7], False)]
    assert await parked_ids(storage) == ["pos.returns.v1:1:5"]
    assert run.due == 2

    released = await lot.waiting()
    assert [d["offset"] for d in released] == [5]


async def test_a_released_event_parked_again_stays_parked(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    storage = Storage(mongo[database_name])
    lot = ParkingLot(storage, FixedClock(START), timedelta(hours=1))
    await lot.park([Parked(delivery(1), "order:A", "no A"), Parked(delivery(2), "order:A", "no A")])
    processor = RecordingProcessor(lot, park_again={2})
    await lot.sweep(processor, ready_of({"order:A"}))
    assert processor.processed == [([1, 2], False)]
    assert await parked_ids(storage) == ["pos.returns.v1:1:2"]


async def test_events_out_of_time_are_dead_lettered_once_by_two_sweeping_instances(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    storage = Storage(mongo[database_name])
    clock = FixedClock(START)
    lot = ParkingLot(storage, clock, timedelta(minutes=10))
    other = ParkingLot(Storage(mongo[database_name]), clock, timedelta(minutes=10))
    await lot.park([Parked(delivery(n), f"order:{n}", f"order {n} never seen") for n in range(6)])

    clock.advance(timedelta(minutes=9))
    early = RecordingProcessor()
    await lot.sweep(early, ready_of(set()))
    assert (early.letters, await lot.count()) == ([], 6)

    clock.advance(timedelta(minutes=2))
    first, second = RecordingProcessor(), RecordingProcessor()
    await asyncio.gather(
        lot.sweep(first, ready_of({"order:0"})), other.sweep(second, ready_of({"order:0"}))
    )
    letters = first.letters + second.letters
    assert sorted(r.delivery.offset for r in letters) == [1, 2, 3, 4, 5]
    assert {r.error for r in letters if r.delivery.offset == 1} == {
        "order 1 never seen (parked 660 s waiting for order:1)"
    }
    assert letters[0].delivery.value == f'{{"n": {letters[0].delivery.offset}}}'.encode()
    assert letters[0].delivery.key == b"C1"
    assert await lot.count() == 0


def test_a_lot_without_grace_is_off() -> None:
    lot = ParkingLot(Storage.__new__(Storage), FixedClock(START), timedelta(0))
    assert not lot.enabled
    assert ParkingLot(Storage.__new__(Storage), FixedClock(START), timedelta(seconds=1)).enabled


async def test_events_out_of_time_may_be_handed_over_instead_of_dead_lettered(
    mongo: AsyncMongoClient[Document], database_name: str
) -> None:
    storage = Storage(mongo[database_name])
    clock = FixedClock(START)
    lot = ParkingLot(storage, clock, timedelta(minutes=1), apply_when_out_of_time=True)
    await lot.park([Parked(delivery(1), "order:A", "no A"), Parked(delivery(2), "order:B", "")])
    allowed: list[bool] = []

    class Handler(RecordingProcessor):
        async def process(
            self, deliveries: Sequence[Delivery], *, count_processed: bool = True
        ) -> None:
            allowed.append(lot.may_park())
            await super().process(deliveries, count_processed=count_processed)

    clock.advance(timedelta(minutes=2))
    handler = Handler()
    await lot.sweep(handler, ready_of({"order:A"}))
    assert handler.processed == [([1], False), ([2], False)]
    assert allowed == [True, False]  # released: may wait again; out of time: may not
    assert (handler.letters, await lot.count(), lot.may_park()) == ([], 0, True)
