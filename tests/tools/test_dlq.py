"""The dead-letter tool: reasons, selection and grouping; list, show and replay on the broker."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.contracts import CRM_CUSTOMERS, POS_PURCHASES, DeadLetter, Topic, dlq_topic
from shared.contracts.topics import TOOLS_REDRIVES
from tools.dlq import (
    REDRIVE_HEADER,
    LetterId,
    Missing,
    Selection,
    StoredLetter,
    describe_letter,
    group_letters,
    load_letters,
    main,
    normalise_reason,
    parse_letter_id,
    plan_replay,
    read_letter,
    redrive,
    select,
    verify_original,
)
from tools.topics import create_topics

AT = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
PURCHASE_ERROR = "pos.purchases.v1: event_id: Input should be a valid string"
DEDUCT_REASON = "cannot deduct <n> points from <customer>: insufficient"


def stored(
    offset: int,
    *,
    service: str = "loyalty",
    source_topic: str = POS_PURCHASES.name,
    source_offset: int | None = None,
    error: str = PURCHASE_ERROR,
    value: bytes = b'{"event_id": 12}',
    key: str | None = "C0001234",
    minutes: int = 0,
    payload_limit: int | None = None,
) -> StoredLetter:
    """A letter at ``<service>.dlq.v1:0:<offset>`` of a record at ``source_topic:0:...``."""
    extra = {} if payload_limit is None else {"payload_limit": payload_limit}
    letter = DeadLetter.from_record(
        service=service,
        source_topic=source_topic,
        partition=0,
        offset=offset if source_offset is None else source_offset,
        key=key,
        value=value,
        error=error,
        occurred_at=AT + timedelta(minutes=minutes),
        **extra,
    )
    return StoredLetter(LetterId(dlq_topic(service).name, 0, offset), letter)


# --- reasons ---------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (PURCHASE_ERROR, PURCHASE_ERROR),
        (
            "cannot deduct 50 points from C0001234: insufficient",
            "cannot deduct <n> points from <customer>: insufficient",
        ),
        (
            "order SH001-20261122-000187 of pos-SH001-20261122-000187 at 2026-11-22T14:05:09+08:00",
            "order <order> of pos-<order> at <time>",
        ),
        (
            "ticket T-CMP-000913 is already routed to sales",
            "ticket <complaint> is already routed to sales",
        ),
        (
            "pos.purchases.v1: lines.0.amount: bad; lines.1.amount: bad; total: got 1158.00",
            "pos.purchases.v1: lines.<n>.amount: bad; total: got <n>",
        ),
        ("KeyError: 'C0009876'", "KeyError: '<customer>'"),
    ],
)
def test_reasons_mask_numbers_and_ids_but_keep_names(error: str, reason: str) -> None:
    assert normalise_reason(error) == reason


@pytest.mark.unit
def test_the_same_kind_of_error_has_one_reason() -> None:
    one = normalise_reason("cannot deduct 50 points from C0001234: insufficient")
    other = normalise_reason("cannot deduct 7 points from C0987654: insufficient")

    assert one == other
    assert one != normalise_reason("cannot award 7 points to C0987654: unknown member")


# --- letter ids ------------------------------------------------------------------------


@pytest.mark.unit
def test_letter_ids_read_with_or_without_the_prefix() -> None:
    assert parse_letter_id("loyalty.dlq.v1:2:41") == LetterId("loyalty.dlq.v1", 2, 41)
    assert parse_letter_id("t1.care.dlq.v1:0:7", prefix="t1.") == LetterId("care.dlq.v1", 0, 7)
    assert str(LetterId("care.dlq.v1", 0, 7)) == "care.dlq.v1:0:7"


@pytest.mark.unit
@pytest.mark.parametrize(
    "text", ["loyalty.dlq.v1:2", "loyalty.dlq.v1:a:1", "pos.purchases.v1:0:1", "x:0:-1"]
)
def test_bad_letter_ids_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"dlq|dead-letter"):
        parse_letter_id(text)


@pytest.mark.unit
def test_a_record_that_is_not_a_letter_is_reported_not_fatal() -> None:
    where = LetterId("loyalty.dlq.v1", 0, 3)
    good = stored(3).letter

    assert read_letter(where, good.to_bytes()) == StoredLetter(where, good)
    unreadable = read_letter(where, b"not json")
    assert not isinstance(unreadable, StoredLetter)
    assert unreadable.id == where and "JSON" in unreadable.problem
    # A letter of care on loyalty's topic belongs elsewhere.
    assert not isinstance(
        read_letter(where, stored(3, service="care").letter.to_bytes()), StoredLetter
    )


# --- selection -------------------------------------------------------------------------

LETTERS = [
    stored(0, minutes=5),
    stored(1, error="pos.purchases.v1: event_id: Input should be a valid string", minutes=1),
    stored(2, error="cannot deduct 50 points from C0001234: insufficient"),
    stored(
        0,
        service="profile",
        source_topic=CRM_CUSTOMERS.name,
        error="phone: is not a valid phone number",
        minutes=9,
    ),
]


@pytest.mark.unit
def test_no_filter_selects_everything_in_id_order() -> None:
    chosen = select(reversed(LETTERS), Selection())

    assert [s.id for s in chosen] == sorted(s.id for s in LETTERS)
    assert Selection().dlq_topics() == [
        "profile.dlq.v1",
        "loyalty.dlq.v1",
        "care.dlq.v1",
        "aftersales.dlq.v1",
    ]


@pytest.mark.unit
def test_filters_combine() -> None:
    def ids(selection: Selection) -> list[str]:
        return [str(s.id) for s in select(LETTERS, selection)]

    assert ids(Selection(services=("profile",))) == ["profile.dlq.v1:0:0"]
    assert ids(Selection(source_topic=POS_PURCHASES.name)) == [
        "loyalty.dlq.v1:0:0",
        "loyalty.dlq.v1:0:1",
        "loyalty.dlq.v1:0:2",
    ]
    # The raw error, case aside, or the reason as `list` prints it.
    assert ids(Selection(reason="DEDUCT 50")) == ["loyalty.dlq.v1:0:2"]
    assert ids(Selection(reason="from <customer>")) == ["loyalty.dlq.v1:0:2"]
    assert ids(Selection(services=("profile",), reason="deduct")) == []
    letters = frozenset({LetterId("loyalty.dlq.v1", 0, 1), LetterId("care.dlq.v1", 0, 0)})
    assert ids(Selection(letters=letters)) == ["loyalty.dlq.v1:0:1"]
    assert Selection(letters=letters).dlq_topics() == ["loyalty.dlq.v1", "care.dlq.v1"]


@pytest.mark.unit
def test_groups_count_letters_of_one_service_topic_and_reason() -> None:
    groups = group_letters(LETTERS)

    assert [(g.service, g.source_topic, g.reason, g.count) for g in groups] == [
        ("loyalty", POS_PURCHASES.name, PURCHASE_ERROR, 2),
        (
            "loyalty",
            POS_PURCHASES.name,
            "cannot deduct <n> points from <customer>: insufficient",
            1,
        ),
        ("profile", CRM_CUSTOMERS.name, "phone: is not a valid phone number", 1),
    ]
    first = groups[0]
    assert (first.first_at, first.last_at) == (AT + timedelta(minutes=1), AT + timedelta(minutes=5))
    assert first.example == LetterId("loyalty.dlq.v1", 0, 0)
    assert first.to_json()["example"] == "loyalty.dlq.v1:0:0"
    assert first.to_json()["first_occurred_at"] == "2026-12-03T09:01:00+00:00"


# --- showing ---------------------------------------------------------------------------


@pytest.mark.unit
def test_a_letter_is_shown_with_its_payload_as_text_or_base64() -> None:
    text = describe_letter(stored(0, value='{"name": "王"}'.encode()))
    binary = describe_letter(stored(0, value=b"\xff\xfe"))
    cut = describe_letter(stored(0, value=b"x" * 100, payload_limit=10))

    assert 'payload (UTF-8 text):\n{"name": "王"}' in text
    assert "TRUNCATED" not in text
    assert "payload (not UTF-8 text, base64):\n//4=" in binary
    assert "TRUNCATED     the letter keeps the first 10 of 100 bytes" in cut
    assert "letter        loyalty.dlq.v1:0:0" in text
    assert f"error         {PURCHASE_ERROR}" in text


# --- replay planning -------------------------------------------------------------------


@pytest.mark.unit
def test_replay_skips_letters_in_the_redrive_log_unless_again() -> None:
    logged = {"loyalty.dlq.v1:0:1": {"topic": POS_PURCHASES.name}}
    letters = [stored(2, source_offset=5), stored(1, source_offset=9), stored(0, source_offset=7)]

    todo, already = plan_replay(letters, logged, again=False)

    assert [str(s.id) for s in already] == ["loyalty.dlq.v1:0:1"]
    # In the order of the originals: one key's records keep their order.
    assert [s.letter.offset for s in todo] == [5, 7]
    todo, already = plan_replay(letters, logged, again=True)
    assert (len(todo), already) == (3, [])


@pytest.mark.unit
def test_an_original_is_replayed_only_when_its_digest_matches() -> None:
    whole = b'{"event_id": "' + b"y" * 200 + b'"}'
    letter = stored(0, value=whole, payload_limit=16).letter
    assert letter.payload_truncated

    assert verify_original(letter, whole) == whole
    other = verify_original(letter, whole + b" ")
    assert isinstance(other, Missing) and "SHA-256 differs" in other.reason
    gone = Missing("no longer kept")
    assert verify_original(letter, gone) is gone
    undigested = letter.model_copy(update={"payload_sha256": None})
    assert isinstance(verify_original(undigested, whole), Missing)
    small = stored(0).letter
    assert verify_original(small, small.original_bytes()) == small.original_bytes()


# --- command line ----------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["purge"],
        ["list", "--service", "billing"],
        ["show", "--letter", "x:0"],
        ["show", "--limit", "0"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


@pytest.mark.unit
def test_an_unreachable_broker_exits_1_with_a_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--bootstrap", "127.0.0.1:1"]) == 1

    err = capsys.readouterr().err
    assert "cannot work with Kafka at 127.0.0.1:1" in err
    assert "Traceback" not in err


# --- on the real broker ----------------------------------------------------------------

TOPICS: tuple[Topic, ...] = (
    POS_PURCHASES,
    CRM_CUSTOMERS,
    dlq_topic("loyalty"),
    dlq_topic("profile"),
    TOOLS_REDRIVES,
)
SENT_WHOLE = b'{"event_id": "' + b"w" * 3000 + b'"}'
PHONE_ERROR = "phone: is not a valid phone number"
DEDUCT_ERROR = "cannot deduct 50 points from C0009999: insufficient"


@dataclass
class Scene:
    """Originals on their source topics and their letters on the dead-letter topics."""

    bootstrap: str
    prefix: str
    originals: dict[str, tuple[str, bytes, bytes]]
    """Letter id → (source topic, key, value) of the original as stored."""
    mismatched: str
    unreadable: str
    ends: dict[str, int]
    """Source topic → end offset once the originals were written."""

    def argv(self, *args: str) -> list[str]:
        return [*args, "--prefix", self.prefix, "--bootstrap", self.bootstrap]


async def _send(producer: Any, topic: str, key: bytes, value: bytes) -> int:
    metadata = await producer.send_and_wait(topic, value=value, key=key)
    return int(metadata.offset)


async def _read(
    bootstrap: str, name: str, start: int = 0
) -> list[tuple[bytes | None, bytes, dict[str, bytes]]]:
    """Records of partition 0 from ``start`` to the end: key, value and headers."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(name, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        consumer.seek(tp, start)
        records: list[tuple[bytes | None, bytes, dict[str, bytes]]] = []
        deadline = time.monotonic() + 20
        while await consumer.position(tp) < end:
            assert time.monotonic() < deadline, f"{name} not read to offset {end}"
            for record in (await consumer.getmany(tp, timeout_ms=1000)).get(tp, []):
                records.append((record.key, record.value, dict(record.headers)))
        return records
    finally:
        await consumer.stop()


@pytest.fixture
async def scene(infra: dict[str, str], prefix: str) -> AsyncIterator[Scene]:
    bootstrap = infra["kafka"]
    await create_topics(bootstrap, TOPICS, prefix=prefix, partitions=1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        purchases = f"{prefix}{POS_PURCHASES.name}"
        # A record nobody dead-lettered first, so no original is at offset 0.
        await _send(producer, purchases, b"C0000001", b'{"ok": true}')
        sources = [
            ("loyalty", POS_PURCHASES, b"C0001234", b'{"event_id": 12}', PURCHASE_ERROR, None),
            ("loyalty", POS_PURCHASES, b"C0005678", '{"外": 1}'.encode(), PURCHASE_ERROR, None),
            ("profile", CRM_CUSTOMERS, b"C0000042", b'{"phone": "12"}', PHONE_ERROR, None),
            ("loyalty", POS_PURCHASES, b"C0009999", SENT_WHOLE, DEDUCT_ERROR, 64),
        ]
        letters: list[tuple[DeadLetter, tuple[str, bytes, bytes] | None]] = []
        for service, source, key, value, error, limit in sources:
            offset = await _send(producer, f"{prefix}{source.name}", key, value)
            letter = _letter(service, source.name, offset, key, value, error, limit)
            assert letter.payload_truncated == (limit is not None)
            letters.append((letter, (source.name, key, value)))
        # A truncated letter whose position holds another record: its digest cannot match.
        elsewhere = await _send(producer, purchases, b"C0007777", b'{"event_id": "other"}')
        gone = b'{"event_id": "the original, long gone"}'
        mismatched = _letter(
            "loyalty", POS_PURCHASES.name, elsewhere, b"C0007777", gone, DEDUCT_ERROR, 8
        )
        letters.append((mismatched, None))
        originals: dict[str, tuple[str, bytes, bytes]] = {}
        ids: list[str] = []
        for letter, original in letters:
            # As a service writes it: keyed with the original key.
            dlq = dlq_topic(letter.service).name
            key = (letter.key or "").encode()
            ids.append(f"{dlq}:0:{await _send(producer, prefix + dlq, key, letter.to_bytes())}")
            if original is not None:
                originals[ids[-1]] = original
        unreadable = await _send(producer, f"{prefix}{dlq_topic('loyalty').name}", b"k", b"nope")
        yield Scene(
            bootstrap=bootstrap,
            prefix=prefix,
            originals=originals,
            mismatched=ids[-1],
            unreadable=f"loyalty.dlq.v1:0:{unreadable}",
            ends={POS_PURCHASES.name: elsewhere + 1, CRM_CUSTOMERS.name: 1},
        )
    finally:
        await producer.stop()
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([f"{prefix}{t.name}" for t in TOPICS])
        finally:
            await admin.close()


def _letter(
    service: str,
    source: str,
    offset: int,
    key: bytes,
    value: bytes,
    error: str,
    limit: int | None,
) -> DeadLetter:
    return DeadLetter.from_record(
        service=service,
        source_topic=source,
        partition=0,
        offset=offset,
        key=key,
        value=value,
        error=error,
        occurred_at=AT + timedelta(minutes=offset),
        **({} if limit is None else {"payload_limit": limit}),
    )


def _letter_at(scene: Scene, source: str, key: bytes) -> str:
    return next(i for i, (s, k, _) in scene.originals.items() if (s, k) == (source, key))


@pytest.mark.integration
async def test_list_and_show_read_the_letters_back(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    letters, unreadable = await load_letters(
        scene.bootstrap, prefix=scene.prefix, selection=Selection()
    )
    assert len(letters) == 5
    assert [str(u.id) for u in unreadable] == [scene.unreadable]

    assert await asyncio.to_thread(main, scene.argv("list", "--json")) == 0
    document = json.loads(capsys.readouterr().out)
    groups = {(g["service"], g["source_topic"], g["reason"]): g for g in document["groups"]}
    assert {key: g["count"] for key, g in groups.items()} == {
        ("loyalty", POS_PURCHASES.name, PURCHASE_ERROR): 2,
        (
            "loyalty",
            POS_PURCHASES.name,
            "cannot deduct <n> points from <customer>: insufficient",
        ): 2,
        ("profile", CRM_CUSTOMERS.name, "phone: is not a valid phone number"): 1,
    }
    purchase_group = groups[("loyalty", POS_PURCHASES.name, PURCHASE_ERROR)]
    assert purchase_group["example"] == _letter_at(scene, POS_PURCHASES.name, b"C0001234")
    assert purchase_group["first_occurred_at"] < purchase_group["last_occurred_at"]
    assert document["unreadable"][0]["id"] == scene.unreadable

    assert await asyncio.to_thread(main, scene.argv("list", "--json", "--service", "profile")) == 0
    assert len(json.loads(capsys.readouterr().out)["groups"]) == 1
    assert await asyncio.to_thread(main, scene.argv("list")) == 0
    assert "5 letter(s) in 3 group(s)" in capsys.readouterr().out

    customer = _letter_at(scene, CRM_CUSTOMERS.name, b"C0000042")
    big = _letter_at(scene, POS_PURCHASES.name, b"C0009999")
    assert (
        await asyncio.to_thread(main, scene.argv("show", "--letter", customer, "--letter", big))
        == 0
    )
    out = capsys.readouterr().out
    assert f"letter        {customer}" in out
    assert 'payload (UTF-8 text):\n{"phone": "12"}' in out
    assert f"TRUNCATED     the letter keeps the first 64 of {len(SENT_WHOLE)} bytes" in out
    assert "2 of 2 letter(s) shown" in out
    assert (
        await asyncio.to_thread(
            main, scene.argv("show", "--reason", "valid string", "--limit", "1")
        )
        == 0
    )
    assert "1 of 2 letter(s) shown; 1 more not shown" in capsys.readouterr().out


@pytest.mark.integration
async def test_replay_republishes_the_originals_once(
    scene: Scene, capsys: pytest.CaptureFixture[str]
) -> None:
    everything = Selection()
    dry = await redrive(scene.bootstrap, prefix=scene.prefix, selection=everything, dry_run=True)
    assert (dry.published, dry.records, len(dry.unavailable)) == (4, 0, 1)
    purchases = f"{scene.prefix}{POS_PURCHASES.name}"
    assert await _read(scene.bootstrap, purchases, scene.ends[POS_PURCHASES.name]) == []

    assert await asyncio.to_thread(main, scene.argv("replay")) == 0
    out = capsys.readouterr().out
    assert f"skipped {scene.mismatched}: the record at" in out
    assert "4 record(s) published" in out

    republished = await _read(scene.bootstrap, purchases, scene.ends[POS_PURCHASES.name])
    republished += await _read(
        scene.bootstrap, f"{scene.prefix}{CRM_CUSTOMERS.name}", scene.ends[CRM_CUSTOMERS.name]
    )
    # The exact bytes (the truncated one whole, after its digest check), the original key.
    assert sorted(republished) == sorted(
        (key, value, {REDRIVE_HEADER: letter_id.encode()})
        for letter_id, (_, key, value) in scene.originals.items()
    )
    assert (None, SENT_WHOLE, {}) not in republished
    assert hashlib.sha256(SENT_WHOLE).digest() in {
        hashlib.sha256(v).digest() for _, v, _ in republished
    }
    log = await _read(scene.bootstrap, f"{scene.prefix}{TOOLS_REDRIVES.name}")
    entries = {key.decode(): json.loads(value) for key, value, _ in log if key}
    assert set(entries) == set(scene.originals)
    customer = _letter_at(scene, CRM_CUSTOMERS.name, b"C0000042")
    assert (entries[customer]["topic"], entries[customer]["partition"]) == (CRM_CUSTOMERS.name, 0)
    assert entries[customer]["offset"] == scene.ends[CRM_CUSTOMERS.name]

    again = await redrive(scene.bootstrap, prefix=scene.prefix, selection=everything)
    assert (again.published, again.already_replayed, again.records) == (0, 4, 0)
    assert [str(s.id) for s in again.unavailable] == [scene.mismatched]
    assert "SHA-256 differs" in again.unavailable[0].reason
    assert len(await _read(scene.bootstrap, purchases, scene.ends[POS_PURCHASES.name])) == 3

    one = Selection(letters=frozenset({parse_letter_id(customer)}))
    forced = await redrive(scene.bootstrap, prefix=scene.prefix, selection=one, again=True)
    assert (forced.published, forced.records) == (1, 1)
