"""The main job: the whole system on local infrastructure, fed a sample store chain.

Run through `./huitou demo`, which starts a fresh Kafka and FerretDB (on PostgreSQL) first.
Creates the topics, starts every service as its own process, replays a
generated chain (malformed records included, so dead-lettering shows), waits
until every consumer group has caught up, prints a summary, and stops.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from shared.contracts import Topic
from shared.messaging import EventPublisher, make_broker
from tools.replay import ReplaySummary, print_summary, replay
from tools.samplechain import generate_chain
from tools.services import (
    ServiceProcess,
    available_services,
    start_services,
    stop_services,
    wait_ready,
)
from tools.token import tool_headers
from tools.topics import create_topics, wait_caught_up

console = Console(stderr=False)


def subscribed_topics(service: str) -> Sequence[Topic]:
    """The topics a service consumes (every service declares them in its handlers module)."""
    handlers = importlib.import_module(f"services.{service}.handlers")
    topics: Sequence[Topic] = handlers.SUBSCRIBED_TOPICS
    return topics


async def service_figures(
    service: ServiceProcess, environment: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Processed and dead-lettered counts from /metrics, and the service's own /stats.

    /stats is read with a tools token valid for the service started with ``environment``.
    """
    async with httpx.AsyncClient(base_url=service.url, timeout=120.0) as client:
        metrics_text = (await client.get("/metrics")).text
        response = await client.get("/stats", headers=tool_headers(environment))
        stats = response.json() if response.status_code == 200 else {"error": response.text}
    totals = {"processed": 0.0, "dead_lettered": 0.0, "failed_attempts": 0.0}
    names = {
        "huitou_events_processed": "processed",
        "huitou_events_dead_lettered": "dead_lettered",
        "huitou_batch_attempts_failed": "failed_attempts",
    }
    for family in text_string_to_metric_families(metrics_text):
        if family.name in names:
            totals[names[family.name]] += sum(
                s.value for s in family.samples if s.name.endswith("_total")
            )
    return {"totals": totals, "stats": stats}


async def run(
    seed: int, customers: int, port_base: int, log_dir: Path, catch_up_timeout: float
) -> int:
    """Run the demo; returns a process exit code."""
    bootstrap = os.environ.get("HUITOU_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    started_at = time.monotonic()
    created = await create_topics(bootstrap)
    console.print(f"[bold]topics[/]: created {len(created)}")

    names = available_services()
    services = start_services(names, port_base=port_base, log_dir=log_dir)
    try:
        await wait_ready(services, timeout=90)
        console.print("[bold]services[/]: " + ", ".join(f"{s.name} ({s.url})" for s in services))

        generate_started = time.monotonic()
        # The year up to today, so care has callbacks still to come and SLAs still running.
        start = datetime.now(UTC).date() - timedelta(days=365)
        chain = generate_chain(seed, customers=customers, start=start, days=365)
        console.print(
            f"[bold]sample chain[/]: {len(chain.stores)} stores, {len(chain.customers)} customers,"
            f" {len(chain.records)} records from {start} (seed {seed},"
            f" {time.monotonic() - generate_started:.1f}s)"
        )

        broker = make_broker(bootstrap, client_id="huitou-demo")
        await broker.connect()
        try:
            summary: ReplaySummary = await replay(
                chain.records,
                EventPublisher(broker, producer="tools.demo"),
                forward_invalid=True,
                progress=True,
            )
        finally:
            await broker.stop()
        print_summary(summary, console)

        catch_up_started = time.monotonic()
        last_report = [catch_up_started]

        def report(lags: dict[str, int]) -> None:
            if time.monotonic() - last_report[0] >= 10:
                last_report[0] = time.monotonic()
                console.print(
                    f"waiting for consumers ({time.monotonic() - catch_up_started:.0f}s): "
                    + ", ".join(
                        f"{g.removeprefix('huitou-')} {n:,} behind" for g, n in lags.items()
                    )
                )

        lags = await wait_caught_up(
            bootstrap,
            {f"huitou-{s}": [t.name for t in subscribed_topics(s)] for s in names},
            timeout=catch_up_timeout,
            poll=1.0,
            on_progress=report,
        )
        caught_up_in = time.monotonic() - catch_up_started
        figures = {s.name: await service_figures(s) for s in services}
    finally:
        stop_services(services)

    table = Table(title="Services after the replay")
    for column in ("service", "processed", "dead-lettered", "retried batches", "lag"):
        table.add_column(column, justify="left" if column == "service" else "right")
    for name, figure in figures.items():
        totals = figure["totals"]
        table.add_row(
            name,
            f"{totals['processed']:,.0f}",
            f"{totals['dead_lettered']:,.0f}",
            f"{totals['failed_attempts']:,.0f}",
            str(lags[f"huitou-{name}"]),
        )
    console.print(table)
    for name, figure in figures.items():
        stats = Table(title=f"{name}: figures")
        stats.add_column("figure")
        stats.add_column("value", justify="right")
        for key, value in figure["stats"].items():
            shown = f"{value:,}" if isinstance(value, int) else str(value)
            stats.add_row(key.replace("_", " "), shown)
        console.print(stats)

    console.print(
        f"caught up {caught_up_in:.1f}s after the replay;"
        f" whole run {time.monotonic() - started_at:.1f}s; service logs in {log_dir}"
    )
    if any(lag != 0 for lag in lags.values()):
        console.print("[red]some consumers did not catch up[/]")
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m tools.demo", description=__doc__)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument(
        "--catch-up-timeout", type=float, default=900.0, help="seconds to wait for consumers"
    )
    parser.add_argument("--port-base", type=int, default=18000)
    cache = Path(os.environ.get("HUITOU_CACHE", Path.home() / ".cache" / "huitou"))
    state = Path(os.environ.get("HUITOU_STATE_DIR", cache / "demo"))
    args = parser.parse_args(argv)
    raise SystemExit(
        asyncio.run(
            run(args.seed, args.customers, args.port_base, state / "logs", args.catch_up_timeout)
        )
    )


if __name__ == "__main__":
    main()
