"""Create the project's Kafka topics from the declarative list in shared.contracts.

python -m tools.topics create [--bootstrap HOST:PORT] [--prefix P] [--replication-factor N]
python -m tools.topics list
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from collections.abc import Callable, Sequence

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.contracts import ALL_TOPICS, Topic, kafka_config


async def create_topics(
    bootstrap: str,
    topics: Sequence[Topic] = ALL_TOPICS,
    *,
    prefix: str = "",
    replication_factor: int = 1,
    partitions: int | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns the names created.

    ``partitions`` overrides the registry's counts (tests use fewer to keep the broker small).
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="huitou-topics")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if f"{prefix}{t.name}" not in existing]
        if not missing:
            return []
        new = [
            NewTopic(
                name=f"{prefix}{t.name}",
                num_partitions=partitions or t.partitions,
                replication_factor=replication_factor,
                topic_configs=kafka_config(t),
            )
            for t in missing
        ]
        # Another instance may create them at the same moment: the goal is reached then.
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(new, timeout_ms=30_000)
        return [n.name for n in new]
    finally:
        await admin.close()


async def list_topics(bootstrap: str) -> list[str]:
    """Names of the topics on the broker."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="huitou-topics")
    await admin.start()
    try:
        return sorted(await admin.list_topics())
    finally:
        await admin.close()


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m tools.topics", description=__doc__)
    parser.add_argument("command", choices=["create", "list"])
    parser.add_argument(
        "--bootstrap", default=os.environ.get("HUITOU_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    )
    parser.add_argument("--prefix", default=os.environ.get("HUITOU_TOPIC_PREFIX", ""))
    parser.add_argument(
        "--replication-factor",
        type=int,
        default=int(os.environ.get("HUITOU_KAFKA_REPLICATION_FACTOR", "1")),
    )
    args = parser.parse_args(argv)
    if args.command == "create":
        created = asyncio.run(
            create_topics(
                args.bootstrap, prefix=args.prefix, replication_factor=args.replication_factor
            )
        )
        print(f"created {len(created)} topic(s)" + (": " + ", ".join(created) if created else ""))
    else:
        print("\n".join(asyncio.run(list_topics(args.bootstrap))))


if __name__ == "__main__":
    main()


async def consumer_lag(bootstrap: str, group_id: str, topic_names: Sequence[str]) -> int:
    """Records on the given topics that the consumer group has not committed yet."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="huitou-lag")
    probe = AIOKafkaConsumer(bootstrap_servers=bootstrap, client_id="huitou-lag")
    await admin.start()
    await probe.start()
    try:
        described = await admin.describe_topics(list(topic_names))
        partitions = [
            TopicPartition(d["topic"], p["partition"])
            for d in described
            if d["error_code"] == 0
            for p in d["partitions"]
        ]
        if not partitions:
            return 0
        ends = await probe.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group_id, partitions=partitions)
        lag = 0
        for tp in partitions:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            lag += max(ends[tp] - done, 0)
        return lag
    finally:
        await probe.stop()
        await admin.close()


async def wait_caught_up(
    bootstrap: str,
    groups: dict[str, Sequence[str]],
    *,
    timeout: float = 300.0,
    poll: float = 0.5,
    on_progress: Callable[[dict[str, int]], None] | None = None,
) -> dict[str, int]:
    """Wait until every group has committed everything on its topics; returns final lags."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        lags = {g: await consumer_lag(bootstrap, g, names) for g, names in groups.items()}
        if all(v == 0 for v in lags.values()) or loop.time() > deadline:
            return lags
        if on_progress is not None:
            on_progress(lags)
        await asyncio.sleep(poll)
